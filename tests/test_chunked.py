"""Fits of data read in chunks (data larger than memory) equal the in-memory fits.

Every linear reference case, its rows shuffled and split into 1, 3 and 17 chunks: the
objective at lme4's fixed θ values equals the in-memory model's (the cross-products summed
chunk by chunk are the same blocks), and the fit reaches the same optimum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.exceptions import FormulaError, RowsNotKeptError
from tests.conftest import CASES, SLOW_CASES, load_case


def _chunks(data: pd.DataFrame, n: int, seed: int) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.iloc[idx] for idx in np.array_split(order, n)]


@pytest.mark.parametrize("name", [c for c in CASES if c not in SLOW_CASES])
@pytest.mark.parametrize("n_chunks", [1, 3, 17])
def test_reference_cases_from_chunks(cache, name, n_chunks):
    case = load_case(name)
    data = mm.datasets.load(Path(case["dataset"]).stem)
    whole = cache.model(name)
    model = mm.LinearMixedModel.from_formula(
        case["formula"], _chunks(data, n_chunks, n_chunks), reml=case["REML"]
    )
    assert model.nobs == whole.nobs and model.theta_names == whole.theta_names
    for point in case["fixed_theta"]:
        theta = np.atleast_1d(point["theta"])
        assert model.objective(theta) == pytest.approx(whole.objective(theta), rel=1e-10)
    fit, ref = model.fit(), cache.fit(name)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-8, atol=1e-8)
    assert fit.sigma == pytest.approx(ref.sigma, rel=1e-6)
    assert list(fit.fixef.index) == list(ref.fixef.index)
    assert fit.ngrps == ref.ngrps
    for g in ref.ngrps:
        pd.testing.assert_frame_equal(fit.ranef[g], ref.ranef[g], rtol=1e-4, atol=1e-5 * ref.sigma)


def test_parquet_files_with_factors_weights_offsets_and_missing_values(tmp_path):
    rng = np.random.default_rng(5)
    d = mm.datasets.load("sleepstudy").assign(
        dose=lambda x: pd.Categorical(rng.choice(["lo", "mid", "hi"], len(x)), ["lo", "mid", "hi"]),
        site=lambda x: rng.choice(["b", "a", "c"], len(x)),
        w=rng.uniform(0.5, 2.0, 180),
        o=rng.normal(size=180),
    )
    d.loc[[3, 50, 77], "Days"] = np.nan
    f = "Reaction ~ Days + dose + site + (Days | Subject)"
    ref = mm.lmer(f, d, weights="w", offset="o")
    for i, part in enumerate(_chunks(d, 4, 1)):
        part.to_parquet(tmp_path / f"part{i}.parquet", index=False)
    fit = mm.lmer(f, str(tmp_path / "part*.parquet"), weights="w", offset="o")
    assert fit.nobs == ref.nobs == 177 and fit.n_dropped == 3
    assert list(fit.fixef.index) == list(ref.fixef.index)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-8, atol=1e-8)
    new = d.dropna().iloc[:5]
    np.testing.assert_allclose(
        fit.predict(new, re_form="~0"), ref.predict(new, re_form="~0"), rtol=1e-7
    )


def test_what_needs_the_rows_says_so():
    d = mm.datasets.load("sleepstudy")
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", _chunks(d, 3, 0))
    for what in (lambda: fit.fitted, lambda: fit.resid(), lambda: fit.predict()):
        with pytest.raises(RowsNotKeptError, match="rows"):
            what()
    with pytest.raises(RowsNotKeptError, match="rows"):
        fit.V_solve(np.ones((180, 1)))
    assert "not kept" in str(fit)
    fit.confint("wald")  # reads the cross-products only


def test_a_one_shot_iterator_is_read_once_and_its_spool_removed(tmp_path, monkeypatch):
    d = mm.datasets.load("sleepstudy").assign(dose=lambda x: pd.Categorical(x.Days % 3))
    f = "Reaction ~ Days + dose + (Days | Subject)"
    reads = []

    def tables():  # a generator: it can be iterated once only
        for part in _chunks(d, 5, 3):
            reads.append(len(part))
            yield part.assign(unused=1.0)

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    fit = mm.lmer(f, tables())
    ref = mm.lmer(f, d)
    assert sum(reads) == 180 and len(reads) == 5  # one pass over the iterator
    assert fit.nobs == 180 and list(fit.fixef.index) == list(ref.fixef.index)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-8, atol=1e-8)
    del fit
    import gc

    gc.collect()
    assert list(tmp_path.iterdir()) == []  # the spooled chunks are gone


def test_progress_of_each_pass_on_stderr(tmp_path, capsys):
    d = mm.datasets.load("sleepstudy")
    for i, part in enumerate(_chunks(d, 3, 0)):
        part.to_parquet(tmp_path / f"part{i}.parquet", index=False)
    mm.lmer("Reaction ~ Days + (1 | Subject)", str(tmp_path), progress=True)
    err = capsys.readouterr().err
    assert "levels (pass 1 of 2)" in err and "cross-products (pass 2 of 2)" in err
    assert "180" in err  # the rows read, of the 180 the files' metadata announce
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", str(tmp_path), progress=False)
    both = mm.lmer("Reaction ~ Days + (1 | Subject)", [tmp_path, tmp_path / "part0.parquet"])
    assert (fit.nobs, both.nobs) == (180, 180 + len(_chunks(d, 3, 0)[0]))
    mm.lmer("Reaction ~ Days + (1 | Subject)", _chunks(d, 3, 0))  # stderr is no terminal
    assert capsys.readouterr().err == ""


def test_whole_data_transforms_are_refused():
    d = mm.datasets.load("sleepstudy")
    with pytest.raises(FormulaError, match="poly.*depends on the whole data"):
        mm.lmer("Reaction ~ poly(Days, 2) + (1 | Subject)", _chunks(d, 2, 0))
    with pytest.raises(FormulaError, match="poly.*depends on the whole data"):
        mm.lmer("Reaction ~ poly(Days, 2) + (1 | Subject)", iter(_chunks(d, 2, 0)))
    fit = mm.lmer("Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)", lambda: _chunks(d, 2, 0))
    ref = mm.lmer("Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)", d)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)


def _same_fit(fit, ref) -> None:
    """The fit from chunks is the in-memory fit (the issue's tolerances)."""
    assert fit.nobs == ref.nobs and fit.ngrps == ref.ngrps
    assert list(fit.fixef.index) == list(ref.fixef.index)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-8, atol=1e-8)


FAST_CASES = [c for c in CASES if c not in SLOW_CASES]


@pytest.mark.parametrize("name", FAST_CASES)
def test_reference_cases_from_a_parquet_file(cache, tmp_path, name):
    case = load_case(name)
    data = mm.datasets.load(Path(case["dataset"]).stem)
    path = tmp_path / "data.parquet"
    _chunks(data, 1, 7)[0].to_parquet(path, index=False, row_group_size=max(1, len(data) // 5))
    fit = mm.lmer(case["formula"], str(path), reml=case["REML"])
    _same_fit(fit, cache.fit(name))


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.mark.parametrize("name", FAST_CASES)
def test_reference_cases_from_a_dask_dataframe_of_four_partitions(cache, dask_client, name):
    import dask.dataframe as dd

    case = load_case(name)
    data = mm.datasets.load(Path(case["dataset"]).stem)
    ddf = dd.from_pandas(_chunks(data, 1, 11)[0], npartitions=4)
    assert ddf.npartitions == 4
    fit = mm.lmer(case["formula"], ddf, reml=case["REML"])
    _same_fit(fit, cache.fit(name))
