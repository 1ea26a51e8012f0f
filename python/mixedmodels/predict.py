"""Prediction and simulation from a fitted model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._columns import value_labels as _value_labels
from .exceptions import DataError, FormulaError
from .formula import parse_formula

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["predict", "simulate"]


def _selected_terms(fit: LinearMixedModelResult, re_form: str | None) -> list[int]:
    """Indices of the fitted random-effects terms that re_form keeps."""
    terms = fit.design.terms
    if re_form is None:
        return list(range(len(terms)))
    text = re_form.strip()
    if text in ("NA", "~0", "~ 0", "0", "~-1", "~ -1"):
        return []
    if not text.startswith("~"):
        raise FormulaError(f"re_form must be None, '~0' or a formula such as '~(1|g)': {re_form!r}")
    wanted = parse_formula("y " + text).random
    keep = []
    for w in wanted:
        cols = _expr_columns(w.expr)
        matches = [
            i
            for i, t in enumerate(terms)
            if t.group == w.group and (cols is None or set(t.cnames) <= cols)
        ]
        if not matches:
            raise FormulaError(f"re_form term ({w.expr} | {w.group}) is not a term of the model")
        keep.extend(i for i in matches if i not in keep)
    return keep


def _expr_columns(expr: str) -> set[str] | None:
    """Column names of a plain random-effects expression (1, x, 0 + x, ...),
    or None when it is not plain."""
    import re

    pieces = [p.strip() for p in re.split(r"\s*([+-])\s*", " + " + expr.strip())]
    cols, intercept = set(), True
    for sgn, t in zip(pieces[1::2], pieces[2::2], strict=True):
        if t == "0" or (t == "1" and sgn == "-"):
            intercept = False
        elif t == "1":
            intercept = True
        elif sgn == "+" and re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`", t):
            cols.add(t.strip("`"))
        else:
            return None
    return cols | ({"(Intercept)"} if intercept else set())


def _group_labels(term, data: pd.DataFrame) -> np.ndarray:
    missing = [f for f in term.factors if f not in data.columns]
    if missing:
        raise DataError(f"new data lack the grouping variable(s) {', '.join(missing)}")
    labels = None
    for f in term.factors:
        lab = _value_labels(data[f]).astype(str)
        labels = lab if labels is None else np.char.add(np.char.add(labels, ":"), lab)
    return labels


def predict(
    fit: LinearMixedModelResult,
    newdata: pd.DataFrame | None,
    re_form: str | None,
    allow_new_levels: bool,
) -> np.ndarray:
    d = fit.design
    keep = _selected_terms(fit, re_form)
    if newdata is None:
        if re_form is None:
            return fit.fitted_values.copy()
        newdata_x, n = d.X, d.n
        offset = d.offset
        eta = newdata_x @ fit.beta
        zs = [(i, d.terms[i].z, d.terms[i].codes) for i in keep]
    else:
        if not isinstance(newdata, pd.DataFrame):
            raise DataError("newdata must be a pandas DataFrame")
        n = len(newdata)
        X = d.x_builder.build(newdata)
        eta = X @ fit.beta
        offset = None
        if d.offset_spec is not None:
            if d.offset_spec not in newdata.columns:
                raise DataError(f"new data lack the offset column {d.offset_spec!r}")
            offset = newdata[d.offset_spec].to_numpy(dtype=np.float64)
        zs = []
        for i in keep:
            t = d.terms[i]
            labels = _group_labels(t, newdata)
            index = {lab: c for c, lab in enumerate(t.levels)}
            codes = np.array([index.get(lab, -1) for lab in labels], dtype=np.int64)
            new = sorted(set(labels[codes < 0]))
            if new and not allow_new_levels:
                raise DataError(
                    f"new levels of {t.group!r} in the new data: {', '.join(new[:10])}"
                    f"{' ...' if len(new) > 10 else ''}; use allow_new_levels=True to "
                    "predict them at the population level"
                )
            zs.append((i, t.builder.build(newdata), codes))
    if offset is not None:
        eta = eta + offset
    offsets = np.concatenate([[0], np.cumsum([t.n_levels * t.k for t in d.terms])])
    for i, z, codes in zs:
        t = d.terms[i]
        b = fit.b[offsets[i] : offsets[i + 1]].reshape(t.n_levels, t.k)
        known = codes >= 0
        contrib = np.zeros(n)
        contrib[known] = np.einsum("ij,ij->i", z[known], b[codes[known]])
        eta = eta + contrib
    return eta


def simulate(fit: LinearMixedModelResult, nsim: int, seed) -> pd.DataFrame:
    from .matrices import lambdat, z_matrix

    if nsim < 1:
        raise ValueError("nsim must be at least 1")
    rng = np.random.default_rng(seed)
    d = fit.design
    lt, _ = lambdat(fit)
    z = z_matrix(fit)
    u = rng.standard_normal((lt.shape[0], nsim)) * fit.sigma
    zb = z @ (lt.T @ u)
    eps = rng.standard_normal((d.n, nsim)) * fit.sigma
    if d.weights is not None:
        eps = eps / np.sqrt(d.weights)[:, None]
    mu = d.X @ fit.beta
    if d.offset is not None:
        mu = mu + d.offset
    y = mu[:, None] + zb + eps
    return pd.DataFrame(y, index=d.row_index, columns=[f"sim_{i + 1}" for i in range(nsim)])
