"""The fitted model: estimates, tables and lme4's summary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._format import abbreviate, format_r, named_vector, table
from .design import Design
from .optimize import OptSummary

__all__ = ["LinearMixedModelResult", "RandomEffects"]


def _format_pvalue(p: float) -> str:
    """R's format.pval with 3 digits: '< 2e-16' below machine precision."""
    if not np.isfinite(p):
        return "NA"
    if p < 2.2e-16:
        return "< 2e-16"
    return f"{p:.3g}"


@dataclass(frozen=True)
class RandomEffects:
    """Conditional modes of the random effects and their conditional
    covariances, per grouping factor (lme4's ``ranef(fit, condVar = TRUE)``).

    ``modes[g]`` is a DataFrame (levels x coefficients); ``condvar[g]`` an
    array (levels, k, k). Terms on the same grouping factor are combined, as
    lme4 does. Index it like a dict: ``fit.ranef["Subject"]``.
    """

    modes: dict[str, pd.DataFrame]
    condvar: dict[str, np.ndarray] = field(repr=False)

    def __getitem__(self, group: str) -> pd.DataFrame:
        return self.modes[group]

    def __iter__(self):
        return iter(self.modes)

    def __len__(self) -> int:
        return len(self.modes)

    def keys(self):
        return self.modes.keys()

    def condsd(self, group: str) -> pd.DataFrame:
        """Conditional standard deviations (levels x coefficients)."""
        cv = self.condvar[group]
        m = self.modes[group]
        return pd.DataFrame(np.sqrt(np.einsum("lii->li", cv)), index=m.index, columns=m.columns)

    def as_frame(self) -> pd.DataFrame:
        """Long format, as lme4's ``as.data.frame(ranef(fit, condVar = TRUE))``:
        columns grpvar, term, grp, condval, condsd."""
        parts = []
        for g, m in self.modes.items():
            sd = self.condsd(g)
            for c in m.columns:
                parts.append(
                    pd.DataFrame(
                        {
                            "grpvar": g,
                            "term": c,
                            "grp": m.index.astype(str),
                            "condval": m[c].to_numpy(),
                            "condsd": sd[c].to_numpy(),
                        }
                    )
                )
        return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True, eq=False)
