"""Exceptions and warnings raised by msica.

The command line maps each exception type to a BIDS-App exit code
(see ``workflows.cli``): :class:`InputDataError` is bad data (65),
:class:`FileNotFoundError` is missing input (66), :class:`ValueError` and
:class:`TypeError` from user options are usage errors (64).
"""

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning

__all__ = ["ConvergenceWarning", "InputDataError"]


class InputDataError(ValueError):
    """Input data exist but cannot be used (wrong shape, NaNs, mismatched grids...).

    The message names the offending file and says how to fix it.
    """


class ConvergenceWarning(_SklearnConvergenceWarning):
    """An iterative solver stopped before meeting its tolerance.

    Subclasses scikit-learn's warning so that ``warnings.filterwarnings`` on
    either class catches it.
    """
