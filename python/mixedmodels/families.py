"""GLM families for `glmer`: the response's distribution and the link (R's ``family`` objects).

>>> import mixedmodels as mm
>>> import numpy as np
>>> mm.families.binomial("probit")
Family(name='binomial', link='probit', shape=None)
>>> mm.families.poisson().link
'log'
>>> mm.families.negative_binomial(1.5).variance(np.array([2.0]))
array([4.66666667])

The per-row functions that PIRLS needs run in the Rust core (as lme4's
``glmFamily.cpp``, with its clamps); the numpy ones here serve the results
(fitted means, residuals, predictions) and the checks of the response.

The four numbers called "deviance" (lme4's conventions, on cbpp: 184.05,
100.10, 73.47, and 100.01 with quadrature):

- ``objective`` (−2 log L, Laplace): Σ dᵢ + ‖û‖² + log det(LLᵀ) plus the
  likelihood's constant `loglik_constant` (the binomial coefficients, log y!):
  lme4's ``devcomp$cmp["dev"]``, ``-2 * logLik(fit)``, and what AIC and BIC use.
- without the constant (MixedModels.jl's Laplace deviance): ``laplace_deviance``.
- ``deviance``: Σ dᵢ at the modes, the conditional deviance (lme4's
  ``deviance(fit)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from ._reval import Factor, Numeric
from .exceptions import ArgumentError, DataError

__all__ = [
    "Family",
    "binomial",
    "family",
    "gamma",
    "inverse_gaussian",
    "negative_binomial",
    "poisson",
]

_EPS = float(np.finfo(float).eps)

LINKS: dict[str, tuple[str, ...]] = {
    "binomial": ("logit", "probit", "cloglog", "cauchit", "log"),
    "poisson": ("log", "identity", "sqrt"),
    "Gamma": ("inverse", "identity", "log"),
    "negative.binomial": ("log", "identity", "sqrt"),
    "inverse.gaussian": ("1/mu^2", "inverse", "identity", "log"),
}
"""The links of each family (R's), the first the default."""


def _linkfun(link: str, mu: np.ndarray) -> np.ndarray:
    funs: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "logit": special.logit,
        "probit": special.ndtri,
        "cloglog": lambda m: np.log(-np.log1p(-m)),
        "cauchit": lambda m: np.tan(np.pi * (m - 0.5)),
        "log": np.log,
        "identity": lambda m: m,
        "sqrt": np.sqrt,
        "inverse": lambda m: 1 / m,
        "1/mu^2": lambda m: 1 / (m * m),
    }
    return np.asarray(funs[link](mu), dtype=np.float64)


def _linkinv(link: str, eta: np.ndarray) -> np.ndarray:
    eta = np.asarray(eta, dtype=np.float64)
    if link == "logit":
        return np.minimum(special.expit(eta), 1 - _EPS)
    if link == "probit":
        return np.minimum(special.ndtr(eta), 1 - _EPS)
    if link == "cloglog":
        return np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS)
    if link == "cauchit":
        return np.minimum(stats.cauchy.cdf(eta), 1 - _EPS)
    if link == "log":
        return np.maximum(np.exp(eta), _EPS)
    if link == "sqrt":
        return eta * eta
    if link == "inverse":
        return 1 / eta
    if link == "1/mu^2":
        return 1 / np.sqrt(eta)
    return eta


def _mu_eta(link: str, eta: np.ndarray) -> np.ndarray:
    eta = np.asarray(eta, dtype=np.float64)
    if link == "logit":
        e = np.exp(-np.abs(eta))
        return np.maximum(e / (1 + e) ** 2, _EPS)
    if link == "probit":
        return np.asarray(stats.norm.pdf(eta))
    if link == "cloglog":
        return np.maximum(np.exp(eta - np.exp(eta)), _EPS)
    if link == "cauchit":
        return np.asarray(stats.cauchy.pdf(eta))
    if link == "log":
        return np.maximum(np.exp(eta), _EPS)
    if link == "sqrt":
        return 2 * eta
    if link == "inverse":
        return -1 / (eta * eta)
    if link == "1/mu^2":
        return -0.5 / (eta * np.sqrt(eta))
    return np.ones_like(eta)


