"""Inference after the fit: model comparison, intervals, degrees of freedom.

Small-sample degrees of freedom for the fixed effects come from
Satterthwaite's or Kenward and Roger's approximation.

- `anova`: likelihood-ratio tests between nested models (lme4's ``anova``,
  refitting REML fits by ML), or, for one model, lmerTest's type III F tests
  with Satterthwaite's denominator degrees of freedom.
- `coef_table`: the fixed effects with lmerTest's Satterthwaite
  (`_satterthwaite`) or pbkrtest's Kenward-Roger (`_kenward_roger`) degrees
  of freedom.
- `confint`: Wald, profile-likelihood (`profile`) and parametric-bootstrap
  intervals in lme4's row order.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from ._kenward_roger import KR_MAX_N, KenwardRogerInfo, kenward_roger
from ._numderiv import numderiv_hessian, numderiv_jacobian
from ._params import param_names, param_values
from ._satterthwaite import SatterthwaiteInfo, satterthwaite, satterthwaite_info
from .design import Design
from .exceptions import ArgumentError, DataError
from .profile import profile_confint

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = [
    "KR_MAX_N",
    "KenwardRogerInfo",
    "SatterthwaiteInfo",
    "anova",
    "bootstrap",
    "coef_table",
    "confint",
    "kenward_roger",
    "numderiv_hessian",
    "numderiv_jacobian",
    "satterthwaite",
]


def coef_table(fit: LinearMixedModelResult, ddf: str | None = "satterthwaite") -> pd.DataFrame:
    """Return the fixed-effects table: estimate, se, df, t, p.

    Parameters
    ----------
    fit
        The fitted model.
    ddf
        ``"satterthwaite"`` (lmerTest), ``"kenward-roger"`` (pbkrtest:
        adjusted SEs, KR df), or None (t values only, no df and p).

    Returns
    -------
    pandas.DataFrame
        One row per fixed effect.
    """
    if ddf is None:
        se = fit.stderror.to_numpy()
        return pd.DataFrame(
            {"estimate": fit.beta, "se": se, "t": fit.beta / se}, index=list(fit.design.x_names)
        )
    key = ddf.lower().replace("_", "-")
    if key == "satterthwaite":
        return satterthwaite(fit)
    if key in ("kenward-roger", "kr"):
        return kenward_roger(fit)
    raise ArgumentError(f"unknown ddf {ddf!r}: 'satterthwaite' or 'kenward-roger'")


def anova_type3(fit: LinearMixedModelResult) -> pd.DataFrame:
    """Return lmerTest's type III table with Satterthwaite df, for models without interactions.

    Each term is tested by the rows of its columns, which is lmerTest's type
    III hypothesis there; models with interactions raise NotImplementedError.
    """
    d = fit.design
    info = satterthwaite_info(fit)
    names = list(d.x_names)
    rows, labels = [], []
    all_names = _built_names(d)
    terms = d.x_builder.term_columns()
    if any(":" in term for term, _ in terms):
        # lmerTest's type III hypotheses for terms marginal to an interaction
        # are not the rows of the term's columns; not implemented yet.
        raise NotImplementedError(
            "type III F tests for models with interaction terms are not implemented yet; "
            "use fit.coef_table() for each coefficient, or mm.anova(fit0, fit1) to compare models"
        )
    for term, cols in terms:
        idx = [names.index(all_names[c]) for c in cols if all_names[c] in names]
        if not idx:
            continue
        L = np.zeros((len(idx), len(names)))
        for r, c in enumerate(idx):
            L[r, c] = 1.0
        f, q, den, p = info.f_test(L, fit.beta)
        rows.append((f, q, den, p))
        labels.append(term)
    return pd.DataFrame(rows, index=labels, columns=["F", "NumDF", "DenDF", "p"])


def _built_names(d: Design) -> list[str]:
    """Names of X's columns as built, before dropping rank-deficient ones."""
    keep = d.x_builder.keep
    if keep is None:
        return list(d.x_names)
    total = max(keep) + 1 + len(d.dropped_columns) if keep else len(d.dropped_columns)
    out: list[str | None] = [None] * total
    for name, k in zip(d.x_names, keep, strict=True):
        out[k] = name
    it = iter(d.dropped_columns)
    return [o if o is not None else next(it) for o in out]


