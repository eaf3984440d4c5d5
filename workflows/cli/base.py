"""What every ``msica`` command shares: the parser base, logging and the user-error guard.

Every subcommand (``participant``/``group``, ``simulate``, ``demo``, ``submit``,
``predict``, ``sites``) builds its parser from :class:`MsicaParser`, so usage
errors exit with the same code (64) and help texts look the same; each runs its
work through :func:`guarded`, so a user error is one line and an exit code, never
a traceback (``-v`` adds it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from pipeline.exceptions import InputDataError
from workflows.exit_codes import CannotWriteError, ExitCode, exit_code_for

__all__ = ["HelpFormatter", "MsicaParser", "both", "guarded", "setup_logging"]

LOGGER = logging.getLogger("msica.cli")

#: Defaults not worth printing in the help (nothing, an empty list, a switch that is off).
_SILENT_DEFAULTS = (None, False, (), [], argparse.SUPPRESS)


class HelpFormatter(argparse.HelpFormatter):
    """Help that adds ``(default: X)`` once, only when the help does not already say it.

    Examples
    --------
    >>> parser = MsicaParser(prog="x")
    >>> _ = parser.add_argument("--n", type=int, default=3, help="how many")
    >>> _ = parser.add_argument("--labels", nargs="+", default=[], help="labels (default: all)")
    >>> text = parser.format_help()
    >>> "how many (default: 3)" in text, text.count("default"), "[]" in text
    (True, 2, False)
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is d or action.default == d
                                    for d in _SILENT_DEFAULTS if d is not None) \
                or action.default is None:
            return text
        return f"{text} (default: %(default)s)".lstrip()


class MsicaParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with code 64 (EX_USAGE), not 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def both(name: str) -> tuple[str, str]:
    """The hyphen and underscore spellings of a long option (fMRIPrep convention).

    Examples
    --------
    >>> both("--participant-label")
    ('--participant-label', '--participant_label')
    """
    return name, "--" + name.removeprefix("--").replace("-", "_")


def setup_logging(verbose: int) -> None:
    """INFO by default, DEBUG with ``-v``; one line per record on stderr."""
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)


def guarded(func: Callable[[], int], *, verbose: int, prog: str = "msica") -> int:
    """Run ``func``; turn msica's user errors into one-line messages and exit codes.

    Input errors (:class:`~pipeline.exceptions.InputDataError`, missing files, bad
    values) and unwritable outputs print ``<prog>: error: <message>`` and return
    their exit code; with ``verbose`` the traceback is printed too. Anything else
    is a bug and propagates.
    """
    try:
        return int(func())
    except (InputDataError, FileNotFoundError, CannotWriteError, ValueError, TypeError) as exc:
        if verbose:
            traceback.print_exc()
        LOGGER.error("%s", exc)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return int(ExitCode.ERROR)
