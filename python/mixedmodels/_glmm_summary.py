"""lme4's printed summary of a GLMM fit (``summary(glmerMod)``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._format import abbreviate, format_r, named_vector, table
from ._summary import format_pvalue

if TYPE_CHECKING:
    from .glmm_results import GeneralizedLinearMixedModelResult

__all__ = ["glmm_summary_text"]


def _stars(p: float) -> str:
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return " "


def glmm_summary_text(fit: GeneralizedLinearMixedModelResult) -> str:
    """Return lme4's summary layout of a GLMM fit."""
    d = fit.design
    how = {0: "Laplace Approximation", 1: "Laplace Approximation"}.get(
        fit.nagq, f"Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.nagq}"
    )
    lines = [
        f"Generalized linear mixed model fit by maximum likelihood ({how}) [glmerMod]",
        f" Family: {fit.family.name}  ( {fit.family.link} )",
        f"Formula: {fit.formula}",
    ]
    if fit.model.data_name:
        lines.append(f"   Data: {fit.model.data_name}")
    lines.append("")
    vals = [f"{v:.1f}" for v in (fit.aic, fit.bic, fit.loglik, fit.objective)]
    lines.append(
        named_vector(
            ["AIC", "BIC", "logLik", "deviance", "df.resid"], [*vals, str(fit.df_residual)]
        )
    )
    lines.append("")
    sr = fit.resid("pearson").to_numpy() / fit.sigma
    qs = np.quantile(sr, [0, 0.25, 0.5, 0.75, 1.0])
    mx = np.max(np.abs(qs))
    if mx > 0:
        qs = np.round(qs, max(0, 5 - math.ceil(math.log10(mx))))
    lines += ["Scaled residuals: ", named_vector(["Min", "1Q", "Median", "3Q", "Max"], list(qs))]
    lines += ["", "Random effects:", _varcorr(fit)]
    groups = "; ".join(f"{g}, {n}" for g, n in fit.ngrps.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    if d.n_dropped:
        lines.append(f"({d.n_dropped} observations deleted due to missingness)")
    lines.append("")
    if len(fit.beta):
        lines.extend(_fixed_effects(fit))
    if fit.is_singular:
        lines.append("boundary (singular) fit: see help('isSingular')")
    return "\n".join(lines) + "\n"


def _fixed_effects(fit: GeneralizedLinearMixedModelResult) -> list[str]:
    names = list(fit.design.x_names)
    p = len(names)
    ct = fit.coef_table()
    se = ct["Std. Error"].to_numpy()
    acs = np.abs(np.concatenate([fit.beta, se]))
    acs = acs[np.isfinite(acs) & (acs != 0)]
    dig = 4 - (1 + math.floor(math.log10(acs.min()))) if len(acs) else 4
    est_se = format_r(list(np.round(np.concatenate([fit.beta, se]), max(1, dig))), 4)
    zv = format_r(list(np.round(ct["z value"].to_numpy(), 3)), 4)
    pv = ct["Pr(>|z|)"].to_numpy()
    # printCoefmat: "<2e-16", the stars left-aligned in a column of width 3
    pvs = [format_pvalue(v).replace("< ", "<") for v in pv]
    rows = [[est_se[i], est_se[p + i], zv[i], pvs[i], _stars(pv[i]).ljust(3)] for i in range(p)]
    stat = "t value" if fit.family.has_scale else "z value"
    header = ["Estimate", "Std. Error", stat, "Pr(>|z|)", ""]
    lines = ["Fixed effects:", table(header, rows, names), "---"]
    lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
    if 1 < p <= 12:
        lines += ["", "Correlation of Fixed Effects:"]
        corr = fit.vcov.to_numpy() / np.outer(se, se)
        cols = [abbreviate(nm, 6) for nm in names[:-1]]
        body = [[f"{corr[i, j]:.3f}" if j < i else "" for j in range(p - 1)] for i in range(1, p)]
        lines.append(table(cols, body, names[1:], right=False))
    return lines


def _varcorr(fit: GeneralizedLinearMixedModelResult) -> str:
    vc = fit.covariances
    kmax = max(len(c) for c in vc.values())
    var_all: list[float] = []
    for c in vc.values():
        var_all.extend(np.diag(c.to_numpy()))
    if fit.family.has_scale:
        var_all.append(fit.sigma**2)
    vs, ss = format_r(var_all, 4), format_r(list(np.sqrt(var_all)), 4)
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    if kmax > 1:
        header += ["Corr"] + [""] * (kmax - 2)
    rows = []
    i = 0
    for g, c in vc.items():
        cm = c.to_numpy()
        sd = np.sqrt(np.diag(cm))
        for r, nm in enumerate(c.index):
            corr = [
                (f"{cm[r, j] / (sd[r] * sd[j]):.2f}" if sd[r] * sd[j] > 0 else "NaN")
                if j < r
                else ""
                for j in range(kmax - 1)
            ]
            rows.append([g if r == 0 else "", nm, vs[i], ss[i], *corr])
            i += 1
    if fit.family.has_scale:
        rows.append(["Residual", "", vs[i], ss[i]] + [""] * (kmax - 1))
    return table(header, rows, rownames=[""] * len(rows), right=False)
