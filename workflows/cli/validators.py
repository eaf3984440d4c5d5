"""argparse type checkers for the msica command line (bound with ``functools.partial``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = [
    "cutoff_or_none",
    "drop_sub_prefix",
    "existing_dir",
    "existing_file",
    "expand_template_dirs",
    "json_file",
    "positive_float",
    "positive_int",
]


def existing_dir(value: str, *, parser: argparse.ArgumentParser) -> Path:
    """Return ``value`` as an absolute path, or stop with a usage error if it is not a directory."""
    path = Path(value).expanduser().absolute()
    if not path.is_dir():
        parser.error(f"directory {value} does not exist; check the path (and the container's -B binds).")
    return path


def existing_file(value: str, *, parser: argparse.ArgumentParser) -> Path:
    """Return ``value`` as an absolute path, or stop with a usage error if it is not a file."""
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        parser.error(f"file {value} does not exist; check the path (and the container's -B binds).")
    return path


def expand_template_dirs(
    templates: list[Path], labels: list[Path], *, parser: argparse.ArgumentParser
) -> tuple[list[Path], list[Path]]:
    """Replace a template folder (``group/`` of a data-driven run) by its files, coarse to fine.

    A folder contributes every ``scale-<N>_desc-<d>_components.nii.gz`` in it.
    When no ``--template-labels`` are given and every template came from a
    folder with a ``_labels.tsv`` beside each map, those labels are used.
    """
    from workflows.bids.derivatives import scale_templates

    pairs: list[tuple[Path, Path | None]] = []
    for template in templates:
        if not template.is_dir():
            pairs.append((template, None))
            continue
        found = scale_templates(template)
        if not found:
            parser.error(f"--template {template} is a folder without "
                         "scale-<N>_desc-<label>_components.nii.gz files; give the 4-D NIfTI "
                         "files or the group/ folder of a data-driven run.")
        pairs += found
    files = [maps for maps, _ in pairs]
    if not labels and all(lab is not None and lab.is_file() for _, lab in pairs):
        labels = [lab for _, lab in pairs]
    return files, labels


def json_file(value: str, *, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Load a JSON object file (``--bids-filter-file``), or stop with a usage error."""
    path = existing_file(value, parser=parser)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        parser.error(f"{value} is not valid JSON ({exc.msg} at line {exc.lineno}); fix the file.")
    if not isinstance(data, dict):
        parser.error(f"{value} must hold a JSON object such as {{\"bold\": {{\"session\": \"01\"}}}}.")
    return data


def drop_sub_prefix(value: str) -> str:
    """Accept ``sub-01`` or ``01`` and return ``01``.

    Examples
    --------
    >>> drop_sub_prefix("sub-01"), drop_sub_prefix("01")
    ('01', '01')
    """
    return value.removeprefix("sub-")


def positive_int(value: str) -> int:
    """Parse an integer >= 1."""
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from exc
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return number


def positive_float(value: str) -> float:
    """Parse a float > 0."""
    try:
        number = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from exc
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return number


def cutoff_or_none(value: str) -> float | None:
    """Parse a filter cut-off: a frequency > 0 in Hz, or ``none`` (no filter).

    Examples
    --------
    >>> cutoff_or_none("0.01"), cutoff_or_none("none")
    (0.01, None)
    """
    if value.strip().lower() in ("none", "off", "0"):
        return None
    return positive_float(value)
