"""Confound tables for denoising: fMRIPrep's, or the six rigid-body parameters alone (SPM).

The regressors of a strategy are chosen by nilearn's fMRIPrep presets
(:func:`nilearn.interfaces.fmriprep.load_confounds_strategy`, same columns,
censoring and demeaning), applied to a table held in memory: nilearn offers the
presets only for a table found next to an image file, so this module reads the
table once, adds the expansions fMRIPrep would have written when only their base
columns are present (e.g. an SPM ``rp_*.txt`` converted to a TSV with the
columns ``trans_x/y/z`` and ``rot_x/y/z``), checks that the strategy's columns
are there (naming the missing ones and the strategies the table does support),
and then runs nilearn's own component loaders on it. A test checks the result
against ``load_confounds_strategy`` on complete fMRIPrep tables.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from nilearn.interfaces.fmriprep.load_confounds import _load_noise_component
from nilearn.interfaces.fmriprep.load_confounds_compcor import find_compcor
from nilearn.interfaces.fmriprep.load_confounds_strategy import preset_strategies
from nilearn.interfaces.fmriprep.load_confounds_utils import add_suffix, prepare_output

from pipeline.exceptions import InputDataError
from pipeline.image_checks import check_confounds

__all__ = [
    "PRESETS",
    "MOTION_PARAMETERS",
    "RunConfounds",
    "StrategyConfounds",
    "check_strategy_columns",
    "expand_confounds",
    "missing_columns",
    "read_sidecar",
    "run_confounds",
    "strategy_confounds",
]

#: Strategies whose regressors come from nilearn's fMRIPrep presets of the same name.
PRESETS = ("simple", "scrubbing", "compcor")

#: fMRIPrep's rigid-body parameters (mm and radians), as SPM's ``rp_*.txt`` holds them.
MOTION_PARAMETERS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")

#: Entities of a preprocessed BOLD name that its confounds table does not carry.
_IMAGE_ONLY_ENTITIES = ("space", "res", "den", "desc", "cohort")

#: Base columns whose expansions fMRIPrep writes (``*_derivative1``, ``*_power2``,
#: ``*_derivative1_power2``) and which are derived here when missing.
_EXPANDED_BASES = MOTION_PARAMETERS + ("csf", "white_matter", "global_signal")


class RunConfounds(NamedTuple):
    """What denoising one run uses from its confounds (output of :func:`run_confounds`).

    Attributes
    ----------
    regressors : pandas.DataFrame or None
        Columns to regress out, one row per volume (None: no regression).
    sample_mask : ndarray of int or None
        Volumes kept (None: all).
    table : pandas.DataFrame or None
        The table as read (framewise displacement for QC).
    derived : list of str
        Regressors computed from the table (:func:`expand_confounds`).
    """

    regressors: pd.DataFrame | None
    sample_mask: np.ndarray | None
    table: pd.DataFrame | None
    derived: list


class StrategyConfounds(NamedTuple):
    """Regressors of a strategy (output of :func:`strategy_confounds`).

    Attributes
    ----------
    regressors : pandas.DataFrame of shape (n_volumes, n_regressors)
        Demeaned regressors, one row per volume (NaN of the first row of
        derivatives replaced as nilearn does).
    sample_mask : ndarray of int or None
        Volumes kept (censoring and non-steady-state volumes), None for all.
    """

    regressors: pd.DataFrame
    sample_mask: np.ndarray | None


def expand_confounds(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Add fMRIPrep's expansions of the motion and tissue columns that lack them.

    For each base column present (``trans_x/y/z``, ``rot_x/y/z``, ``csf``,
    ``white_matter``, ``global_signal``) the missing ones of
    ``<base>_derivative1`` (backward difference, first row NaN),
    ``<base>_power2`` and ``<base>_derivative1_power2`` are computed as
    fMRIPrep computes them. Columns already in the table are never changed.

    Parameters
    ----------
    table : pandas.DataFrame
        A confounds table (one row per volume).

    Returns
    -------
    table : pandas.DataFrame
        A copy with the derived columns appended (the input itself when
        nothing was missing).
    derived : list of str
        Names of the columns added.

    Examples
    --------
    >>> t = pd.DataFrame({"trans_x": [0.0, 0.5, 0.25]})
    >>> out, derived = expand_confounds(t)
    >>> derived
    ['trans_x_derivative1', 'trans_x_power2', 'trans_x_derivative1_power2']
    >>> out["trans_x_derivative1"].tolist()[1:], out["trans_x_power2"].tolist()
    ([0.5, -0.25], [0.0, 0.25, 0.0625])
    """
    new: dict[str, np.ndarray] = {}
    for base in _EXPANDED_BASES:
        if base not in table.columns:
            continue
        values = pd.to_numeric(table[base], errors="coerce").to_numpy(dtype=np.float64)
        deriv = np.r_[np.nan, np.diff(values)]
        for name, series in ((f"{base}_derivative1", deriv), (f"{base}_power2", values**2),
                             (f"{base}_derivative1_power2", deriv**2)):
            if name not in table.columns:
                new[name] = series
    if not new:
        return table, []
    return pd.concat([table, pd.DataFrame(new, index=table.index)], axis=1), list(new)


