"""BIDS-App exit codes and the mapping from msica's exceptions to them."""

from __future__ import annotations

from enum import IntEnum

from pipeline.exceptions import InputDataError

__all__ = ["BIDSValidationError", "ExitCode", "exit_code_for"]


class ExitCode(IntEnum):
    """Process exit codes (BIDS-App practice; 64-66 from BSD sysexits)."""

    OK = 0
    ERROR = 1
    VALIDATION = 16
    USAGE = 64
    DATA = 65
    NO_INPUT = 66


class BIDSValidationError(ValueError):
    """The input dataset failed BIDS validation (exit code 16)."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map an exception raised by msica to its exit code.

    Examples
    --------
    >>> exit_code_for(FileNotFoundError("x")).value
    66
    """
    if isinstance(exc, BIDSValidationError):
        return ExitCode.VALIDATION
    if isinstance(exc, InputDataError):
        return ExitCode.DATA
    if isinstance(exc, FileNotFoundError):
        return ExitCode.NO_INPUT
    if isinstance(exc, (ValueError, TypeError)):
        return ExitCode.USAGE
    return ExitCode.ERROR
