"""Extracting the V matrix for mixed models, in Python.

Replays the note that started this project (shared/notes/extracting-the-V-matrix.txt):
V = Z G Zᵀ + R for a fitted model, G expanded to every level, and the
fixed effects recovered from V by generalized least squares,

    β̂ = (XᵀV⁻¹X)⁻¹XᵀV⁻¹y,

for random slopes (sleepstudy), three-level nested data and random slopes
within nested groups on unsorted rows (the kindergarten sample). In R this
needs hand-built Kronecker products that break for the last two; here it is
one call each.

Run: python examples/extracting_the_v_matrix.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mixedmodels as mm

pd.set_option("display.width", 120)
np.set_printoptions(linewidth=120, precision=6, suppress=True)


def get_fe(fit: mm.LinearMixedModelResult, V) -> np.ndarray:
    """The note's getFE: GLS with the given V."""
    return np.asarray(mm.gls(fit.get_me("X"), fit.get_me("y"), V).beta)


def section(title: str) -> None:
    print(f"\n{'=' * 70}\n{title}\n{'=' * 70}")


# 1. sleepstudy: correlated random intercepts and slopes
section("1. sleepstudy: Reaction ~ Days + (Days | Subject)")
m1 = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
print(m1)
Z = m1.get_me("Z")
print("Z:", Z.shape)
print("G, the 2 x 2 covariance of (Intercept, Days):")
print(m1.covariances["Subject"])
Gm = m1.G()  # expanded to every subject, in Z's column order
print("Gm[:6, :6]:")
print(Gm[:6, :6].toarray())
V = m1.V()  # Z Gm Zᵀ + σ²I, 180 x 180 sparse
print("V:", V.shape, "stored entries:", V.nnz)
print("getFE(X, V, y):", get_fe(m1, V))
print("fixef(m1):     ", m1.fixef.to_numpy())

# 2. three-level nested data: teachers within schools
section("2. three-level data: y ~ x1 + (1 | sch.cl/tch.cl)")
m2 = mm.lmer("y ~ x1 + (1|sch.cl/tch.cl)", mm.datasets.load("three_level"))
print(m2)
print("Z:", m2.get_me("Z").shape)
for name, cov in m2.covariances.items():
    print(f"G block for {name}:", cov.to_numpy().ravel())
Gm = m2.G()
print("Gm:", Gm.shape, "(30 teachers, then 10 schools)")
V = m2.V()
print("getFE(X, V, y):", get_fe(m2, V))
print("fixef(m2):     ", m2.fixef.to_numpy())
print("V per school (independent blocks):", len(m2.V_blocks()))

# 3. random slopes within nested groups, unsorted rows
section("3. kindergarten sample: read ~ cltype + sx + (sx | sch/tch)")
m3 = mm.lmer("read ~ cltype + sx + (sx|sch/tch)", mm.datasets.load("star_k_sample"))
print(m3)
Vm = m3.V()
print("V:", Vm.shape, "stored entries:", Vm.nnz)
print("getFE(X, V, y):", get_fe(m3, Vm))
print("fixef(m3):     ", m3.fixef.to_numpy())
print("bdiag(VarCorr(m3)):")
blocks = [c.to_numpy() for c in m3.covariances.values()]
k = sum(b.shape[0] for b in blocks)
G = np.zeros((k, k))
o = 0
for b in blocks:
    G[o : o + b.shape[0], o : o + b.shape[0]] = b
    o += b.shape[0]
print(G)
print("Z:", m3.get_me("Z").shape, "-- labelled by fit.z_columns:")
print(m3.z_columns.head(4))
print("V per school:", len(m3.V_blocks()))
# without forming V at all
print("getFE with the implicit V:", get_fe(m3, m3))