def _preset(strategy: str, fd_threshold: float, std_dvars_threshold: float) -> dict:
    params = dict(preset_strategies[strategy])
    if "scrub" in params["strategy"]:
        params.update(fd_threshold=fd_threshold, std_dvars_threshold=std_dvars_threshold)
    return params


def _expanded(bases: tuple[str, ...], model: str) -> list[str]:
    """nilearn's column names for ``bases`` under ``model``, in a fixed order (bases first)."""
    names = add_suffix(list(bases), model)  # nilearn builds the suffixes from a set
    return sorted(names, key=lambda n: (n not in bases, n))


def missing_columns(table: pd.DataFrame, strategy: str, meta: dict | None) -> list[str]:
    """Columns (or sidecar entries) of ``table`` that ``strategy`` needs and lacks.

    Parameters
    ----------
    table : pandas.DataFrame
        The confounds table (after :func:`expand_confounds`).
    strategy : {"simple", "scrubbing", "compcor"}
    meta : dict or None
        The table's JSON sidecar (aCompCor metadata), if any.

    Returns
    -------
    list of str
        Empty when the strategy can be used.

    Examples
    --------
    >>> missing_columns(pd.DataFrame(columns=list(MOTION_PARAMETERS)), "simple", None)[-2:]
    ['csf', 'white_matter']
    """
    preset = preset_strategies[strategy]
    need: list[str] = []
    if "motion" in preset["strategy"]:
        need += _expanded(MOTION_PARAMETERS, preset["motion"])
    if "wm_csf" in preset["strategy"]:
        need += _expanded(("csf", "white_matter"), preset["wm_csf"])
    if "scrub" in preset["strategy"]:
        need += ["framewise_displacement", "std_dvars"]
    missing = [c for c in need if c not in table.columns]
    if "compcor" in preset["strategy"]:
        comps = find_compcor(meta, preset["compcor"], preset["n_compcor"]) if meta else []
        if not comps:
            missing.append("a_comp_cor_* (with Mask 'combined' in the JSON sidecar)")
        missing += [c for c in comps if c not in table.columns]
    return missing


