"""Denoising of preprocessed BOLD with nilearn's fMRIPrep confound strategies.

The confound regressors and the censoring (scrubbing) mask come from
:func:`nilearn.interfaces.fmriprep.load_confounds_strategy`; regression,
detrending and temporal filtering are done by :func:`nilearn.signal.clean`.
Nothing is filtered by hand here: this module decides *which* nilearn calls to
make, checks inputs and reports quality-control numbers.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import signal
from nilearn.interfaces.fmriprep import load_confounds_strategy
from nilearn.masking import apply_mask, unmask

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, check_type
from pipeline.exceptions import InputDataError
from pipeline.image_checks import check_confounds, check_same_grid, load_bold, load_mask

__all__ = ["STRATEGIES", "DenoiseResult", "denoise_bold", "qc_table", "temporal_snr"]

LOGGER = logging.getLogger("msica.pipeline")

#: Strategies accepted by :func:`denoise_bold` (nilearn's presets of the same name).
STRATEGIES = ("simple", "scrubbing", "compcor", "none")

#: Entities of a preprocessed BOLD name that its confounds table does not carry.
_IMAGE_ONLY_ENTITIES = ("space", "res", "den", "desc", "cohort")

#: Order of the columns of :func:`qc_table`.
_QC_COLUMNS = (
    "n_volumes",
    "n_volumes_kept",
    "mean_fd",
    "max_fd",
    "tsnr_before",
    "tsnr_after",
    "n_confounds",
    "strategy",
)


@dataclass
class DenoiseResult:
    """Output of :func:`denoise_bold`.

    Attributes
    ----------
    data : ndarray of shape (n_volumes_kept, n_voxels), float32
        Denoised in-mask signals (z-scored per voxel when ``standardize``).
    sample_mask : ndarray of shape (n_volumes_kept,), int
        Indices of the volumes kept (after scrubbing / dropping non-steady
        state volumes), into the original series.
    img : nibabel.Nifti1Image
        ``data`` put back on the grid: 4-D with ``n_volumes_kept`` volumes.
    qc : dict
        ``n_volumes``, ``n_volumes_kept``, ``mean_fd``, ``max_fd`` (mm; NaN
        when no framewise displacement is available), ``tsnr_before``,
        ``tsnr_after`` (median over the mask, see :func:`denoise_bold` Notes),
        ``n_confounds``, ``confounds`` (column names regressed out),
        ``strategy`` and the parameters used.
    confounds : pandas.DataFrame or None
        Regressors used, one row per original volume.
    """

    data: np.ndarray
    sample_mask: np.ndarray
    img: nib.Nifti1Image
    qc: dict[str, Any] = field(default_factory=dict)
    confounds: pd.DataFrame | None = None


def temporal_snr(signals: np.ndarray, mean: np.ndarray | None = None) -> float:
    """Median over voxels of temporal mean / temporal standard deviation.

    Parameters
    ----------
    signals : ndarray of shape (n_volumes, n_voxels)
        The standard deviation is taken over axis 0 with ``ddof=0``.
    mean : ndarray of shape (n_voxels,), optional
        Temporal mean to use instead of that of ``signals`` (for denoised data,
        whose mean has been removed, pass the mean of the raw signal).

    Returns
    -------
    float
        Median tSNR over voxels with non-zero standard deviation (NaN if none).

    Examples
    --------
    >>> x = np.array([[9.0, 1.0], [11.0, 3.0]])
    >>> float(temporal_snr(x))
    6.0
    """
    signals = np.asarray(signals, dtype=np.float64)
    mu = signals.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
    sd = signals.std(axis=0)
    ok = sd > 0
    if not ok.any():
        return float("nan")
    return float(np.median(mu[ok] / sd[ok]))


def _image_name(img: Any, default: str) -> str:
    if isinstance(img, (str, os.PathLike)):
        return str(img)
    filename = img.get_filename() if hasattr(img, "get_filename") else None
    return str(filename) if filename else default


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _find_confounds_file(bold_path: Path) -> Path | None:
    """fMRIPrep's confounds table for a preprocessed BOLD (same folder), if any."""
    stem = re.sub(r"\.nii(\.gz)?$", "", bold_path.name)
    parts = [p for p in stem.split("_")[:-1] if p.split("-")[0] not in _IMAGE_ONLY_ENTITIES]
    for suffix in ("timeseries", "regressors"):
        candidate = bold_path.parent / ("_".join(parts) + f"_desc-confounds_{suffix}.tsv")
        if candidate.is_file():
            return candidate
    return None


