"""The example scripts run and print what the note prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def test_extracting_the_v_matrix_replays_the_note():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "extracting_the_v_matrix.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # GLS from V equals fixef, in each of the three sections
    fe = re.findall(r"getFE\(X, V, y\): \[([^\]]+)\]\nfixef\(m\d\):\s+\[([^\]]+)\]", out)
    assert len(fe) == 3
    for gls, fixef in fe:
        np.testing.assert_allclose(
            np.array(gls.split(), float), np.array(fixef.split(), float), rtol=1e-5
        )
    # the note's numbers (lme4's)
    assert "251.405" in out and "10.467" in out
    assert "0.37589" in out  # three-level intercept
    assert "438.908" in out or "438.909" in out
    assert "V: (180, 180)" in out and "Gm: (40, 40)" in out
    assert "V per school (independent blocks): 10" in out
