"""The public API: results, printing, CLI, datasets, the optimizer record."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


def test_result_fields(fit):
    assert isinstance(fit.fixef, pd.Series)
    assert fit.vcov.shape == (2, 2)
    assert list(fit.varcorr.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert fit.nobs == 180 and fit.ngrps == {"Subject": 18}
    assert fit.fitted.shape == (180,) and fit.residuals.shape == (180,)
    assert fit.deviance == fit.objective
    assert not fit.is_singular
    assert fit.ranef["Subject"].shape == (18, 2)
    assert fit.ranef.condvar["Subject"].shape == (18, 2, 2)
    np.testing.assert_allclose(fit.residuals + fit.fitted, mm.datasets.load("sleepstudy").Reaction)


def test_result_is_frozen(fit):
    with pytest.raises(AttributeError):
        fit.sigma = 1.0


def test_optsum_records_the_run(fit):
    o = fit.optsum
    # lme4's start, then the method of moments' θ (on this balanced design the REML optimum)
    assert o.feval == len(o.fitlog) and o.feval >= 2
    np.testing.assert_array_equal(o.initial, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(o.fitlog[0][0], o.initial)
    assert o.fmin == fit.objective
    assert o.optimizer == "projected BFGS (core)" and o.converged  # the default, "auto"


def test_cobyqa_reaches_the_same_optimum():
    d = mm.datasets.load("sleepstudy")
    a = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    b = mm.lmer("Reaction ~ Days + (Days | Subject)", d, control=mm.Control(optimizer="cobyqa"))
    assert abs(a.objective - b.objective) < 1e-6 * a.objective


def test_summary_layout(fit):
    s = fit.summary()
    for line in [
        "Linear mixed model fit by REML ['lmerMod']",
        "Formula: Reaction ~ Days + (Days | Subject)",
        "REML criterion at convergence: 1743.6",
        "    Min      1Q  Median      3Q     Max ",
        "-3.9536 -0.4634  0.0231  0.4634  5.1793 ",
        " Groups   Name        Variance Std.Dev. Corr",
        "Number of obs: 180, groups:  Subject, 18",
        "(Intercept)  251.405      6.825  36.838",
        "Days          10.467      1.546   6.771",
        "Days -0.138",
    ]:
        assert line in s, (line, s)


def test_cli_prints_the_summary():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mixedmodels",
            "fit",
            "Reaction ~ Days + (Days | Subject)",
            "--data",
            "sleepstudy",
            "--ml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Linear mixed model fit by maximum likelihood" in out
    assert "1751.9" in out


def test_cli_reads_csv(tmp_path):
    p = tmp_path / "d.csv"
    mm.datasets.load("dyestuff").to_csv(p, index=False)
    out = subprocess.run(
        [sys.executable, "-m", "mixedmodels", "fit", "Yield ~ 1 + (1 | Batch)", "--data", str(p)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "REML criterion at convergence: 319.7" in out


def test_cli_bad_formula_is_a_clean_error():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mixedmodels",
            "fit",
            "Reaction ~ Dayz + (1 | Subject)",
            "--data",
            "sleepstudy",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "did you mean 'Days'" in r.stderr and "Traceback" not in r.stderr


def test_datasets_have_lme4_level_order():
    star = mm.datasets.load("star_k_sample")
    assert list(star.cltype.cat.categories) == ["small", "reg", "reg+A"]
    assert list(star.sx.cat.categories) == ["M", "F"]
    assert set(mm.datasets.names()) >= {
        "sleepstudy",
        "dyestuff",
        "dyestuff2",
        "penicillin",
        "pastes",
        "insteval",
        "three_level",
        "star_k_sample",
    }


def test_glmer_data_sets_as_lme4_and_mlmRev_ship_them():
    # sizes and factors as lme4 (cbpp, grouseticks, VerbAgg) and mlmRev (Contraception) give them
    cbpp = mm.datasets.load("cbpp")
    assert cbpp.shape == (56, 5) and len(cbpp.herd.cat.categories) == 15
    assert list(cbpp.period.cat.categories) == ["1", "2", "3", "4"]
    grouse = mm.datasets.load("grouseticks")
    assert len(grouse) == 403
    assert [len(grouse[c].cat.categories) for c in ("BROOD", "LOCATION", "YEAR")] == [118, 63, 3]
    verb = mm.datasets.load("verbagg")
    assert len(verb) == 7584 and (verb.id.nunique(), verb.item.nunique()) == (316, 24)
    assert list(verb.resp.cat.categories) == ["no", "perhaps", "yes"]
    contra = mm.datasets.load("contraception")
    assert len(contra) == 1934 and len(contra.district.cat.categories) == 60
    assert list(contra.livch.cat.categories) == ["0", "1", "2", "3+"]


def test_gil_is_released_for_threads():
    from concurrent.futures import ThreadPoolExecutor

    d = mm.datasets.load("sleepstudy")
    with ThreadPoolExecutor(2) as ex:
        fits = list(ex.map(lambda _: mm.lmer("Reaction ~ Days + (Days | Subject)", d), range(4)))
    assert len({round(f.objective, 8) for f in fits}) == 1