def _ylogy(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Return y log(y/μ), 0 where y = 0."""
    pos = y > 0
    return np.where(pos, y * np.log(np.where(pos, y, 1.0) / np.where(pos, mu, 1.0)), 0.0)


@dataclass(frozen=True)
class Family:
    """A GLM family: the response's distribution (``name``) and the link.

    Build one with `binomial`, `poisson` or `family` (which checks the pair).
    """

    name: str
    """R's name of the distribution: ``"binomial"``, ``"poisson"``, ``"Gamma"``,
    ``"inverse.gaussian"`` or ``"negative.binomial"``."""
    link: str
    """R's name of the link: ``"logit"``, ``"probit"``, ``"log"``, ..."""
    shape: float | None = None
    """The negative binomial's shape θ (V(μ) = μ + μ²/θ); None for the other families."""

    def __post_init__(self) -> None:
        """Check that the family exists and has this link (and the negative binomial a shape)."""
        if self.name == "negative.binomial":
            s = self.shape
            if s is None or not (isinstance(s, int | float) and 0 < s < math.inf):
                raise ArgumentError(
                    f"the negative binomial family needs a positive finite shape, not {s!r} "
                    "(glmer_nb estimates it)"
                )
        elif self.shape is not None:
            raise ArgumentError(f"the {self.name} family has no shape")
        if self.name not in LINKS:
            have = ", ".join(map(repr, LINKS))
            raise ArgumentError(f"unknown family {self.name!r}; available families: {have}")
        if self.link not in LINKS[self.name]:
            have = ", ".join(map(repr, LINKS[self.name]))
            raise ArgumentError(
                f"link {self.link!r} is not available for the {self.name} family; "
                f"available links: {have}"
            )

    def linkfun(self, mu: np.ndarray) -> np.ndarray:
        """Return η = g(μ)."""
        return _linkfun(self.link, mu)

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        """Return μ = g⁻¹(η), with lme4's clamps."""
        return _linkinv(self.link, eta)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """Return dμ/dη."""
        return _mu_eta(self.link, eta)

    @property
    def has_scale(self) -> bool:
        """Whether the family has a dispersion (Gamma, inverse Gaussian): lme4 then reports σ."""
        return self.name in ("Gamma", "inverse.gaussian")

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """Return the variance function V(μ)."""
        if self.name == "binomial":
            return np.maximum(mu * (1 - mu), _EPS)
        if self.name == "Gamma":
            return np.asarray(mu * mu, dtype=np.float64)
        if self.name == "negative.binomial":
            return np.asarray(mu + mu * mu / self._shape, dtype=np.float64)
        if self.name == "inverse.gaussian":
            return np.asarray(mu * mu * mu, dtype=np.float64)
        return np.asarray(mu, dtype=np.float64)

    @property
    def _shape(self) -> float:
        assert self.shape is not None
        return self.shape

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """Return the deviance residuals dᵢ (R's ``dev.resids``; their sum is the deviance)."""
        if self.name == "binomial":
            return 2 * wt * (_ylogy(y, mu) + _ylogy(1 - y, 1 - mu))
        if self.name == "Gamma":
            return -2 * wt * (np.log(y / mu) - (y - mu) / mu)
        if self.name == "negative.binomial":
            th = self._shape
            return 2 * wt * (_ylogy(y, mu) - (y + th) * np.log((y + th) / (mu + th)))
        if self.name == "inverse.gaussian":
            return np.asarray(wt * (y - mu) ** 2 / (y * mu * mu), dtype=np.float64)
        return 2 * wt * (_ylogy(y, mu) - (y - mu))

    def mustart(self, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """Return R's starting means (the family's ``initialize``)."""
        if self.name == "binomial":
            return (wt * y + 0.5) / (wt + 1)
        if self.name in ("Gamma", "inverse.gaussian"):
            return np.asarray(y, dtype=np.float64)
        if self.name == "negative.binomial":
            return y + (y == 0) / 6
        return y + 0.1

    # -- the response ------------------------------------------------------------------
    def read_response(self, var: Factor | Numeric) -> tuple[np.ndarray, np.ndarray | None]:
        """Return y for every data row (NaN where missing) and the numbers of trials (or None).

        Binomial: a factor or logical (the first level is failure, as R), a
        0/1 or proportion column, or ``cbind(successes, failures)`` (y the
        proportion, the trials multiply the prior weights). Poisson: counts.
        """
        if isinstance(var, Factor):
            if self.name != "binomial":
                raise DataError(f"the response of a {self.name} model must be numeric counts")
            return np.where(var.codes < 0, np.nan, (var.codes > 0).astype(np.float64)), None
        v = var.values
        if v.shape[1] == 2 and self.name == "binomial":
            s, f = v[:, 0], v[:, 1]
            for what, c in (("successes", s), ("failures", f)):
                ok = np.isnan(c) | ((c >= 0) & (np.abs(c - np.round(c)) <= 1e-7 * np.maximum(1, c)))
                if not ok.all():
                    i = int(np.flatnonzero(~ok)[0])
                    raise DataError(
                        f"cbind(successes, failures): the {what} must be non-negative whole "
                        f"numbers; row {i} has {c[i]!r}"
                    )
            n = s + f
            return np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0), n
        if v.shape[1] != 1:
            raise DataError(
                f"the response has {v.shape[1]} columns; a {self.name} response has one"
                + (" (or two: cbind(successes, failures))" if self.name == "binomial" else "")
            )
        return v[:, 0], None

    def check_response(self, y: np.ndarray, wt: np.ndarray) -> None:
        """Refuse responses the family cannot have (after the rows were selected)."""
        if self.name == "binomial":
            bad = np.flatnonzero((y < 0) | (y > 1))
            if bad.size:
                raise DataError(
                    f"a binomial response must be in [0, 1] (0/1, a proportion or "
                    f"cbind(successes, failures)); observation {bad[0]} is {y[bad[0]]!r}"
                )
            k = wt * y
            bad = np.flatnonzero(np.abs(k - np.round(k)) > 1e-7 * np.maximum(1, wt))
            if bad.size:
                i = bad[0]
                raise DataError(
                    f"non-integer number of successes: observation {i} has proportion "
                    f"{y[i]!r} of {wt[i]!r} trials (a proportion needs weights = its "
                    "numbers of trials)"
                )
        elif self.name in ("Gamma", "inverse.gaussian"):
            bad = np.flatnonzero(~(y > 0))
            if bad.size:
                raise DataError(
                    f"a {self.name} response must be positive; observation {bad[0]} is "
                    f"{y[bad[0]]!r}"
                )
        else:
            bad = np.flatnonzero((y < 0) | (np.abs(y - np.round(y)) > 1e-7 * np.maximum(1, y)))
            if bad.size:
                raise DataError(
                    f"a {self.name} response must be non-negative whole numbers (counts); "
                    f"observation {bad[0]} is {y[bad[0]]!r}"
                )

    def loglik_constant(self, y: np.ndarray, wt: np.ndarray, n: np.ndarray) -> float:
        """Return lme4's ``aic(μ) − Σ dᵢ(μ)``: the part of −2 log L that does not depend on μ.

        Binomial: m = n (the trials of cbind) when any exceeds one, else the
        weights, as lme4's ``binomialDist::aic``; −2 Σ (wt/m) log C(m, k).
        Poisson: 2 Σ wt (log y! − y log y + y). Gamma, inverse Gaussian and
        negative binomial: 0 (lme4's aic − deviance depends on the dispersion or
        the modes: computed in the core).
        """
        if self.name in ("Gamma", "inverse.gaussian", "negative.binomial"):
            return 0.0
        if self.name == "binomial":
            m = np.round(n if (n > 1).any() else wt)
            if (m == 1).all() and ((y == 0) | (y == 1)).all():
                return 0.0  # Bernoulli: C(1, k) = 1 and y log y = 0
            k = np.round(m * y)
            logc = special.gammaln(m + 1) - special.gammaln(k + 1) - special.gammaln(m - k + 1)
            ratio = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
            sat = wt * (_ylogy(y, np.ones_like(y)) + _ylogy(1 - y, np.ones_like(y)))
            return float(-2 * np.sum(ratio * logc) - 2 * np.sum(sat))
        return float(2 * np.sum(wt * (special.gammaln(y + 1) - _ylogy(y, np.ones_like(y)) + y)))


def binomial(link: str = "logit") -> Family:
    """Return the binomial family (links: logit, probit, cloglog, cauchit, log)."""
    return Family("binomial", link)


def poisson(link: str = "log") -> Family:
    """Return the Poisson family (links: log, identity, sqrt)."""
    return Family("poisson", link)


def gamma(link: str = "inverse") -> Family:
    """Return the Gamma family (links: inverse, identity, log), R's ``Gamma``."""
    return Family("Gamma", link)


def inverse_gaussian(link: str = "1/mu^2") -> Family:
    """Return the inverse Gaussian family (links: 1/mu^2, inverse, identity, log), R's."""
    return Family("inverse.gaussian", link)


def negative_binomial(shape: float, link: str = "log") -> Family:
    """Return the negative binomial family of a given shape (MASS's ``negative.binomial``)."""
    return Family("negative.binomial", link, float(shape))


def family(spec: str | Family, link: str | None = None) -> Family:
    """Return a family from a name (and a link; None: the family's default) or a `Family`."""
    if isinstance(spec, Family):
        if link is not None and link != spec.link:
            return Family(spec.name, link, spec.shape)
        return spec
    if not isinstance(spec, str):
        raise ArgumentError(f"family must be a name or a Family, not {type(spec).__name__}")
    name = {"gamma": "Gamma", "inverse_gaussian": "inverse.gaussian"}.get(
        spec.lower(), spec.lower()
    )
    if name not in LINKS:
        have = ", ".join(map(repr, LINKS))
        raise ArgumentError(f"unknown family {spec!r}; available families: {have}")
    return Family(name, LINKS[name][0] if link is None else link)
