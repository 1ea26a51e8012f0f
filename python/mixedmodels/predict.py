"""Prediction and simulation from a fitted model."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._columns import value_labels
from ._tables import as_frame, plain_column
from .design import Design, TermDesign
from .exceptions import ArgumentError, DataError, FormulaError, RowsNotKeptError
from .formula import TermList, parse_formula
from .matrices import z_matrix

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = [
    "in_sample_linear_predictor",
    "new_linear_predictor",
    "predict",
    "selected_terms",
    "simulate",
]


def selected_terms(design: Design, re_form: str | None) -> list[int]:
    """Return the indices of the design's random-effects terms that re_form keeps."""
    terms = design.terms
    if re_form is None:
        return list(range(len(terms)))
    text = re_form.strip()
    if text in ("NA", "~0", "~ 0", "0", "~-1", "~ -1"):
        return []
    if not text.startswith("~"):
        raise FormulaError(f"re_form must be None, '~0' or a formula such as '~(1|g)': {re_form!r}")
    keep: list[int] = []
    for w in parse_formula("y " + text).random:
        cols = _term_set(w.terms)
        matches = [
            i
            for i, t in enumerate(terms)
            if t.group == w.group and _term_set(t.builder.terms) <= cols
        ]
        if not matches:
            raise FormulaError(f"re_form term ({w.expr} | {w.group}) is not a term of the model")
        keep.extend(i for i in matches if i not in keep)
    return keep


def _term_set(tl: TermList) -> set[str]:
    """Return the term labels of a right-hand side, ``"1"`` standing for the intercept."""
    return set(tl.labels) | ({"1"} if tl.intercept else set())


