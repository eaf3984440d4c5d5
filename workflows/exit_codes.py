"""BIDS-App exit codes and the mapping from msica's exceptions to them."""

from __future__ import annotations

import os
import tempfile
from enum import IntEnum
from pathlib import Path

from pipeline.exceptions import InputDataError

__all__ = ["BIDSValidationError", "CannotWriteError", "ExitCode", "check_writable_dir",
           "exit_code_for"]


class ExitCode(IntEnum):
    """Process exit codes (BIDS-App practice; 64-66 and 73 from BSD sysexits)."""

    OK = 0
    ERROR = 1
    VALIDATION = 16
    USAGE = 64
    DATA = 65
    NO_INPUT = 66
    CANT_CREATE = 73


class BIDSValidationError(ValueError):
    """The input dataset failed BIDS validation (exit code 16)."""


class CannotWriteError(OSError):
    """An output or work directory cannot be created or written (exit code 73)."""


def check_writable_dir(path: str | os.PathLike, what: str, option: str) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Parameters
    ----------
    path : path-like
        The directory.
    what : str
        What it is, for the message (e.g. ``"output directory"``).
    option : str
        The option or argument that sets it, for the fix (e.g. ``"OUTPUT_DIR"``).

    Returns
    -------
    Path

    Raises
    ------
    CannotWriteError
        If the directory cannot be created or a file cannot be written in it.

    Examples
    --------
    >>> import tempfile
    >>> check_writable_dir(tempfile.mkdtemp(), "work directory", "-w").is_dir()
    True
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".msica-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CannotWriteError(
            f"cannot write to the {what} {path} ({reason}); choose a writable {option} "
            "(in a container, bind it writable with -B/-v)."
        ) from exc
    return path


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map an exception raised by msica to its exit code.

    Examples
    --------
    >>> exit_code_for(FileNotFoundError("x")).value
    66
    >>> exit_code_for(CannotWriteError("x")).value
    73
    """
    if isinstance(exc, BIDSValidationError):
        return ExitCode.VALIDATION
    if isinstance(exc, CannotWriteError):
        return ExitCode.CANT_CREATE
    if isinstance(exc, InputDataError):
        return ExitCode.DATA
    if isinstance(exc, FileNotFoundError):
        return ExitCode.NO_INPUT
    if isinstance(exc, (ValueError, TypeError)):
        return ExitCode.USAGE
    return ExitCode.ERROR
