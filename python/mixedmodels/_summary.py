"""lme4's printed summary of a fit, with R's number formatting rules."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._format import abbreviate, format_r, named_vector, table

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["format_pvalue", "summary_text"]


def format_pvalue(p: float) -> str:
    """Format a p value as R's format.pval with 3 digits: '< 2e-16' below machine precision."""
    if not np.isfinite(p):
        return "NA"
    if p < 2.2e-16:
        return "< 2e-16"
    return f"{p:.3g}"


def summary_text(fit: LinearMixedModelResult, ddf: str | None = None) -> str:
    """Return lme4's ``summary(fit)`` layout (lmerTest's with ``ddf``)."""
    d = fit.design
    lines = []
    crit = "REML " if fit.reml else "maximum likelihood  "
    lines.append(f"Linear mixed model fit by {crit}['lmerMod']")
    lines.append(f"Formula: {fit.formula}")
    if fit.model.data_name:
        lines.append(f"   Data: {fit.model.data_name}")
    lines.append("")
    if fit.reml:
        crit_value = format_r([round(fit.objective, 1)], 7)[0]
        lines.append(f"REML criterion at convergence: {crit_value}")
    else:
        vals = [f"{v:.1f}" for v in (fit.aic, fit.bic, fit.loglik, fit.objective)]
        lines.append(
            named_vector(
                ["AIC", "BIC", "logLik", "deviance", "df.resid"], [*vals, str(fit.df_residual)]
            )
        )
    lines.append("")
    # scaled residuals: zapsmall(quantile, digits + 1) then print(digits)
    if fit.design.rows_kept:
        sr = fit.resid("scaled").to_numpy()
        qs = np.quantile(sr, [0, 0.25, 0.5, 0.75, 1.0])
        mx = np.max(np.abs(qs))
        if mx > 0:
            qs = np.round(qs, max(0, 5 - math.ceil(math.log10(mx))))
        lines.append("Scaled residuals: ")
        lines.append(named_vector(["Min", "1Q", "Median", "3Q", "Max"], list(qs)))
    else:
        lines.append("Scaled residuals: not kept (a fit from data read in chunks)")
    lines.append("")
    lines.append("Random effects:")
    lines.append(_format_varcorr(fit))
    groups = "; ".join(f"{g}, {n}" for g, n in fit.ngrps.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    if d.n_dropped:
        lines.append(f"({d.n_dropped} observations deleted due to missingness)")
    lines.append("")
    if len(fit.beta):
        lines.extend(_fixed_effects(fit, ddf))
    if fit.is_singular:
        lines.append("boundary (singular) fit: see help('isSingular')")
    return "\n".join(lines) + "\n"


def _fixed_effects(fit: LinearMixedModelResult, ddf: str | None) -> list[str]:
    """Return the fixed-effects table and the correlation of the fixed effects."""
    names = list(fit.design.x_names)
    p = len(names)
    se = fit.stderror.to_numpy()
    # R's printCoefmat: round estimates and SEs together, t values to 3 decimals
    acs = np.abs(np.concatenate([fit.beta, se]))
    acs = acs[np.isfinite(acs) & (acs != 0)]
    dig = 4 - (1 + math.floor(math.log10(acs.min()))) if len(acs) else 4
    est_se = format_r(list(np.round(np.concatenate([fit.beta, se]), max(1, dig))), 4)
    tv = format_r(list(np.round(fit.beta / se, 3)), 4)
    rows = [[est_se[i], est_se[p + i], tv[i]] for i in range(p)]
    header = ["Estimate", "Std. Error", "t value"]
    if ddf is not None:
        ct = fit.coef_table(ddf)
        dfs = format_r(list(np.round(ct["df"].to_numpy(), 3)), 4)
        pv = [format_pvalue(v) for v in ct["p"].to_numpy()]
        rows = [[r[0], r[1], dfs[i], r[2], pv[i]] for i, r in enumerate(rows)]
        header = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    lines = ["Fixed effects:", table(header, rows, names)]
    if 1 < p <= 12:
        lines.append("")
        lines.append("Correlation of Fixed Effects:")
        corr = fit.vcov.to_numpy() / np.outer(se, se)
        cols = [abbreviate(nm, 6) for nm in names[:-1]]
        body = [[f"{corr[i, j]:.3f}" if j < i else "" for j in range(p - 1)] for i in range(1, p)]
        lines.append(table(cols, body, names[1:], right=False))
    return lines


def _format_varcorr(fit: LinearMixedModelResult) -> str:
    """Return the random-effects table: variances, sds and correlations, as lme4 prints them."""
    vc = fit.covariances
    kmax = max(len(c) for c in vc.values())
    var_all: list[float] = []
    sd_all: list[float] = []
    for c in vc.values():
        dv = np.diag(c.to_numpy())
        var_all.extend(dv)
        sd_all.extend(np.sqrt(dv))
    var_all.append(fit.sigma**2)
    sd_all.append(fit.sigma)
    vs, ss = format_r(var_all, 4), format_r(sd_all, 4)
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    if kmax > 1:
        header += ["Corr"] + [""] * (kmax - 2)
    rows = []
    corr_cols: list[list[str]] = [[] for _ in range(kmax - 1)]
    i = 0
    for g, c in vc.items():
        cm = c.to_numpy()
        sd = np.sqrt(np.diag(cm))
        for r, nm in enumerate(c.index):
            rows.append([g if r == 0 else "", nm, vs[i], ss[i]])
            for j in range(kmax - 1):
                den = sd[r] * sd[j] if j < r else 0.0
                if j < r:
                    corr_cols[j].append(f"{cm[r, j] / den:.2f}" if den > 0 else "NaN")
                else:
                    corr_cols[j].append("")
            i += 1
    for col in corr_cols:
        w = max(len(v) for v in col)
        for row, v in zip(rows, col, strict=True):
            row.append(v.rjust(w) if v else "")
    rows.append(["Residual", "", vs[i], ss[i]] + [""] * (kmax - 1))
    return table(header, rows, rownames=[""] * len(rows), right=False)