def _framewise_displacement(table: pd.DataFrame | None) -> tuple[float, float]:
    if table is None:
        return float("nan"), float("nan")
    for column in ("framewise_displacement", "FramewiseDisplacement"):
        if column in table.columns:
            fd = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
            fd = fd[np.isfinite(fd)]
            if fd.size:
                return float(fd.mean()), float(fd.max())
    return float("nan"), float("nan")


@fill_doc
def denoise_bold(
    bold_img: str | os.PathLike | nib.Nifti1Image,
    mask_img: str | os.PathLike | nib.Nifti1Image,
    confounds: str | os.PathLike | pd.DataFrame | None,
    *,
    strategy: str = "simple",
    t_r: float,
    high_pass: float | None = 0.01,
    low_pass: float | None = None,
    detrend: bool = True,
    standardize: bool = True,
    fd_threshold: float = 0.5,
    std_dvars_threshold: float = 1.5,
    sample_mask: np.ndarray | None = None,
    confounds_file: str | os.PathLike | None = None,
    min_volumes: int = 10,
    min_fraction_kept: float = 0.5,
) -> DenoiseResult:
    """Regress confounds, filter and censor a BOLD series inside a mask.

    Parameters
    ----------
    bold_img : path-like or nibabel image
        Preprocessed 4-D BOLD (fMRIPrep ``*_desc-preproc_bold.nii.gz``).
    %(mask_img)s
    confounds : path-like, pandas.DataFrame or None
        * path of the preprocessed BOLD (usually ``bold_img`` itself): the
          regressors and censoring mask of ``strategy`` are read by
          :func:`nilearn.interfaces.fmriprep.load_confounds_strategy` from the
          fMRIPrep confounds TSV/JSON next to it;
        * a DataFrame: its columns are regressed out as they are (no NaN
          allowed; ``strategy`` is recorded as ``"custom"``);
        * None: no regression (detrending and filtering only).
    strategy : {"simple", "scrubbing", "compcor"}, default="simple"
        nilearn preset: "simple" = 24 motion parameters + WM/CSF + cosines;
        "scrubbing" = "simple" with WM/CSF derivatives and censoring of
        high-motion volumes (``fd_threshold``, ``std_dvars_threshold``, and
        segments shorter than 5 volumes); "compcor" = 24 motion parameters +
        all anatomical CompCor components (combined mask) + cosines.
    %(t_r)s
    high_pass, low_pass : float or None, default=0.01 and None
        Butterworth cut-offs in Hz for :func:`nilearn.signal.clean`. The
        fMRIPrep cosine regressors of every strategy already high-pass at
        about 0.008 Hz; set ``high_pass=None`` to rely on them alone.
    detrend : bool, default=True
        Remove a linear trend (``nilearn.signal.clean``).
    standardize : bool, default=True
        Z-score each voxel after cleaning (ddof=1).
    fd_threshold, std_dvars_threshold : float, default=0.5 and 1.5
        Scrubbing thresholds (mm and standardized DVARS); "scrubbing" only.
    sample_mask : ndarray of int, optional
        Volumes to keep when ``confounds`` is a DataFrame or None (ignored,
        with an error, when confounds come from a path).
    confounds_file : path-like, optional
        The fMRIPrep confounds TSV, for framewise displacement in ``qc`` and the
        row-count check. Default: found next to a BOLD path.
    min_volumes : int, default=10
        Fewest volumes the run must have, and that must survive censoring.
    min_fraction_kept : float, default=0.5
        Smallest fraction of volumes that must survive censoring.

    Returns
    -------
    DenoiseResult

    Raises
    ------
    ValueError
        For an unknown ``strategy``, a non-positive ``t_r``, a TSV path given as
        ``confounds``, or ``sample_mask`` together with a confounds path.
    FileNotFoundError
        If an input file is missing.
    InputDataError
        For unusable inputs (see :mod:`pipeline.image_checks`), confounds that
        nilearn cannot use for ``strategy``, NaN in a confounds DataFrame, or
        too many censored volumes.

    Notes
    -----
    tSNR is the median over in-mask voxels of mean / standard deviation over
    time (ddof=0). ``tsnr_before`` uses the raw signal over all volumes.
    ``tsnr_after`` uses the kept volumes: the temporal mean of the *raw*
    signal divided by the standard deviation of the cleaned signal *before*
    standardization (after z-scoring every voxel would have std 1 and mean 0,
    which says nothing). It therefore measures how much variance denoising
    removed relative to the baseline signal.

    References
    ----------
    .. [1] Wang et al. (2024) "Benchmarking fMRI denoising strategies for
       functional connectomics", PLoS Comput Biol 20(3): e1011942.
    """
    check_in_allowed("strategy", strategy, STRATEGIES)
    check_type("t_r", t_r, (int, float))
    if not t_r > 0:
        raise ValueError(f"'t_r' must be > 0 seconds. Got {t_r!r}; pass the RepetitionTime.")
    if not 0 < min_fraction_kept <= 1:
        raise ValueError(f"'min_fraction_kept' must be in (0, 1]. Got {min_fraction_kept!r}.")

    bold_name = _image_name(bold_img, "BOLD image")
    bold = load_bold(bold_img, min_volumes=min_volumes)
    mask = load_mask(mask_img)
    check_same_grid(bold, mask, bold_name, _image_name(mask_img, "mask image"))
    n_volumes = bold.shape[3]

    raw_table = None
    if confounds_file is not None:
        raw_table = check_confounds(confounds_file, n_volumes, bold_name)

    params: dict[str, Any] = {}
    if isinstance(confounds, (str, os.PathLike)):
        conf_path = Path(confounds)
        if conf_path.name.endswith((".tsv", ".tsv.gz")):
            raise ValueError(
                f"'confounds' must be the preprocessed BOLD path (nilearn finds the "
                f"confounds TSV/JSON next to it) or a DataFrame. Got the table {conf_path}; "
                "pass the BOLD path, or read the table with pandas and pass the columns."
            )
        if sample_mask is not None:
            raise ValueError(
                "'sample_mask' is only used with a confounds DataFrame or None; with a "
                "BOLD path the censoring comes from the strategy. Drop sample_mask."
            )
        if raw_table is None:
            found = _find_confounds_file(conf_path)
            if found is not None:
                raw_table = check_confounds(found, n_volumes, bold_name)
        if strategy == "scrubbing":
            params = {"fd_threshold": fd_threshold, "std_dvars_threshold": std_dvars_threshold}
        try:
            regressors, sample_mask = load_confounds_strategy(
                str(conf_path), denoise_strategy=strategy, **params
            )
        except (ValueError, OSError, KeyError) as exc:
            raise InputDataError(
                f"Confounds for {conf_path} cannot be used with strategy {strategy!r}: "
                f"{_one_line(exc)}. Choose another --denoise-strategy or supply fMRIPrep "
                ">= 1.4 confounds (TSV + JSON) next to the BOLD."
            ) from exc
        used_strategy = strategy
    elif isinstance(confounds, pd.DataFrame):
        regressors, used_strategy = confounds, "custom"
        if raw_table is None:
            raw_table = confounds
        if len(regressors) != n_volumes:
            raise InputDataError(
                f"The confounds DataFrame has {len(regressors)} rows but {bold_name} has "
                f"{n_volumes} volumes; pass one row per volume."
            )
        n_nan = int(regressors.isna().to_numpy().sum())
        if n_nan:
            raise InputDataError(
                f"The confounds DataFrame for {bold_name} holds {n_nan} NaN values (fMRIPrep "
                "writes n/a in the first row of derivative columns); fill them (e.g. with 0) "
                "or drop those columns."
            )
    elif confounds is None:
        regressors, used_strategy = None, "none"
    else:
        raise TypeError(
            "'confounds' must be a path, a pandas.DataFrame or None. "
            f"Got {type(confounds).__name__}."
        )

    kept = np.arange(n_volumes) if sample_mask is None else np.asarray(sample_mask, dtype=int)
    needed = max(min_volumes, math.ceil(min_fraction_kept * n_volumes))
    if kept.size < needed:
        raise InputDataError(
            f"Censoring kept {kept.size} of {n_volumes} volumes of {bold_name} (strategy "
            f"{used_strategy!r}, fd_threshold={fd_threshold}, std_dvars_threshold="
            f"{std_dvars_threshold}); at least {needed} are needed. Use a looser threshold, "
            "another --denoise-strategy, or exclude this run."
        )

    raw = apply_mask(bold, mask).astype(np.float64)  # (n_volumes, n_voxels)
    tsnr_before = temporal_snr(raw)
    do_filter = high_pass is not None or low_pass is not None
    cleaned = signal.clean(
        raw,
        detrend=detrend,
        standardize=None,
        sample_mask=None if sample_mask is None else kept,
        confounds=None if regressors is None else regressors.to_numpy(dtype=np.float64),
        standardize_confounds=True,
        filter="butterworth" if do_filter else False,
        low_pass=low_pass,
        high_pass=high_pass,
        t_r=float(t_r),
    )
    tsnr_after = temporal_snr(cleaned, mean=raw[kept].mean(axis=0))
    if standardize:
        cleaned = signal.clean(
            cleaned, detrend=False, standardize="zscore_sample", filter=False, t_r=float(t_r)
        )
    data = cleaned.astype(np.float32)
    mean_fd, max_fd = _framewise_displacement(raw_table)
    qc = {
        "n_volumes": int(n_volumes),
        "n_volumes_kept": int(kept.size),
        "mean_fd": mean_fd,
        "max_fd": max_fd,
        "tsnr_before": tsnr_before,
        "tsnr_after": tsnr_after,
        "n_confounds": 0 if regressors is None else int(regressors.shape[1]),
        "confounds": [] if regressors is None else [str(c) for c in regressors.columns],
        "strategy": used_strategy,
        "t_r": float(t_r),
        "high_pass": high_pass,
        "low_pass": low_pass,
        "detrend": bool(detrend),
        "standardize": bool(standardize),
        **params,
    }
    LOGGER.info(
        "Denoised %s (%s): kept %d/%d volumes, tSNR %.1f -> %.1f",
        bold_name, used_strategy, kept.size, n_volumes, tsnr_before, tsnr_after,
    )
    return DenoiseResult(
        data=data,
        sample_mask=kept,
        img=unmask(data, mask),
        qc=qc,
        confounds=regressors,
    )


def qc_table(qc_dicts: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run from the ``qc`` dicts of :func:`denoise_bold`.

    Identifier keys the caller adds (e.g. ``participant_id``, ``session``,
    ``task``, ``run``) come first, then the numbers in a fixed order; list
    values (the confound names) are joined with ``,`` so the table stays flat.

    Examples
    --------
    >>> qc_table([{"participant_id": "sub-01", "n_volumes": 100, "n_volumes_kept": 90,
    ...            "strategy": "scrubbing"}]).columns.tolist()
    ['participant_id', 'n_volumes', 'n_volumes_kept', 'strategy']
    """
    rows = [
        {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for k, v in d.items()}
        for d in qc_dicts
    ]
    table = pd.DataFrame(rows)
    known = [c for c in _QC_COLUMNS if c in table.columns]
    ident = [c for c in table.columns if c not in _QC_COLUMNS]
    first = [c for c in ("participant_id", "session", "task", "run") if c in ident]
    rest = [c for c in ident if c not in first]
    return table[first + known + rest]