def _group_labels(term: TermDesign, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's level label of the term's grouping factor, and which rows lack one."""
    missing = [f for f in term.factors if f not in data.columns]
    if missing:
        raise DataError(f"new data lack the grouping variable(s) {', '.join(missing)}")
    parts = [value_labels(plain_column(data[f])) for f in term.factors]
    absent = np.zeros(len(data), dtype=bool)
    for p in parts:
        absent |= np.array([v is None for v in p], dtype=bool)
    labels = parts[0].astype(str)
    for p in parts[1:]:
        labels = np.char.add(np.char.add(labels, ":"), p.astype(str))
    return labels, absent


def _new_codes(term: TermDesign, data: pd.DataFrame, allow_new_levels: bool) -> np.ndarray:
    """Level codes of new data's rows (-1 for levels the fit has not seen, or missing ones)."""
    labels, absent = _group_labels(term, data)
    if absent.any() and not allow_new_levels:
        raise DataError(
            f"the grouping variable(s) of {term.group!r} have missing values in the new data "
            f"(rows {', '.join(map(str, np.flatnonzero(absent)[:10]))}); use "
            "allow_new_levels=True to predict them at the population level, as lme4 does"
        )
    index = {lab: c for c, lab in enumerate(term.levels)}
    codes = np.array([index.get(lab, -1) for lab in labels], dtype=np.int64)
    codes[absent] = -1
    new = sorted(set(labels[(codes < 0) & ~absent]))
    if new and not allow_new_levels:
        raise DataError(
            f"new levels of {term.group!r} in the new data: {', '.join(new[:10])}"
            f"{' ...' if len(new) > 10 else ''}; use allow_new_levels=True to "
            "predict them at the population level"
        )
    return codes


def predict(
    fit: LinearMixedModelResult,
    newdata: object,
    re_form: str | None,
    allow_new_levels: bool,
) -> np.ndarray:
    """Return predictions for new data or the fitted rows (see `LinearMixedModelResult.predict`)."""
    d = fit.design
    keep = selected_terms(d, re_form)
    if newdata is None:
        if re_form is None:
            return fitted_rows(fit).copy()
        if not d.rows_kept:
            fitted_rows(fit)  # raises: the rows of a fit from chunks are not kept
        return in_sample_linear_predictor(d, fit.beta, fit.b, keep)
    return new_linear_predictor(d, fit.beta, fit.b, newdata, keep, allow_new_levels)


def in_sample_linear_predictor(
    d: Design, beta: np.ndarray, b: np.ndarray, keep: list[int]
) -> np.ndarray:
    """Return Xβ + offset + the kept terms' Zb on the fitted rows."""
    eta = d.X @ beta
    if d.offset is not None:
        eta = eta + d.offset
    zs = [(i, d.terms[i].z, d.terms[i].codes) for i in keep]
    return _add_random(d, b, eta, zs)


def new_linear_predictor(
    d: Design,
    beta: np.ndarray,
    b: np.ndarray,
    newdata: object,
    keep: list[int],
    allow_new_levels: bool,
) -> np.ndarray:
    """Return Xβ + offset + the kept terms' Zb for new data (new levels contribute 0)."""
    nd = as_frame(newdata, "newdata")
    if d.offset_values:
        warnings.warn(
            "the model's offset was given as values, which new data do not have: the "
            "predictions leave it out (as lme4's do); give the offset as a column name "
            "to have it read from newdata",
            UserWarning,
            stacklevel=4,
        )
    eta = d.x_builder.build(nd) @ beta
    if d.offset_spec is not None:
        if d.offset_spec not in nd.columns:
            raise DataError(f"new data lack the offset column {d.offset_spec!r}")
        off = plain_column(nd[d.offset_spec])
        eta = eta + off.to_numpy(dtype=np.float64, na_value=np.nan)
    in_formula = d.x_builder.offset(nd)
    if in_formula is not None:
        eta = eta + in_formula
    zs = []
    for i in keep:
        codes = _new_codes(d.terms[i], nd, allow_new_levels)
        zs.append((i, d.terms[i].builder.build(nd), codes))
    return _add_random(d, b, eta, zs)


def _add_random(
    d: Design, b: np.ndarray, eta: np.ndarray, zs: list[tuple[int, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Return η plus, for each (term, z, codes), the term's z b[codes] (codes < 0: 0)."""
    n = len(eta)
    offsets = np.concatenate([[0], np.cumsum([t.n_levels * t.k for t in d.terms])])
    for i, z, codes in zs:
        t = d.terms[i]
        bt = b[offsets[i] : offsets[i + 1]].reshape(t.n_levels, t.k)
        known = codes >= 0
        contrib = np.zeros(n)
        contrib[known] = np.einsum("ij,ij->i", z[known], bt[codes[known]])
        eta = eta + contrib
    return eta


def fitted_rows(fit: LinearMixedModelResult) -> np.ndarray:
    """Return the fitted values of the data rows, or raise when the rows were not kept."""
    if fit.fitted_values is None:
        raise RowsNotKeptError(
            "the fitted values need the data's rows, which a fit from chunks does not keep; "
            "predict(newdata) computes them for a chunk of the data"
        )
    return fit.fitted_values


def residuals(fit: LinearMixedModelResult, type: str) -> pd.Series:
    """Return residuals (see `LinearMixedModelResult.resid`)."""
    r = fit.design.y - fitted_rows(fit)
    if type == "response":
        vals = r
    elif type in ("pearson", "scaled"):
        vals = fit.state.pearson(r)
        if type == "scaled":
            vals = vals / fit.sigma
    else:
        raise ArgumentError(f"unknown residual type {type!r}: response, pearson or scaled")
    return pd.Series(vals, index=fit.design.row_index, name=f"{type} residuals")


def simulate(
    fit: LinearMixedModelResult, nsim: int, seed: int | np.random.Generator | None
) -> pd.DataFrame:
    """Simulate responses from the fit (see `LinearMixedModelResult.simulate`)."""
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer):
        raise ArgumentError(f"nsim must be a whole number of simulations, not {nsim!r}")
    if nsim < 1:
        raise ArgumentError("nsim must be at least 1")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ArgumentError(
            f"seed must be None, a non-negative integer or a numpy Generator, not {seed!r}"
        ) from None
    d = fit.design
    lt = d.layout.lambdat(fit.theta)
    z = z_matrix(d)
    u = rng.standard_normal((lt.shape[0], nsim)) * fit.sigma
    zb = z @ (lt.T @ u)
    eps = fit.state.residual_noise(rng.standard_normal((d.n, nsim)) * fit.sigma)
    mu = fit.state.add_offset(d.X @ fit.beta)
    y = mu[:, None] + zb + eps
    return pd.DataFrame(y, index=d.row_index, columns=[f"sim_{i + 1}" for i in range(nsim)])
