"""The type stubs of the Rust extension match it (mypy's stubtest)."""

from __future__ import annotations

import subprocess
import sys


def test_core_stubs_match_the_extension():
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "mixedmodels._core"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
