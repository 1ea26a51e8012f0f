"""Type stubs for the Rust extension ``mixedmodels._core``."""

from typing import final

import numpy as np
import numpy.typing as npt

__version__: str

__all__ = ["Workspace", "__version__"]

@final
class Workspace:
    """The penalized least-squares workspace of one model.

    Built once per model from X (n x p), y (n) and, per random-effects term,
    (codes, z, n_levels): 0-based level codes (int64, n), the term's model
    matrix (n x k) and the number of levels.
    """

    def __new__(
        cls,
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.float64],
        terms: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]],
    ) -> Workspace: ...
    @property
    def n(self) -> int: ...
    @property
    def p(self) -> int: ...
    @property
    def q(self) -> int: ...
    @property
    def n_theta(self) -> int: ...
    @property
    def lower(self) -> npt.NDArray[np.float64]: ...
    @property
    def pls_nnz(self) -> int: ...
    @property
    def factor_nnz(self) -> int: ...
    @property
    def schur_chunks(self) -> int: ...
    def objective(self, theta: npt.NDArray[np.float64], reml: bool) -> float: ...
    def solve(self, theta: npt.NDArray[np.float64]) -> dict[str, object]: ...
    def cond_var(self, theta: npt.NDArray[np.float64]) -> list[npt.NDArray[np.float64]]: ...
    def v_nnz_bound(self) -> int: ...
    def v_csr(
        self, theta: npt.NDArray[np.float64], sigma: float, max_nnz: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...
    def v_solve(
        self, theta: npt.NDArray[np.float64], sigma: float, b: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]: ...
    def v_matvec(
        self, theta: npt.NDArray[np.float64], sigma: float, b: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]: ...
    def v_logdet(self, theta: npt.NDArray[np.float64], sigma: float) -> float: ...
    def v_components(self) -> npt.NDArray[np.uint32]: ...
    def factor_l(
        self, theta: npt.NDArray[np.float64]
    ) -> tuple[
        npt.NDArray[np.uint64],
        npt.NDArray[np.uint64],
        npt.NDArray[np.uint64],
        npt.NDArray[np.float64],
    ]: ...
