"""Checks made before any participant work starts, so that bad input fails in seconds.

Everything that can be known from file headers and tables is checked here:
writable output and work directories, templates (4-D, readable) and their
labels (one row per network, or GIFT's domain file), and for each run the
confounds table its strategy needs (and the columns in it) and the grid of its
mask against the templates. Each check raises with a one-line message that names the file and
the fix; the command line turns it into an exit code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from pipeline.exceptions import InputDataError
from pipeline.templates import read_template_labels
from workflows.exit_codes import check_writable_dir

__all__ = ["TemplateInfo", "check_device", "check_directories", "check_participants_table",
           "check_run", "check_templates"]


class TemplateInfo:
    """Header facts of one template: its path, grid and number of networks."""

    def __init__(self, path: Path, shape: tuple[int, ...], affine: np.ndarray) -> None:
        self.path = path
        self.shape = shape
        self.affine = affine

    @property
    def n_networks(self) -> int:
        """Number of volumes (networks)."""
        return int(self.shape[3])

    def same_grid(self, img: nib.spatialimages.SpatialImage) -> bool:
        """Whether ``img`` (a mask) is on this template's voxel grid."""
        return tuple(img.shape[:3]) == tuple(self.shape[:3]) and np.allclose(
            img.affine, self.affine, atol=1e-3)


def check_directories(output_dir: str | os.PathLike, work_dir: str | os.PathLike) -> None:
    """Create the output and work directories and check that msica can write in them.

    Raises
    ------
    workflows.exit_codes.CannotWriteError
        Naming the directory and the fix (exit code 73).
    """
    check_writable_dir(output_dir, "output directory", "OUTPUT_DIR")
    check_writable_dir(work_dir, "work directory", "-w/--work-dir")


def check_device(device: str) -> None:
    """``--device`` names a device torch can use here (``cuda`` needs a GPU).

    The same rule as every torch step (:func:`pipeline._validation.resolve_device`),
    checked before any work. ``auto`` and ``cpu`` always resolve, so torch is only
    imported here for ``cuda``.

    Raises
    ------
    ValueError
        One line naming the option and the fix (exit code 64).
    """
    from pipeline._validation import resolve_device

    if device in ("auto", "cpu"):
        return
    try:
        resolve_device(device)
    except ValueError as exc:
        raise ValueError(f"--device {device} cannot be used on this machine ({exc}); use "
                         "--device auto (CUDA when present, else CPU) or --device cpu.") from exc


def check_templates(templates: Sequence[str | os.PathLike],
                    labels: Sequence[str | os.PathLike | None]) -> list[TemplateInfo]:
    """Read each template's header and its labels file; return their grids.

    Parameters
    ----------
    templates : sequence of path-like
        4-D template NIfTIs (one per scale).
    labels : sequence of path-like or None
        The labels file of each template, or None.

    Returns
    -------
    list of TemplateInfo

    Raises
    ------
    InputDataError
        If a template is unreadable or not 4-D, or its labels do not fit it.
    """
    infos = []
    for template, label_file in zip(templates, labels, strict=True):
        path = Path(template)
        try:
            img = nib.load(path)
        except Exception as exc:  # nibabel raises many types for bad files
            raise InputDataError(f"--template {path} is not a readable NIfTI ({exc}); give a "
                                 "4-D NIfTI with one volume per network.") from exc
        if img.ndim != 4:
            raise InputDataError(f"--template {path} is {img.ndim}-D with shape {img.shape}; a "
                                 "template must be 4-D (one volume per network).")
        read_template_labels(label_file, img.shape[3])
        infos.append(TemplateInfo(path, tuple(img.shape), img.affine))
    return infos


def _check_confound_columns(path: Path, strategy: str) -> None:
    """The columns ``strategy`` needs, from the table's header (and its JSON sidecar)."""
    from pipeline.confounds import check_strategy_columns, expand_confounds, read_sidecar

    try:
        header = pd.read_csv(path, sep="\t", nrows=2, na_values="n/a")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputDataError(f"{path} is not a readable TSV ({exc}); fix or regenerate it.") from exc
    table, _ = expand_confounds(header)
    check_strategy_columns(table, strategy, read_sidecar(path), str(path))


def check_run(run: Mapping[str, Any], *, strategy: str, templates: Sequence[TemplateInfo],
              resample_template: bool) -> None:
    """Check one run's inputs against the options before it is processed.

    Parameters
    ----------
    run : mapping
        From :func:`workflows.bids.collect_runs` (``bold``, ``mask``, ``confounds``).
    strategy : str
        ``--denoise-strategy``.
    templates : sequence of TemplateInfo
        From :func:`check_templates`.
    resample_template : bool
        ``--resample-template``: templates on another grid are resampled.

    Raises
    ------
    FileNotFoundError
        If the strategy needs a confounds table and the run has none.
    InputDataError
        If the confounds table lacks columns of the strategy, or a template is not on
        the run's grid and may not be resampled.
    """
    bold_name = Path(run["bold"]).name
    if strategy != "none" and run.get("confounds") is None:
        raise FileNotFoundError(
            f"No confounds table for BOLD {bold_name}, which --denoise-strategy {strategy} "
            "needs (fMRIPrep's <prefix>_desc-confounds_timeseries.tsv). For data cleaned "
            "elsewhere (e.g. SPM) use --denoise-strategy none; otherwise name the table with "
            "--bids-filter-file."
        )
    if strategy != "none":
        _check_confound_columns(Path(run["confounds"]), strategy)
    if resample_template or not templates:
        return
    mask = nib.load(run["mask"])
    for template in templates:
        if not template.same_grid(mask):
            raise InputDataError(
                f"--template {template.path.name} (grid {template.shape[:3]}) is not on the grid "
                f"of {Path(run['mask']).name} ({mask.shape[:3]}); pass --resample-template or "
                "resample the template to the data grid."
            )


def check_participants_table(path: str | os.PathLike, *, targets: Sequence[str],
                             site_column: str | None) -> None:
    """The group level's participants.tsv has every column ``--targets`` and ``--site-column`` name.

    Nothing is required without targets. Raises before any group work, with a one-line
    message naming the file, the missing columns and the fix.

    Raises
    ------
    FileNotFoundError
        If targets are given and the table does not exist.
    InputDataError
        If a column is missing, or the table has no participant_id column or repeats one
        (see :func:`workflows.bids.participants.read_participants`).
    """
    from pipeline.classify.targets import check_participants_columns
    from workflows.bids.participants import read_participants

    if not targets:
        return
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--targets {' '.join(targets)} needs {path} (participant_id and "
                                "the target columns); add it to the BIDS dataset.")
    check_participants_columns(read_participants(path), targets=targets, site_column=site_column,
                               source=str(path))