def check_strategy_columns(table: pd.DataFrame, strategy: str, meta: dict | None,
                           source: str) -> None:
    """Raise when ``table`` lacks what ``strategy`` needs, naming it and what the table supports.

    Parameters
    ----------
    table : pandas.DataFrame
        The confounds table (its rows do not matter), after :func:`expand_confounds`.
    strategy : {"simple", "scrubbing", "compcor"}
    meta : dict or None
        The table's JSON sidecar.
    source : str
        Name of the table in the message (its path).

    Raises
    ------
    InputDataError
        Naming the missing columns and the strategies the table supports.

    Examples
    --------
    >>> rp, _ = expand_confounds(pd.DataFrame(np.zeros((3, 6)), columns=MOTION_PARAMETERS))
    >>> check_strategy_columns(rp, "compcor", None, "rp.tsv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.exceptions.InputDataError: rp.tsv lacks 1 column(s) that --denoise-strategy compcor needs: a_comp_cor_* ... It supports: none; ...
    """
    missing = missing_columns(table, strategy, meta)
    if missing:
        supported = [s for s in PRESETS if not missing_columns(table, s, meta)]
        raise InputDataError(
            f"{source} lacks {len(missing)} column(s) that --denoise-strategy {strategy} "
            f"needs: {', '.join(missing)}. It supports: "
            f"{', '.join(supported + ['none'])}; choose one of them or add the columns."
        )


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The JSON sidecar of a confounds TSV (``.json`` beside it), or None when absent."""
    sidecar = Path(str(path).removesuffix(".gz")).with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(
            f"{sidecar} is not valid JSON ({exc}); fix or delete it (it holds the CompCor "
            "metadata of the confounds table)."
        ) from exc


def strategy_confounds(
    table: pd.DataFrame,
    strategy: str,
    *,
    meta: dict | None = None,
    fd_threshold: float = 0.5,
    std_dvars_threshold: float = 1.5,
    source: str = "the confounds table",
) -> StrategyConfounds:
    """Regressors and censoring of one of nilearn's fMRIPrep presets, from a table.

    Parameters
    ----------
    table : pandas.DataFrame
        Confounds table (``n/a`` read as NaN), with its expansions
        (:func:`expand_confounds`).
    strategy : {"simple", "scrubbing", "compcor"}
        nilearn preset (see :func:`pipeline.denoise.denoise_bold`).
    meta : dict or None
        The table's JSON sidecar (needed by "compcor").
    fd_threshold, std_dvars_threshold : float
        Censoring thresholds of "scrubbing".
    source : str
        Name of the table in messages (its path).

    Returns
    -------
    StrategyConfounds

    Raises
    ------
    InputDataError
        If the table lacks columns the strategy needs: the message names
        them and the strategies the table supports.
    """
    check_strategy_columns(table, strategy, meta, source)
    params = _preset(strategy, fd_threshold, std_dvars_threshold)
    components, demean = params.pop("strategy"), params.pop("demean")
    lost = {"confounds": [], "keywords": []}
    selected, lost = _load_noise_component(table, "non_steady_state", lost, meta_json=meta,
                                           **params)
    for component in components:
        loaded, lost = _load_noise_component(table, component, lost, meta_json=meta, **params)
        selected = pd.concat([selected, loaded], axis=1)
    if lost["confounds"] or lost["keywords"]:  # missing_columns covers these; keep nilearn's word
        raise InputDataError(
            f"{source} cannot be used with --denoise-strategy {strategy}: nilearn reports "
            f"missing {lost['confounds'] + lost['keywords']}. Choose another strategy."
        )
    sample_mask, regressors = prepare_output(selected, demean)
    return StrategyConfounds(regressors, sample_mask)


def _find_confounds_file(bold_path: Path) -> Path | None:
    """fMRIPrep's confounds table for a preprocessed BOLD (same folder), if any."""
    stem = re.sub(r"\.nii(\.gz)?$", "", bold_path.name)
    parts = [p for p in stem.split("_")[:-1] if p.split("-")[0] not in _IMAGE_ONLY_ENTITIES]
    for suffix in ("timeseries", "regressors"):
        candidate = bold_path.parent / ("_".join(parts) + f"_desc-confounds_{suffix}.tsv")
        if candidate.is_file():
            return candidate
    return None