def _check_same_data(fits: tuple[LinearMixedModelResult, ...]) -> None:
    """Refuse a likelihood-ratio test between fits to different data (as lme4 does)."""
    first = fits[0].design
    for f in fits[1:]:
        d = f.design
        if d.n != first.n:
            raise DataError(
                "models were not all fitted to the same size of data set "
                f"({first.n} and {d.n} observations); a likelihood-ratio test needs the same rows"
            )
        if not np.array_equal(d.y, first.y):
            raise DataError(
                "models were not all fitted to the same response; "
                "a likelihood-ratio test compares models of the same data"
            )


def _check_glmms(fits: tuple[Any, ...], glmm: list[bool]) -> None:
    """Refuse what a likelihood-ratio test cannot compare among GLMM fits."""
    if not all(glmm):
        raise ArgumentError(
            "anova compares linear mixed models with each other and GLMMs with each other, "
            "not a linear mixed model with a GLMM"
        )
    if len(fits) == 1:
        raise ArgumentError(
            "anova of one GLMM (F tests) is not available; compare nested GLMMs with "
            "mm.anova(fit0, fit1)"
        )
    kinds = {(f.family.name, f.family.link, f.nagq > 1) for f in fits}
    if len(kinds) > 1:
        raise ArgumentError(
            "the GLMMs differ in family, link or approximation (Laplace against quadrature, "
            "whose -2 log L leaves out a constant): their likelihoods are not comparable"
        )


def anova(*fits: Any, names: list[str] | None = None) -> pd.DataFrame:
    """Compare nested models, or test the fixed-effects terms of one model.

    Parameters
    ----------
    *fits
        One fit: lmerTest's type III F tests (Satterthwaite df). Several fits
        (linear mixed models, or GLMMs of one family, link and approximation):
        likelihood-ratio tests between nested models, as lme4's ``anova``
        (REML fits are refitted by maximum likelihood first), in increasing
        number of parameters; deviance is −2 log L.
    names
        Row labels for several fits (default: their formulas).

    Returns
    -------
    pandas.DataFrame
        F, NumDF, DenDF, p per term (one fit); npar, AIC, BIC, logLik,
        deviance, Chisq, Df, p per model (several fits).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> d = mm.datasets.load("sleepstudy")
    >>> small = mm.lmer("Reaction ~ Days + (1 | Subject)", d)
    >>> big = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    >>> mm.anova(small, big)[["npar", "deviance", "Chisq", "Df"]].round(2)
                                        npar  deviance  Chisq   Df
    Reaction ~ Days + (1 | Subject)        4   1794.08    NaN  NaN
    Reaction ~ Days + (Days | Subject)     6   1751.94  42.14  2.0
    """
    for i, f in enumerate(fits):
        if not hasattr(f, "design") or not (hasattr(f, "refit_ml") or hasattr(f, "family")):
            raise ArgumentError(f"anova takes fitted models; argument {i + 1} is {f!r}")
    glmm = [hasattr(f, "family") for f in fits]
    if any(glmm):
        _check_glmms(fits, glmm)
    if len(fits) == 1:
        return anova_type3(fits[0])
    _check_same_data(fits)
    # GLMMs are fitted by maximum likelihood already
    ml = list(fits) if all(glmm) else [f.refit_ml() for f in fits]
    labels = names or [f.formula for f in fits]
    order = sorted(range(len(ml)), key=lambda i: ml[i].npar)
    rows = []
    prev = None
    for i in order:
        f = ml[i]
        row = {
            "npar": f.npar,
            "AIC": f.aic,
            "BIC": f.bic,
            "logLik": f.loglik,
            "deviance": -2 * f.loglik,
            "Chisq": np.nan,
            "Df": np.nan,
            "p": np.nan,
        }
        if prev is not None:
            chisq = 2 * (f.loglik - prev.loglik)
            df = f.npar - prev.npar
            row["Chisq"], row["Df"] = chisq, df
            row["p"] = stats.chi2.sf(chisq, df) if df > 0 else np.nan
        rows.append(row)
        prev = f
    return pd.DataFrame(rows, index=[labels[i] for i in order])


