"""Simulation from a fitted GLMM, refits to new responses and the parametric bootstrap.

As lme4's ``simulate`` (``re.form = NA``: new random effects each time),
``refit`` and ``bootMer``: a simulated response draws u* ~ N(0, I), forms
η* = Xβ̂ + o + ZΛ(θ̂)u* and μ* = g⁻¹(η*), and draws y* from the family at μ*
with the prior weights:

- binomial: k* ~ Binomial(m, μ*) with m the trials (prior weights, whole
  numbers), y* = k*/m, the proportion the model reads (0/1 for Bernoulli
  rows, the proportion of ``cbind(successes, failures)``);
- Poisson: y* ~ Poisson(μ*); negative binomial: y* ~ NB(μ*, shape);
- Gamma: shape w/φ and mean μ*; inverse Gaussian: mean μ* and shape w/φ,
  φ = σ̂² the dispersion (so that Var y* = φV(μ*)/w, the fitted model's).
  lme4 1.1-31 draws the Gamma with shape σ̂·w and the inverse Gaussian with
  shape w/σ̂ (not the fitted model's variance unless σ̂ = 1); this follows
  the model.

The bootstrap's parameters are lme4's (``confint.merMod``, ``FUN`` of
``method = "boot"``): the sds and correlations of θ (σ = 1), σ when the family
has a dispersion, and β.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from .design import aligned_values
from .exceptions import ArgumentError, ConvergenceWarning
from .matrices import z_matrix
from .optimize import Control

if TYPE_CHECKING:
    from .glmm_results import GeneralizedLinearMixedModelResult

__all__ = ["boot_names", "boot_values", "bootstrap", "refit", "simulate"]


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ArgumentError(
            f"seed must be None, a non-negative integer or a numpy Generator, not {seed!r}"
        ) from None


def _check_nsim(nsim: object) -> int:
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer):
        raise ArgumentError(f"nsim must be a whole number of simulations, not {nsim!r}")
    if nsim < 1:
        raise ArgumentError("nsim must be at least 1")
    return int(nsim)


def simulate(
    fit: GeneralizedLinearMixedModelResult, nsim: int, seed: int | np.random.Generator | None
) -> pd.DataFrame:
    """Return ``nsim`` responses simulated from the fit: columns sim_1, ..., on the fitted rows."""
    nsim = _check_nsim(nsim)
    rng = _rng(seed)
    d, fam = fit.design, fit.family
    wt = fit.model.prior_weights
    if fam.name == "binomial":
        m = np.round(wt)
        if np.any(np.abs(wt - m) > 1e-7 * np.maximum(1.0, wt)):
            raise ArgumentError(
                "cannot simulate a binomial response with non-integer prior weights "
                "(they are the numbers of trials), as lme4"
            )
    lt = d.layout.lambdat(fit.theta)
    eta = d.X @ fit.beta
    if d.offset is not None:
        eta = eta + d.offset
    u = rng.standard_normal((lt.shape[0], nsim))
    eta = eta[:, None] + z_matrix(d) @ (lt.T @ u)
    mu = fam.linkinv(eta)
    w = wt[:, None]
    if fam.name == "binomial":
        trials = np.broadcast_to(m[:, None], mu.shape).astype(np.int64)
        k = rng.binomial(trials, mu)
        y = np.where(trials > 0, k / np.where(trials > 0, trials, 1), 0.0)
    elif fam.name == "poisson":
        y = rng.poisson(mu).astype(np.float64)
    elif fam.name == "negative.binomial":
        s = fam.shape
        assert s is not None
        y = rng.negative_binomial(s, s / (s + mu)).astype(np.float64)
    elif fam.name == "Gamma":
        shape = w / fit.sigma**2
        y = rng.gamma(np.broadcast_to(shape, mu.shape), mu / shape)
    else:  # inverse Gaussian: numpy's wald(mean, scale) has variance mean³/scale
        y = rng.wald(mu, np.broadcast_to(w / fit.sigma**2, mu.shape))
    return pd.DataFrame(y, index=d.row_index, columns=[f"sim_{i + 1}" for i in range(nsim)])


def refit(
    fit: GeneralizedLinearMixedModelResult, y: npt.ArrayLike, control: Control | None = None
) -> GeneralizedLinearMixedModelResult:
    """Fit the fit's model to a new response y (one value per fitted row), from its (θ̂, β̂)."""
    model = fit.model
    if isinstance(y, pd.Series):
        y = aligned_values(y, fit.design.row_index, "new response")
    try:
        ya = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"the new response must hold numbers: {e}") from None
    if ya.shape[0] != fit.nobs:
        raise ArgumentError(
            f"the new response has {ya.shape[0]} values; the fit has {fit.nobs} rows"
        )
    new = type(model)(
        replace(model.design, y=ya),
        model.family,
        nagq=model.nagq,
        data_name=model.data_name,
        trials=model.trials,
    )
    new.shape_estimated = model.shape_estimated
    return new.fit(control or fit.optsum.control, start={"theta": fit.theta, "beta": fit.beta})


def boot_names(fit: GeneralizedLinearMixedModelResult) -> list[str]:
    """Return the names of the bootstrap's parameters: sds and cors, σ (a dispersion), β."""
    sigma = ["sigma"] if fit.family.has_scale else []
    return [*fit.design.layout.sdcor_names, *sigma, *fit.design.x_names]


def boot_values(fit: GeneralizedLinearMixedModelResult) -> np.ndarray:
    """Return the bootstrap's parameters of a fit (`boot_names`)."""
    sigma = [fit.sigma] if fit.family.has_scale else []
    return np.concatenate([fit.design.layout.sdcor(fit.theta, 1.0), sigma, fit.beta])


def bootstrap(
    fit: GeneralizedLinearMixedModelResult,
    nsim: int = 500,
    seed: int | np.random.Generator | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Return a parametric bootstrap (lme4's ``bootMer``): one row per simulated refit.

    Columns `boot_names`. A refit that warns (`ConvergenceWarning`) is kept, as
    lme4's bootMer keeps it; one warning then says how many did.
    """
    nsim = _check_nsim(nsim)
    ys = simulate(fit, nsim, seed).to_numpy()
    if progress is None:
        progress = nsim >= 200 and sys.stderr.isatty()
    out = np.empty((nsim, len(boot_names(fit))))
    warned = 0
    others: list[warnings.WarningMessage] = []
    t0 = time.perf_counter()
    for i in range(nsim):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            out[i] = boot_values(refit(fit, ys[:, i]))
        conv = [issubclass(w.category, ConvergenceWarning) for w in caught]
        warned += any(conv)
        others.extend(w for w, c in zip(caught, conv, strict=True) if not c)
        if progress and (i + 1) % max(1, nsim // 20) == 0:
            sys.stderr.write(
                f"\rbootstrap: {i + 1}/{nsim} refits, {time.perf_counter() - t0:.1f} s"
            )
    if progress:
        sys.stderr.write("\n")
    for w in others:  # any other warning of a refit, passed on
        warnings.warn(w.message, w.category, stacklevel=3)
    if warned:
        warnings.warn(
            f"{warned} of {nsim} bootstrap refits did not converge (kept, as lme4's bootMer)",
            ConvergenceWarning,
            stacklevel=3,
        )
    return pd.DataFrame(out, columns=boot_names(fit))
