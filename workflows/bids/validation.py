"""Opt-in BIDS validation of the input dataset (``--validate``)."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

__all__ = ["validate_bids"]

_IGNORED_TOP = {"derivatives", "sourcedata", "code", "stimuli", "work"}


def validate_bids(bids_dir: Path, *, max_listed: int = 5) -> None:
    """Check every file name of a raw BIDS dataset against the specification.

    Uses the rules of the ``bids_validator`` package that pybids ships with
    (file names and locations; not the content checks of the Node.js validator).

    Parameters
    ----------
    bids_dir : Path
        Dataset root.
    max_listed : int
        How many offending files the message lists.

    Raises
    ------
    workflows.exit_codes.BIDSValidationError
        If ``dataset_description.json`` is missing or any file is not valid BIDS.
    """
    from bids_validator import BIDSValidator

    from workflows.exit_codes import BIDSValidationError

    bids_dir = Path(bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise BIDSValidationError(
            f"{bids_dir} has no dataset_description.json; point BIDS_DIR at the dataset root."
        )
    validator = BIDSValidator()
    ignore_file = bids_dir / ".bidsignore"
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")] if ignore_file.is_file() else []
    invalid = []
    for path in sorted(p for p in bids_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(bids_dir)
        if rel.parts[0] in _IGNORED_TOP or rel.name.startswith("."):
            continue
        if any(fnmatch(rel.as_posix(), pat.strip("/")) or fnmatch(rel.name, pat)
               for pat in patterns):
            continue
        if not validator.is_bids("/" + rel.as_posix()):
            invalid.append(rel.as_posix())
    if invalid:
        listed = ", ".join(invalid[:max_listed]) + (" ..." if len(invalid) > max_listed else "")
        raise BIDSValidationError(
            f"{len(invalid)} file(s) in {bids_dir} are not valid BIDS names ({listed}); rename them "
            "or list them in .bidsignore, or run without --validate."
        )
