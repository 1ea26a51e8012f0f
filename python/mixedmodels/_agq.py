"""Where adaptive Gauss-Hermite quadrature (nagq > 1) applies.

The Rust core (rust/core/glmm/agq.rs) integrates each level of a single
random-effects term with the tensor product of the one-dimensional rule:
nagq^k nodes per level for k random effects per level. lme4 takes a scalar
term only; like the glmm package, this takes up to `AGQ_MAX_EFFECTS` effects,
with at most `AGQ_MAX_NODES` nodes per level (the core checks the same limits).
"""

from __future__ import annotations

from .design import Design
from .exceptions import ArgumentError

__all__ = ["AGQ_MAX_EFFECTS", "AGQ_MAX_NODES", "check_quadrature"]

AGQ_MAX_EFFECTS = 3
"""The most random effects per level quadrature takes."""
AGQ_MAX_NODES = 15**3
"""The most quadrature nodes per level, nagq^k: nagq up to 25 for two effects, 15 for three."""


def check_quadrature(design: Design, nagq: int) -> None:
    """Raise `ArgumentError` unless quadrature with ``nagq`` nodes applies to the model.

    Parameters
    ----------
    design
        The model's arrays.
    nagq
        Nodes per dimension (above 1).
    """
    terms = design.terms
    what = f"nagq = {nagq} (adaptive Gauss-Hermite quadrature)"
    if len(terms) != 1:
        raise ArgumentError(
            f"{what} needs a single random-effects term (one grouping factor); this model "
            f"has {len(terms)} terms: use nagq=1 (the Laplace approximation)"
        )
    k = terms[0].k
    if k > AGQ_MAX_EFFECTS:
        raise ArgumentError(
            f"{what} takes at most {AGQ_MAX_EFFECTS} random effects per level; this model's "
            f"term has {k}: use nagq=1 (the Laplace approximation)"
        )
    if nagq**k > AGQ_MAX_NODES:
        largest = max(m for m in range(1, 26) if m**k <= AGQ_MAX_NODES)
        raise ArgumentError(
            f"{what} with {k} random effects per level makes {nagq}^{k} = {nagq**k} nodes per "
            f"level; at most {AGQ_MAX_NODES} are allowed: use nagq <= {largest}"
        )