def confint(
    fit: LinearMixedModelResult,
    method: str = "wald",
    level: float = 0.95,
    nsim: int = 500,
    seed: int | np.random.Generator | None = None,
    n_jobs: int = 1,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Return confidence intervals in lme4's order: the sds and correlations, σ, then β.

    Parameters
    ----------
    fit
        The fitted model.
    method
        ``"wald"``: β ± z SE (none for variance parameters, as lme4).
        ``"profile"``: profile-likelihood intervals (lme4's profile; REML fits
        are profiled on the ML deviance, as lme4 does). ``"boot"``:
        parametric bootstrap percentile intervals (lme4's bootMer).
    level
        Confidence level.
    nsim, seed
        Bootstrap: number of responses simulated from the fit, each refitted,
        and the seed of the simulation.
    n_jobs
        Bootstrap: threads (the numerical work releases the GIL).
    progress
        Bootstrap: a progress line on stderr (default: for long runs on a terminal).

    Returns
    -------
    pandas.DataFrame
        Columns lower and upper, one row per parameter.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> mm.inference.confint(fit).iloc[-2:].round(2)
                  lower   upper
    (Intercept)  238.03  264.78
    Days           7.44   13.50
    """
    names = param_names(fit)
    alpha = (1 - level) / 2
    key = method.lower()
    if key == "wald":
        lower = np.full(len(names), np.nan)
        upper = np.full(len(names), np.nan)
        se = fit.stderror.to_numpy()
        z = stats.norm.ppf(1 - alpha)
        p = len(fit.beta)
        lower[len(lower) - p :] = fit.beta - z * se  # (not [-p:]: p may be 0)
        upper[len(upper) - p :] = fit.beta + z * se
        return pd.DataFrame({"lower": lower, "upper": upper}, index=names)
    if key in ("boot", "bootstrap"):
        samples = bootstrap(fit, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress)
        lower = np.nanquantile(samples, alpha, axis=0)
        upper = np.nanquantile(samples, 1 - alpha, axis=0)
        return pd.DataFrame({"lower": lower, "upper": upper}, index=names)
    if key == "profile":
        return profile_confint(fit, level)
    raise ArgumentError(f"unknown method {method!r}: 'wald', 'profile' or 'boot'")


def bootstrap(
    fit: LinearMixedModelResult,
    nsim: int = 500,
    seed: int | np.random.Generator | None = None,
    n_jobs: int = 1,
    progress: bool | None = None,
) -> np.ndarray:
    """Return a parametric bootstrap (lme4's bootMer, type "parametric").

    An nsim x n_params array of the parameters (sds, correlations, σ, β)
    refitted to responses simulated from the fit.
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs < 1:
        raise ArgumentError(f"n_jobs must be a positive whole number of threads, not {n_jobs!r}")
    ys = fit.simulate(nsim, seed=seed).to_numpy()
    if progress is None:
        progress = nsim >= 200 and sys.stderr.isatty()
    out = np.empty((nsim, len(param_names(fit))))
    t0 = time.perf_counter()

    def one(i: int) -> None:
        out[i] = param_values(fit.refit(ys[:, i]))

    if n_jobs == 1:
        for i in range(nsim):
            one(i)
            if progress and (i + 1) % max(1, nsim // 20) == 0:
                _report(i + 1, nsim, t0)
    else:
        with ThreadPoolExecutor(n_jobs) as ex:
            for done, _ in enumerate(ex.map(one, range(nsim)), start=1):
                if progress and done % max(1, nsim // 20) == 0:
                    _report(done, nsim, t0)
    if progress:
        sys.stderr.write("\n")
    return out


def _report(done: int, total: int, t0: float) -> None:
    el = time.perf_counter() - t0
    sys.stderr.write(f"\rbootstrap: {done}/{total} refits, {el:.1f} s")
    sys.stderr.flush()
