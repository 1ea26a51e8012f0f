"""β's covariance of the GLMM cases at lme4's optimum (tests/reference/glmm/vcov, made by
scripts/make_glmm_vcov_reference.R): independent of our optimizer.

lme4's default ``vcov`` is 2H⁻¹ from a finite-difference Hessian of its deviance function run
with its default PIRLS tolerance; on cbpp that Hessian is 1% off the Hessian of the Laplace
objective itself (lme4's own ``deriv12`` with tolPwrss = 1e-13), which ours reproduces. The
RX-based covariance is lme4's ``use.hessian = FALSE``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixedmodels.glmm import finite_difference_hessian
from mixedmodels.glmm_results import vcov_from_hessian
from tests.reference.test_lme4_glmm import CASES, model

HERE = Path(__file__).resolve().parent / "glmm" / "vcov"
VCOV_CASES = [c for c in CASES if (HERE / f"{c}.json").exists()]


def test_the_vcov_cases_are_there():
    assert len(VCOV_CASES) == 5


def vcov_case(name: str) -> dict:
    return json.loads((HERE / f"{name}.json").read_text())


@pytest.mark.parametrize("name", VCOV_CASES)
def test_rx_covariance_is_lme4s_use_hessian_false(name):
    ref = vcov_case(name)
    theta = np.atleast_1d(ref["theta"])
    m = model(name)
    m.objective(theta, ref["beta"])
    rx = m.state.state()["rx"]
    rinv = np.linalg.inv(rx)
    se = np.sqrt(np.diag(rinv @ rinv.T))
    np.testing.assert_allclose(se, np.sqrt(np.diag(ref["vcov_rx"])), rtol=1e-4)


@pytest.mark.parametrize("name", VCOV_CASES)
def test_hessian_is_lme4s_with_converged_pirls(name):
    ref = vcov_case(name)
    theta = np.atleast_1d(ref["theta"])
    nt = len(theta)
    m = model(name)
    x = np.concatenate([theta, ref["beta"]])
    h = finite_difference_hessian(lambda v: m.objective(v[:nt], v[nt:]), x)
    want = np.asarray(ref["hessian_tight"])
    assert np.max(np.abs(h - want)) <= 1e-4 * np.max(np.abs(want))
    se = np.sqrt(np.diag(vcov_from_hessian(h, nt)))
    np.testing.assert_allclose(se, np.sqrt(np.diag(vcov_from_hessian(want, nt))), rtol=2e-3)
