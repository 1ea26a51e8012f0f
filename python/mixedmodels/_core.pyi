"""Type stubs for the Rust extension ``mixedmodels._core``."""

from typing import final

import numpy as np
import numpy.typing as npt

__version__: str

__all__ = ["BlockSums", "GlmmWorkspace", "Workspace", "__version__"]

@final
class Workspace:
    """The penalized least-squares workspace of one model.

    Built once per model from X (n x p), y (n) and, per random-effects term,
    (codes, z, n_levels): 0-based level codes (int64, n), the term's model
    matrix (n x k) and the number of levels; optionally prior weights (n,
    positive) and an offset (n). All on the scale of the data: the core
    applies the weights and the offset.
    """

    def __new__(
        cls,
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.float64],
        terms: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]],
        weights: npt.NDArray[np.float64] | None = None,
        offset: npt.NDArray[np.float64] | None = None,
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
    def log_det_w(self) -> float: ...
    @property
    def pls_nnz(self) -> int: ...
    @property
    def factor_nnz(self) -> int: ...
    @property
    def schur_chunks(self) -> int: ...
    @property
    def class_work(self) -> int: ...
    def moment_start(self) -> npt.NDArray[np.float64] | None: ...
    def with_response(self, y: npt.NDArray[np.float64]) -> Workspace: ...
    def with_weights(self, weights: npt.NDArray[np.float64]) -> Workspace: ...
    def objective(self, theta: npt.NDArray[np.float64], reml: bool) -> float: ...
    def gradient(self, theta: npt.NDArray[np.float64], reml: bool) -> npt.NDArray[np.float64]: ...
    def minimize(
        self,
        theta: npt.NDArray[np.float64],
        reml: bool,
        ftol_abs: float,
        ftol_rel: float,
        xtol_abs: float,
        maxeval: int,
        initial_step: float,
        moments: bool,
    ) -> tuple[
        npt.NDArray[np.float64],
        float,
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        int,
        int,
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        str,
    ]: ...
    def components(self, theta: npt.NDArray[np.float64]) -> tuple[float, float, float]: ...
    def rx(self, theta: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
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

@final
class BlockSums:
    """The cross-product blocks of a chunk of a model's rows (no rows kept).

    Built with `Workspace`'s arguments, the level codes numbering the whole
    data's levels; merged with the sums of other chunks; the sums of all rows
    give the model's workspace (which raises `RowsNotKeptError` for what
    needs the rows; the sums move into it, leaving this object empty).
    Pickles through `to_state`/`from_state`.
    """

    def __new__(
        cls,
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.float64],
        terms: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]],
        weights: npt.NDArray[np.float64] | None = None,
        offset: npt.NDArray[np.float64] | None = None,
    ) -> BlockSums: ...
    @property
    def n(self) -> int: ...
    def merge(self, other: BlockSums) -> BlockSums: ...
    def into_workspace(self) -> Workspace: ...
    def to_state(self) -> tuple[object, ...]: ...
    @staticmethod
    def from_state(state: tuple[object, ...]) -> BlockSums: ...
    def __reduce__(self) -> tuple[object, ...]: ...

@final
class GlmmWorkspace:
    """A generalized linear mixed model's PIRLS workspace.

    Built from X (n x p), the response (binomial: proportions), the terms as
    for Workspace, the family and link (R's names), the linear predictor of
    the family's starting means, prior weights (binomial: numbers of trials)
    and an offset. ``laplace(theta, beta)`` runs PIRLS on u to convergence and
    returns (laplace, deviance, sqr_u, ld_l2, iterations, halvings);
    ``laplace_beta(theta)`` runs it on β and u together (nAGQ = 0).
    """

    def __new__(
        cls,
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.float64],
        terms: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]],
        family: str,
        link: str,
        eta_start: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64] | None = None,
        offset: npt.NDArray[np.float64] | None = None,
        shape: float | None = None,
    ) -> GlmmWorkspace: ...
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
    def tol(self) -> float: ...
    @tol.setter
    def tol(self, tol: float) -> None: ...
    def laplace(
        self, theta: npt.NDArray[np.float64], beta: npt.NDArray[np.float64]
    ) -> tuple[float, float, float, float, int, int]: ...
    def laplace_beta(
        self, theta: npt.NDArray[np.float64]
    ) -> tuple[float, float, float, float, int, int]: ...
    @property
    def has_gradient(self) -> bool: ...
    def laplace_grad(
        self, theta: npt.NDArray[np.float64], beta: npt.NDArray[np.float64]
    ) -> tuple[tuple[float, float, float, float, int, int], npt.NDArray[np.float64]]: ...
    def laplace_beta_grad(
        self, theta: npt.NDArray[np.float64]
    ) -> tuple[tuple[float, float, float, float, int, int], npt.NDArray[np.float64]]: ...
    def agq(
        self,
        theta: npt.NDArray[np.float64],
        beta: npt.NDArray[np.float64],
        nodes: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64],
    ) -> tuple[float, tuple[float, float, float, float, int, int]]: ...
    def set_shape(self, shape: float) -> None: ...
    def reset(self) -> None: ...
    def hessian(
        self,
        theta: npt.NDArray[np.float64],
        beta: npt.NDArray[np.float64],
        delta: float,
        forward: bool,
    ) -> tuple[npt.NDArray[np.float64], int, int] | None: ...
    def mode_jacobian(self) -> npt.NDArray[np.float64] | None: ...
    def modes(self) -> npt.NDArray[np.float64]: ...
    def set_modes(self, u: npt.NDArray[np.float64]) -> None: ...
    def state(self) -> dict[str, npt.NDArray[np.float64]]: ...
    def cond_var(self) -> list[npt.NDArray[np.float64]]: ...