class LinearMixedModelResult:
    """A fitted linear mixed model (lme4's ``merMod``).

    Primary quantities are attributes; derived ones are computed on first use.
    """

    model: object = field(repr=False)
    """The `LinearMixedModel` that was fitted."""
    reml: bool
    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    objective: float
    """REML criterion (REML fits) or ML deviance at the optimum."""
    optsum: OptSummary = field(repr=False)
    u: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)
    fitted_values: np.ndarray = field(repr=False)
    pwrss: float = field(repr=False)
    ld_l2: float = field(repr=False)
    ld_rx2: float = field(repr=False)
    rx: np.ndarray = field(repr=False)

    @classmethod
    def _from_model(cls, model, optsum: OptSummary) -> LinearMixedModelResult:
        theta = np.asarray(optsum.final, dtype=np.float64)
        sol = model._ws.solve(theta)
        d: Design = model.design
        n, p = d.n, d.p
        sigma = math.sqrt(sol["pwrss"] / (n - p if model.reml else n))
        obj = model.objective(theta)
        return cls(
            model=model,
            reml=model.reml,
            theta=theta,
            beta=np.asarray(sol["beta"]),
            sigma=sigma,
            objective=obj,
            optsum=optsum,
            u=np.asarray(sol["u"]),
            b=np.asarray(sol["b"]),
            fitted_values=model._fitted_from_core(np.asarray(sol["fitted"])),
            pwrss=sol["pwrss"],
            ld_l2=sol["ld_l2"],
            ld_rx2=sol["ld_rx2"],
            rx=np.asarray(sol["rx"]),
        )

    # -- layout -------------------------------------------------------------
    @property
    def design(self) -> Design:
        return self.model.design

    @property
    def formula(self) -> str:
        return self.design.formula.text

    @property
    def nobs(self) -> int:
        return self.design.n

    @property
    def n_dropped(self) -> int:
        """Rows dropped because of missing values."""
        return self.design.n_dropped

    @cached_property
    def ngrps(self) -> dict[str, int]:
        """Levels per grouping factor (each factor once), lme4's ``ngrps``."""
        out: dict[str, int] = {}
        for t in self.design.terms:
            out.setdefault(t.group, t.n_levels)
        return out

    @property
    def theta_names(self) -> list[str]:
        return self.design.theta_names

    @property
    def lower(self) -> np.ndarray:
        return self.design.lower

    # -- estimates ------------------------------------------------------------
    @cached_property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates β."""
        return pd.Series(self.beta, index=list(self.design.x_names), name="Estimate")

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance of β̂: σ² (RXᵀRX)⁻¹."""
        p = len(self.beta)
        rinv = np.linalg.solve(self.rx, np.eye(p)) if p else np.empty((0, 0))
        v = self.sigma**2 * rinv @ rinv.T
        names = list(self.design.x_names)
        return pd.DataFrame(v, index=names, columns=names)

    @property
    def npar(self) -> int:
        """Number of parameters: β, θ and σ."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def loglik(self) -> float:
        """Log-likelihood (REML log-likelihood for REML fits), as lme4's logLik."""
        return -0.5 * self.objective

    @property
    def deviance(self) -> float:
        """-2 log-likelihood: the ML deviance, or the REML criterion for REML fits."""
        return self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.npar

    @property
    def bic(self) -> float:
        return self.objective + math.log(self.nobs) * self.npar

    @property
    def df_residual(self) -> int:
        return self.nobs - self.npar

    @cached_property
    def fitted(self) -> pd.Series:
        """Fitted values Xβ + Zb, indexed like the data rows used."""
        return pd.Series(self.fitted_values, index=self.design.row_index, name="fitted")

    @cached_property
    def residuals(self) -> pd.Series:
        """Response residuals y - fitted."""
        return pd.Series(
            self.design.y - self.fitted_values, index=self.design.row_index, name="residuals"
        )

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a θ element bounded by zero is below the tolerance."""
        tol = self.optsum.control.singular_tol
        return bool(np.any(self.theta[self.lower == 0] < tol))

    @cached_property
    def covariances(self) -> dict[str, pd.DataFrame]:
        """Per term, the covariance matrix of its random effects σ² T Tᵀ
        (the blocks of lme4's ``bdiag(VarCorr(fit))``). Keys are lme4's group
        names, made unique as ``Subject``, ``Subject.1``."""
        from .matrices import templates

        out = {}
        used: dict[str, int] = {}
        for t, tm in zip(self.design.terms, templates(self), strict=True):
            key = t.group if t.group not in used else f"{t.group}.{used[t.group]}"
            used[t.group] = used.get(t.group, 0) + 1
            out[key] = pd.DataFrame(
                self.sigma**2 * tm @ tm.T, index=list(t.cnames), columns=list(t.cnames)
            )
        return out

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components, as lme4's ``as.data.frame(VarCorr(fit))``:
        columns grp, var1, var2, vcov, sdcor."""
        rows = []
        for g, cov in self.covariances.items():
            names = list(cov.index)
            c = cov.to_numpy()
            sd = np.sqrt(np.diag(c))
            for i, nm in enumerate(names):
                rows.append((g, nm, None, c[i, i], sd[i]))
            for j in range(len(names)):
                for i in range(j + 1, len(names)):
                    denom = sd[i] * sd[j]
                    corr = c[i, j] / denom if denom > 0 else np.nan
                    rows.append((g, names[j], names[i], c[i, j], corr))
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    @cached_property
    def ranef(self) -> RandomEffects:
        """Conditional modes and conditional variances of the random effects."""
        blocks = self.model._ws.cond_var(self.theta)
        s2 = self.sigma**2
        pieces: dict[str, list] = {}
        off = 0
        for t, cv in zip(self.design.terms, blocks, strict=True):
            q = t.n_levels * t.k
            modes = self.b[off : off + q].reshape(t.n_levels, t.k)
            off += q
            pieces.setdefault(t.group, []).append((t, modes, s2 * np.asarray(cv)))
        modes_out, cv_out = {}, {}
        for g, parts in pieces.items():
            levels = parts[0][0].levels
            cols = [c for t, _, _ in parts for c in t.cnames]
            modes_out[g] = pd.DataFrame(
                np.hstack([m for _, m, _ in parts]), index=levels, columns=cols
            )
            ktot = len(cols)
            cv = np.zeros((len(levels), ktot, ktot))
            o = 0
            for t, _, c in parts:
                cv[:, o : o + t.k, o : o + t.k] = c
                o += t.k
            cv_out[g] = cv
        return RandomEffects(modes_out, cv_out)

    # -- random effects, prediction, simulation ---------------------------------
    def coef(self) -> dict[str, pd.DataFrame]:
        """Fixed plus random effects per level of each grouping factor (lme4's
        ``coef``): columns are the fixed effects, then any random-only ones."""
        out = {}
        fe = self.fixef
        for g, modes in self.ranef.modes.items():
            cols = list(fe.index) + [c for c in modes.columns if c not in fe.index]
            df = pd.DataFrame(
                np.tile([fe.get(c, 0.0) for c in cols], (len(modes), 1)),
                index=modes.index,
                columns=cols,
            )
            for c in modes.columns:
                df[c] = df[c] + modes[c].to_numpy()
            out[g] = df
        return out

    def resid(self, type: str = "response") -> pd.Series:
        """Residuals: ``"response"`` (y − fitted), ``"pearson"`` (√w (y − fitted))
        or ``"scaled"`` (Pearson residuals over σ), as lme4's ``residuals``."""
        r = self.design.y - self.fitted_values
        if type == "response":
            vals = r
        elif type in ("pearson", "scaled"):
            w = self.design.weights
            vals = r if w is None else r * np.sqrt(w)
            if type == "scaled":
                vals = vals / self.sigma
        else:
            raise ValueError(f"unknown residual type {type!r}: response, pearson or scaled")
        return pd.Series(vals, index=self.design.row_index, name=f"{type} residuals")

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        re_form: str | None = None,
        allow_new_levels: bool = False,
    ) -> np.ndarray:
        """Predictions, as lme4's ``predict``.

        Parameters
        ----------
        newdata
            Data to predict for (default: the fitted rows).
        re_form
            None: all random effects; ``"~0"`` (or ``"NA"``): none, the
            population prediction; a formula such as ``"~(1|Subject)"``: only
            those random-effects terms.
        allow_new_levels
            Levels of a grouping factor not seen in the fit get the population
            prediction for that term when True; when False they are an error
            that names them.
        """
        from .predict import predict

        return predict(self, newdata, re_form, allow_new_levels)

    def simulate(self, nsim: int = 1, seed=None) -> pd.DataFrame:
        """Responses simulated from the fitted model (lme4's ``simulate``):
        y* = Xβ̂ + offset + Zb* + ε*, b* ~ N(0, σ̂²ΛΛᵀ), ε* ~ N(0, σ̂²W⁻¹).
        One column per simulation (sim_1, ...)."""
        from .predict import simulate

        return simulate(self, nsim, seed)

    def refit(self, y, control=None) -> LinearMixedModelResult:
        """Fit the same model to a new response (lme4's ``refit``), reusing
        everything that depends only on X, Z and the grouping. The optimizer
        starts from this fit's θ."""
        model = self.model.with_response(y)
        return model.fit(control, start=self.theta)

    # -- inference ------------------------------------------------------------------
    @cached_property
    def _satterthwaite_info(self):
        from .inference import SatterthwaiteInfo

        return SatterthwaiteInfo(self)

    @cached_property
    def _kenward_roger_info(self):
        from .inference import KenwardRogerInfo

        return KenwardRogerInfo(self)

    def coef_table(self, ddf: str | None = "satterthwaite") -> pd.DataFrame:
        """Fixed effects with estimate, se, df, t and p; ``ddf`` is
        ``"satterthwaite"`` (lmerTest), ``"kenward-roger"`` (pbkrtest) or None
        (no df, as lme4's summary)."""
        from .inference import coef_table

        return coef_table(self, ddf)

    def confint(self, method: str = "wald", level: float = 0.95, **kwargs) -> pd.DataFrame:
        """Confidence intervals (lme4's ``confint`` order): ``"wald"`` or
        ``"boot"`` (parametric bootstrap; ``nsim``, ``seed``, ``n_jobs``)."""
        from .inference import confint

        return confint(self, method, level, **kwargs)

    def profile(self, level: float = 0.99, points: int = 15) -> pd.DataFrame:
        """Profile traces (lme4's ``profile``): ζ at points spanning each
        parameter's profile interval; columns param, value, zeta."""
        from .profile import profile

        return profile(self, level, points)

    # -- the model's matrices (lme4's getME, V, G, R) ----------------------------
    _GET_ME = (
        "X",
        "y",
        "Z",
        "Zt",
        "Lambda",
        "Lambdat",
        "Lind",
        "theta",
        "beta",
        "u",
        "b",
        "sigma",
        "flist",
        "cnms",
        "Gp",
        "L",
        "RX",
        "RZX",
        "lower",
        "n_rtrms",
    )

    def get_me(self, name: str):
        """lme4's ``getME(fit, name)``.

        ``X`` (n x p array), ``y``, ``Z`` and ``Zt`` (scipy sparse, columns in
        lme4's order: term by term, level by level, the term's coefficients
        together), ``Lambda``/``Lambdat`` (sparse, every structural entry
        stored), ``Lind`` (0-based θ index of each stored entry of Lambdat),
        ``theta``, ``beta``, ``u``, ``b``, ``sigma``, ``flist`` (DataFrame of
        the grouping factors), ``cnms`` (per term: group and column names),
        ``Gp`` (first random-effect column of each term, and q), ``L`` (the
        sparse Cholesky factor of ΛᵀZᵀZΛ + I with its permutation, an
        `LFactor`), ``RX`` (p x p upper triangular), ``RZX`` (q x p, rows in
        L's order), ``lower``, ``n_rtrms``. `z_columns` labels Z's columns.
        """
        from . import matrices as mx

        d = self.design
        if name == "X":
            return d.X.copy()
        if name == "y":
            return d.y.copy()
        if name == "Z":
            return mx.z_matrix(self)
        if name == "Zt":
            return sp.csc_array(mx.z_matrix(self).T)
        if name == "Lambdat":
            return mx.lambdat(self)[0]
        if name == "Lambda":
            return sp.csc_array(mx.lambdat(self)[0].T)
        if name == "Lind":
            return mx.lambdat(self)[1]
        if name in ("theta", "beta", "u", "b"):
            return getattr(self, name).copy()
        if name == "sigma":
            return self.sigma
        if name == "flist":
            return pd.DataFrame(
                {t.group: pd.Categorical.from_codes(t.codes, categories=t.levels) for t in d.terms},
                index=d.row_index,
            ).loc[:, lambda f: ~f.columns.duplicated()]
        if name == "cnms":
            return [(t.group, list(t.cnames)) for t in d.terms]
        if name == "Gp":
            return np.concatenate([[0], np.cumsum([t.n_levels * t.k for t in d.terms])])
        if name == "L":
            return mx.l_factor(self)
        if name == "RX":
            return self.rx.copy()
        if name == "RZX":
            return np.asarray(self.model._ws.solve(self.theta)["rzx"])
        if name == "lower":
            return self.lower.copy()
        if name == "n_rtrms":
            return len(d.terms)
        raise KeyError(f"get_me: unknown name {name!r}; known: {', '.join(self._GET_ME)}")

    @cached_property
    def z_columns(self) -> pd.DataFrame:
        """One row per column of Z (and of G, Λ, u, b): its term's grouping
        factor, the level, and the coefficient."""
        parts = []
        for t in self.design.terms:
            parts.append(
                pd.DataFrame(
                    {
                        "group": t.group,
                        "level": np.repeat(np.asarray(t.levels, dtype=object), t.k),
                        "coef": np.tile(np.asarray(t.cnames, dtype=object), t.n_levels),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def V(self, dense: bool = False, max_bytes: int | None = None):
        """The marginal covariance V = ZGZᵀ + R = σ²(ZΛΛᵀZᵀ + I), n x n, rows
        in the data's order (after dropping rows with missing values).

        A scipy sparse array (exact zeros not stored), or a numpy array with
        ``dense=True``. Refuses with `MemoryBudgetError`, before building
        anything, when V could exceed ``max_bytes`` (default 2 GiB): crossed
        designs make V nearly dense; use `V_solve`, `V_matvec`, `V_logdet`
        or `V_blocks` instead.
        """
        from . import matrices as mx

        return mx.v_matrix(self, dense, max_bytes or mx.DEFAULT_MAX_BYTES)

    def V_blocks(self, max_bytes: int | None = None) -> list:
        """V split into its independent diagonal blocks (groups of
        observations that share no random effect with the others, e.g. one per
        school for ``(1 | sch/tch)``): a list of `VBlock` (rows, dense V)."""
        from . import matrices as mx

        return mx.v_blocks(self, max_bytes or mx.DEFAULT_MAX_BYTES)

    def G(self) -> sp.csc_array:
        """G = σ²ΛΛᵀ, the covariance of the random effects, in Z's columns
        (the notes' ``Gm``); its blocks are `covariances`."""
        from . import matrices as mx

        return mx.g_matrix(self)

    def R(self) -> sp.dia_array:
        """R = σ²W⁻¹, the residual covariance (σ²I without prior weights)."""
        w = self.design.weights
        diag = np.full(self.nobs, self.sigma**2) if w is None else self.sigma**2 / w
        return sp.dia_array((diag, [0]), shape=(self.nobs,) * 2)

    def V_solve(self, B) -> np.ndarray:
        """V⁻¹B without forming V, through the PLS factor:
        V⁻¹ = σ⁻²(I − ZΛ(ΛᵀZᵀZΛ + I)⁻¹ΛᵀZᵀ). B: n-vector or n x m."""
        from . import matrices as mx

        return mx.v_solve(self, B)

    def V_matvec(self, B) -> np.ndarray:
        """VB without forming V. B: n-vector or n x m."""
        from . import matrices as mx

        return mx.v_matvec(self, B)

    def V_logdet(self) -> float:
        """log det V = n log σ² + log det(ΛᵀZᵀZΛ + I) − log det W."""
        return float(self.model._ws.v_logdet(self.theta, self.sigma)) - self.model._log_det_w

    # -- printing --------------------------------------------------------------
    def summary(self, ddf: str | None = None) -> str:
        """lme4's ``summary(fit)`` layout; with ``ddf="satterthwaite"`` or
        ``"kenward-roger"`` the fixed-effects table gets df and p columns
        (lmerTest's layout)."""
        d = self.design
        lines = []
        crit = "REML " if self.reml else "maximum likelihood  "
        lines.append(f"Linear mixed model fit by {crit}['lmerMod']")
        lines.append(f"Formula: {self.formula}")
        if self.model.data_name:
            lines.append(f"   Data: {self.model.data_name}")
        lines.append("")
        if self.reml:
            crit_value = format_r([round(self.objective, 1)], 7)[0]
            lines.append(f"REML criterion at convergence: {crit_value}")
        else:
            vals = [f"{v:.1f}" for v in (self.aic, self.bic, self.loglik, self.objective)]
            lines.append(
                named_vector(
                    ["AIC", "BIC", "logLik", "deviance", "df.resid"],
                    [*vals, str(self.df_residual)],
                )
            )
        lines.append("")
        # scaled residuals: zapsmall(quantile, digits + 1) then print(digits)
        sr = self.resid("scaled").to_numpy()
        qs = np.quantile(sr, [0, 0.25, 0.5, 0.75, 1.0])
        mx = np.max(np.abs(qs))
        if mx > 0:
            qs = np.round(qs, max(0, 5 - math.ceil(math.log10(mx))))
        lines.append("Scaled residuals: ")
        lines.append(named_vector(["Min", "1Q", "Median", "3Q", "Max"], qs))
        lines.append("")
        lines.append("Random effects:")
        lines.append(self._format_varcorr())
        groups = "; ".join(f"{g}, {n}" for g, n in self.ngrps.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        if d.n_dropped:
            lines.append(f"({d.n_dropped} observations deleted due to missingness)")
        lines.append("")
        p = len(self.beta)
        if p:
            se = np.sqrt(np.diag(self.vcov.to_numpy()))
            # R's printCoefmat: round estimates and SEs together, t values to 3 decimals
            acs = np.abs(np.concatenate([self.beta, se]))
            acs = acs[np.isfinite(acs) & (acs != 0)]
            dig = 4 - (1 + math.floor(math.log10(acs.min()))) if len(acs) else 4
            est_se = format_r(np.round(np.concatenate([self.beta, se]), max(1, dig)), 4)
            tv = format_r(np.round(self.beta / se, 3), 4)
            rows = [[est_se[i], est_se[p + i], tv[i]] for i in range(p)]
            header = ["Estimate", "Std. Error", "t value"]
            if ddf is not None:
                ct = self.coef_table(ddf)
                dfs = format_r(np.round(ct.df.to_numpy(), 3), 4)
                pv = [_format_pvalue(v) for v in ct.p.to_numpy()]
                rows = [[r[0], r[1], dfs[i], r[2], pv[i]] for i, r in enumerate(rows)]
                header = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
            lines.append("Fixed effects:")
            lines.append(table(header, rows, list(d.x_names)))
            if 1 < p <= 12:
                lines.append("")
                lines.append("Correlation of Fixed Effects:")
                v = self.vcov.to_numpy()
                corr = v / np.outer(se, se)
                names = list(d.x_names)
                cols = [abbreviate(nm, 6) for nm in names[:-1]]
                body = []
                for i in range(1, p):
                    body.append([f"{corr[i, j]:.3f}" if j < i else "" for j in range(p - 1)])
                lines.append(table(cols, body, names[1:], right=False))
        if self.is_singular:
            lines.append("boundary (singular) fit: see help('isSingular')")
        return "\n".join(lines) + "\n"

    def _format_varcorr(self) -> str:
        vc = self.covariances
        kmax = max(len(c) for c in vc.values())
        var_all, sd_all = [], []
        for c in vc.values():
            dv = np.diag(c.to_numpy())
            var_all.extend(dv)
            sd_all.extend(np.sqrt(dv))
        var_all.append(self.sigma**2)
        sd_all.append(self.sigma)
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

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        crit = "REML" if self.reml else "ML"
        return (
            f"<LinearMixedModelResult {self.formula!r} ({crit}): "
            f"objective={self.objective:.4f}, nobs={self.nobs}>"
        )
