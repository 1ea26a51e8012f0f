"""One fit, many threads: every method of one fit (and fit() of one model) may be
called from several threads at once; calls wait for each other and give the
serial answers (catalogue C01 to C04)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


FORMULA = "Reaction ~ Days + (Days | Subject)"


def _calls(fit: mm.LinearMixedModelResult, model: mm.LinearMixedModel, data: pd.DataFrame):
    """Named calls of one fit and its model, each returning an array."""
    b = np.linspace(-1.0, 1.0, 2 * fit.nobs).reshape(fit.nobs, 2)
    y2 = data["Reaction"].to_numpy() * 1.5 + 3.0
    return {
        "V_solve": lambda: fit.V_solve(b),
        "V_matvec": lambda: fit.V_matvec(b),
        "V_logdet": lambda: np.array([fit.V_logdet()]),
        "objective": lambda: np.array([model.objective([1.0, 0.0, 1.0])]),
        "gradient": lambda: model.gradient([0.9, 0.1, 0.2]),
        "L": lambda: fit.get_me("L").L.toarray(),
        "refit": lambda: fit.refit(y2).theta,
        "predict": lambda: fit.predict(data.iloc[::5]),
        "wald": lambda: fit.confint("wald").to_numpy(),
        "satterthwaite": lambda: fit.coef_table("satterthwaite").to_numpy(),
        "condvar": lambda: fit.ranef.condvar["Subject"],
        "fit_at": lambda: model.fit_at([0.5, 0.1, 0.3]).fixef.to_numpy(),
    }


def test_c02_one_fit_shared_by_threads_gives_the_serial_answers(sleep):
    model = mm.LinearMixedModel.from_formula(FORMULA, sleep)
    fit = model.fit()
    calls = _calls(fit, model, sleep)
    serial = {name: f() for name, f in calls.items()}
    names = list(calls) * 12
    rng = np.random.default_rng(1)
    rng.shuffle(names)
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda name: (name, calls[name]()), names))
    assert len(results) == len(names)
    for name, got in results:
        np.testing.assert_allclose(got, serial[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_c02_fit_of_one_model_from_several_threads(sleep):
    model = mm.LinearMixedModel.from_formula(FORMULA, sleep)
    serial = model.fit()
    with ThreadPoolExecutor(4) as ex:
        fits = list(ex.map(lambda _: model.fit(), range(8)))
    for f in fits:
        np.testing.assert_array_equal(f.theta, serial.theta)
        assert f.objective == serial.objective
        assert f.optsum.feval == serial.optsum.feval


def test_c02_bootstrap_while_another_thread_uses_the_fit(sleep):
    fit = mm.lmer(FORMULA, sleep)
    serial = fit.confint("boot", nsim=20, seed=3, n_jobs=2)
    b = np.ones((fit.nobs, 1))
    with ThreadPoolExecutor(2) as ex:
        boot = ex.submit(fit.confint, "boot", nsim=20, seed=3, n_jobs=2)
        solves = [ex.submit(fit.V_solve, b) for _ in range(50)]
        pd.testing.assert_frame_equal(boot.result(), serial)
        first = solves[0].result()
        for s in solves:
            np.testing.assert_array_equal(s.result(), first)


def test_c01_separate_fits_from_threads_equal_serial_fits():
    jobs = [
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("strength ~ 1 + (1 | batch/cask)", "pastes"),
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin"),
    ] * 2
    data = {name: mm.datasets.load(name) for _, name in jobs}
    serial = [mm.lmer(f, data[d]) for f, d in jobs]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda j: mm.lmer(j[0], data[j[1]]), jobs))
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a.theta, b.theta)
        np.testing.assert_array_equal(a.fixef.to_numpy(), b.fixef.to_numpy())
        np.testing.assert_array_equal(a.u, b.u)
        assert a.objective == b.objective
        assert a.optsum.feval == b.optsum.feval


def test_c03_the_same_fit_repeated_is_bit_identical(sleep):
    fits = [mm.lmer(FORMULA, sleep) for _ in range(3)]
    for f in fits[1:]:
        np.testing.assert_array_equal(f.theta, fits[0].theta)
        np.testing.assert_array_equal(f.b, fits[0].b)
        assert f.objective == fits[0].objective


def test_c04_bootstrap_with_one_or_four_jobs(sleep):
    fit = mm.lmer(FORMULA, sleep)
    one = fit.confint("boot", nsim=16, seed=3, n_jobs=1)
    four = fit.confint("boot", nsim=16, seed=3, n_jobs=4)
    pd.testing.assert_frame_equal(one, four)