def _read_table(
    confounds: Any, n_volumes: int, bold_name: str, strategy: str
) -> tuple[pd.DataFrame | None, dict | None, str]:
    """The confounds table (checked: one row per volume), its JSON sidecar and its name."""
    if confounds is None:
        return None, None, "no confounds table"
    if isinstance(confounds, pd.DataFrame):
        return check_confounds(confounds, n_volumes, bold_name), None, "the confounds DataFrame"
    if not isinstance(confounds, (str, os.PathLike)):
        raise TypeError(
            "'confounds' must be a path, a pandas.DataFrame or None. "
            f"Got {type(confounds).__name__}."
        )
    path = Path(confounds)
    if re.search(r"\.nii(\.gz)?$", path.name):  # a preprocessed BOLD: its table lies beside it
        found = _find_confounds_file(path)
        if found is None:
            raise InputDataError(
                f"No fMRIPrep confounds table (*_desc-confounds_timeseries.tsv) lies next to "
                f"{path}, which --denoise-strategy {strategy} needs; pass the table, or use "
                "--denoise-strategy none."
            )
        path = found
    return check_confounds(path, n_volumes, bold_name), read_sidecar(path), str(path)


def run_confounds(
    confounds: Any,
    strategy: str,
    *,
    n_volumes: int,
    bold_name: str,
    fd_threshold: float,
    std_dvars_threshold: float,
    sample_mask: np.ndarray | None,
) -> RunConfounds:
    """Regressors, volumes kept, raw table (for QC) and derived columns of one run.

    Parameters
    ----------
    confounds : path-like, pandas.DataFrame or None
        See :func:`pipeline.denoise.denoise_bold`.
    strategy : {"simple", "scrubbing", "compcor", "custom", "none"}
    n_volumes : int
        Volumes of the run (the table must have one row per volume).
    bold_name : str
        The run, for messages.
    fd_threshold, std_dvars_threshold : float
        Censoring thresholds of "scrubbing".
    sample_mask : ndarray of int or None
        Volumes to keep ("custom" and "none" only).

    Returns
    -------
    RunConfounds

    Raises
    ------
    ValueError
        ``sample_mask`` with a preset, or "custom" with a path.
    TypeError
        If ``confounds`` is not a path, a DataFrame or None.
    InputDataError
        No table for a preset, missing columns, NaN in the regressors.
    """
    if strategy in PRESETS:
        if confounds is None:
            raise InputDataError(
                f"{bold_name} has no confounds table, which --denoise-strategy {strategy} "
                "needs; supply fMRIPrep's *_desc-confounds_timeseries.tsv, or use "
                "--denoise-strategy none."
            )
        if sample_mask is not None:
            raise ValueError(
                f"'sample_mask' is only used with strategy 'custom' or 'none'; with "
                f"{strategy!r} the censoring comes from the strategy. Drop sample_mask."
            )
    elif strategy == "custom" and not (confounds is None or isinstance(confounds, pd.DataFrame)):
        raise ValueError(
            "strategy 'custom' regresses the columns of a pandas.DataFrame as they are. "
            f"Got {type(confounds).__name__}; read the table with pandas and pass the columns "
            "to regress, or choose a preset strategy."
        )
    table, meta, source = _read_table(confounds, n_volumes, bold_name, strategy)
    if strategy == "none":
        return RunConfounds(None, sample_mask, table, [])
    if strategy == "custom":
        if table is not None and table.shape[1]:
            n_nan = int(table.isna().to_numpy().sum())
            if n_nan:
                raise InputDataError(
                    f"The confounds DataFrame for {bold_name} holds {n_nan} NaN values "
                    "(fMRIPrep writes n/a in the first row of derivative columns); fill them "
                    "(e.g. with 0) or drop those columns."
                )
            return RunConfounds(table, sample_mask, table, [])
        return RunConfounds(None, sample_mask, table, [])
    expanded, derived = expand_confounds(table)
    chosen = strategy_confounds(expanded, strategy, meta=meta, fd_threshold=fd_threshold,
                                std_dvars_threshold=std_dvars_threshold, source=source)
    bad = [c for c in chosen.regressors.columns if not np.isfinite(
        chosen.regressors[c].to_numpy(dtype=np.float64)).all()]
    if bad:
        raise InputDataError(
            f"{source} has NaN or infinite values in {', '.join(bad)} beyond the first row; "
            "fill or fix those columns (fMRIPrep writes n/a only in the first row of "
            "derivatives)."
        )
    used = [c for c in derived if c in chosen.regressors.columns]
    return RunConfounds(chosen.regressors, chosen.sample_mask, table, used)
