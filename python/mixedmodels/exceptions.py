"""Exceptions raised by mixedmodels.

Every error of the Rust core maps to one of these classes (see
``rust/py/errors.rs``); the Python front raises them for bad formulas and data.
"""

from __future__ import annotations

__all__ = [
    "MixedModelsError",
    "FormulaError",
    "DataError",
    "DimensionError",
    "ThetaError",
    "ControlError",
    "ArgumentError",
    "UnknownNameError",
    "NotPositiveDefiniteError",
    "NumericalError",
    "MemoryBudgetError",
    "InternalError",
    "PirlsError",
    "ConvergenceWarning",
    "DataWarning",
    "PrecisionWarning",
    "RankDeficiencyWarning",
    "RowsNotKeptError",
]


class MixedModelsError(Exception):
    """Base class of every error raised by mixedmodels."""


class FormulaError(MixedModelsError, ValueError):
    """The model formula cannot be parsed or does not describe a mixed model."""


class DataError(MixedModelsError, ValueError):
    """The data do not fit the formula.

    A missing column, a non-numeric response, too many levels for the number
    of observations, no rows left.
    """


class DimensionError(MixedModelsError, ValueError):
    """Arrays passed to the core do not fit together."""


class ThetaError(MixedModelsError, ValueError):
    """θ has the wrong length or a non-finite element."""


class ControlError(MixedModelsError, ValueError):
    """An optimizer setting (`Control`) or a starting value is invalid."""


class ArgumentError(MixedModelsError, ValueError):
    """An argument has a value the method cannot take (a level outside (0, 1), ...)."""


class UnknownNameError(ArgumentError, KeyError):
    """A name (of a grouping factor, a parameter, ...) that the fit does not have."""

    def __str__(self) -> str:
        """Return the message as given (KeyError would quote it)."""
        return str(self.args[0]) if self.args else ""


class NumericalError(MixedModelsError, ArithmeticError):
    """A numerical failure in the core."""


class NotPositiveDefiniteError(NumericalError):
    """A matrix that must be positive definite is not.

    For example the fixed-effects cross-product of a rank-deficient model matrix.
    """


class MemoryBudgetError(MixedModelsError, MemoryError):
    """A requested object would exceed the memory budget."""


class RowsNotKeptError(MixedModelsError, RuntimeError):
    """The computation needs the data's rows, and the fit was made from chunks of them.

    A model fitted from data larger than memory keeps only the sums of its
    rows (the cross-products): fitted values, residuals and V on observation
    vectors need another pass over the data.
    """


class InternalError(MixedModelsError, RuntimeError):
    """A bug in mixedmodels (a panic in the Rust core). Please report it."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its convergence criteria."""


class RankDeficiencyWarning(UserWarning):
    """Columns of the fixed-effects model matrix were dropped.

    They are linear combinations of earlier ones (lme4 drops them too).
    """


class PrecisionWarning(UserWarning):
    """A result lost its digits to rounding, and is reported as NaN.

    For instance Kenward-Roger's adjusted variance on a near-exact fit,
    where it is a small difference of terms many orders of magnitude larger.
    """


class DataWarning(UserWarning):
    """Rows were dropped for a reason other than a missing value in the data.

    For instance a transform gave NaN (``log`` of a negative number), which R
    treats as missing too.
    """


class PirlsError(NumericalError):
    """PIRLS (the conditional modes of a generalized linear mixed model) failed.

    It diverged (no step lowers the penalized deviance), did not converge, or
    met a working weight that is not positive (a linear predictor so extreme
    that the mean is at the edge of its range).
    """
