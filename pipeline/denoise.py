"""Denoising of preprocessed BOLD with nilearn's fMRIPrep confound strategies.

The confound regressors and the censoring (scrubbing) mask are those of
nilearn's presets (:func:`nilearn.interfaces.fmriprep.load_confounds_strategy`,
applied by :mod:`pipeline.confounds`, which also derives fMRIPrep's motion
expansions when a table has only the six rigid-body parameters); detrending,
Butterworth filtering, censoring and standardization are done by
:func:`nilearn.signal.clean`. Nothing is filtered by hand here: this module
decides *which* nilearn calls to make, checks inputs and reports
quality-control numbers.

Speed and memory. The run is read once, inside the mask, as float32
(:func:`pipeline.image_checks.read_masked`), and cleaned in blocks of voxels
that are written back in place: the only run-sized array is that float32 copy
(4 bytes per voxel and volume). Each block is cleaned in float64 by
``nilearn.signal.clean`` with ``butterworth__copy=True``, so that the filter
runs once over the whole block (``scipy.signal.sosfiltfilt`` along time)
instead of once per voxel, as nilearn's default in-place path does; the
confounds are projected out with ``Q @ (Q.T @ X)``, which is nilearn's
projection ``Q Q^T X`` evaluated without the ``n_volumes x n_volumes``
matrix. Each voxel goes through the same operations as with one
``signal.clean`` call on the whole array: the outputs agree to float32
rounding (see ``benchmarks/scale.py`` and ``tests/pipeline/test_denoise.py``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import signal
from nilearn.masking import unmask
from scipy import linalg

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, check_type
from pipeline.confounds import PRESETS, run_confounds
from pipeline.exceptions import InputDataError
from pipeline.image_checks import check_same_grid, load_bold, load_mask, read_masked

__all__ = ["STRATEGIES", "DenoiseResult", "denoise_bold", "qc_table", "temporal_snr", "tsnr_map"]

LOGGER = logging.getLogger("msica.pipeline")

#: Strategies accepted by :func:`denoise_bold`: nilearn's presets of the same name,
#: "custom" (the columns of a DataFrame as they are) and "none" (no denoising).
STRATEGIES = PRESETS + ("custom", "none")

#: Bytes of float64 data cleaned at a time (one block of voxels, all volumes).
_BLOCK_BYTES = 16 * 2**20

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
        Denoised in-mask signals (z-scored per voxel when ``standardize``),
        voxels in the order of nilearn's maskers.
    sample_mask : ndarray of shape (n_volumes_kept,), int
        Indices of the volumes kept (after scrubbing / dropping non-steady
        state volumes), into the original series.
    mask_img : nibabel.Nifti1Image
        The brain mask (uint8) whose voxels are the columns of ``data``.
    qc : dict
        ``n_volumes``, ``n_volumes_kept``, ``mean_fd``, ``max_fd`` (mm; NaN
        when no framewise displacement is available), ``tsnr_before``,
        ``tsnr_after`` (median over the mask, see :func:`denoise_bold` Notes),
        ``n_confounds``, ``confounds`` (column names regressed out),
        ``derived_confounds`` (columns computed from the table, see
        :func:`pipeline.confounds.expand_confounds`), ``strategy`` and the
        parameters used.
    confounds : pandas.DataFrame or None
        Regressors used, one row per original volume.
    """

    data: np.ndarray
    sample_mask: np.ndarray
    mask_img: nib.Nifti1Image
    qc: dict[str, Any] = field(default_factory=dict)
    confounds: pd.DataFrame | None = None

    @property
    def img(self) -> nib.Nifti1Image:
        """``data`` put back on the grid: 4-D with ``n_volumes_kept`` volumes.

        Built on each access (a full-grid float32 array): write ``data`` and
        ``mask_img`` instead where memory matters.
        """
        return unmask(self.data, self.mask_img)


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
    return _median_ratio(mu, signals.std(axis=0))


def tsnr_map(signals: np.ndarray) -> np.ndarray:
    """Temporal mean / temporal standard deviation of each voxel (0 where constant).

    Computed in float64 over blocks of voxels, so that a float32 run needs no
    run-sized temporary.

    Parameters
    ----------
    signals : ndarray of shape (n_volumes, n_voxels)
        The standard deviation is taken over axis 0 with ``ddof=0``.

    Returns
    -------
    ndarray of shape (n_voxels,), float64

    Examples
    --------
    >>> tsnr_map(np.array([[9.0, 1.0], [11.0, 1.0]])).tolist()
    [10.0, 0.0]
    """
    n_volumes, n_voxels = signals.shape
    out = np.zeros(n_voxels)
    width = max(64, _BLOCK_BYTES // (8 * max(n_volumes, 1)))
    for start in range(0, n_voxels, width):
        block = signals[:, start:start + width].astype(np.float64)
        std = block.std(axis=0)
        np.divide(block.mean(axis=0), std, out=out[start:start + width], where=std > 0)
    return out


def _median_ratio(mean: np.ndarray, std: np.ndarray) -> float:
    ok = std > 0
    if not ok.any():
        return float("nan")
    return float(np.median(mean[ok] / std[ok]))


def _image_name(img: Any, default: str) -> str:
    if isinstance(img, (str, os.PathLike)):
        return str(img)
    filename = img.get_filename() if hasattr(img, "get_filename") else None
    return str(filename) if filename else default


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


def _confound_basis(
    confounds: np.ndarray, kept: np.ndarray | None, clean_kwargs: dict
) -> np.ndarray | None:
    """Orthonormal basis of the processed confounds, as ``nilearn.signal.clean`` builds it.

    The confounds are detrended, filtered and censored like the signals, z-scored,
    and reduced to the columns of a pivoted QR whose ``|R_ii|`` exceed
    ``100 * eps`` (``signal.clean``'s rule).
    """
    processed = signal.clean(confounds, confounds=None, standardize=None,
                             sample_mask=None if kept is None else kept.copy(), **clean_kwargs)
    processed = signal.standardize_signal(processed, standardize="zscore_sample", detrend=False)
    q, r, _ = linalg.qr(processed, mode="economic", pivoting=True)
    return q[:, np.abs(np.diag(r)) > np.finfo(np.float64).eps * 100.0]


def _clean_in_place(
    data: np.ndarray,
    *,
    confounds: np.ndarray | None,
    kept: np.ndarray | None,
    clean: bool,
    detrend: bool,
    filter_kwargs: dict,
    standardize: bool,
) -> tuple[float, float]:
    """Clean ``data`` (float32, n_volumes x n_voxels) block by block; kept volumes end on top.

    Returns the tSNR before (all volumes) and after (see :func:`denoise_bold`).
    """
    n_volumes, n_voxels = data.shape
    n_kept = n_volumes if kept is None else kept.size
    clean_kwargs = {"detrend": detrend, **filter_kwargs}
    basis = None
    if clean and confounds is not None:
        basis = _confound_basis(confounds, kept, clean_kwargs)
    width = max(64, _BLOCK_BYTES // (8 * n_volumes))
    stats = np.empty((4, n_voxels))  # raw mean, raw std, raw mean over kept volumes, std after
    for start in range(0, n_voxels, width):
        cols = slice(start, start + width)
        raw = data[:, cols].astype(np.float64)
        stats[0, cols], stats[1, cols] = raw.mean(axis=0), raw.std(axis=0)
        stats[2, cols] = stats[0, cols] if kept is None else raw[kept].mean(axis=0)
        if clean:
            out = signal.clean(raw, confounds=None, standardize=None,
                               sample_mask=None if kept is None else kept.copy(), **clean_kwargs)
            if basis is not None:
                out -= basis @ (basis.T @ out)
        else:
            out = raw if kept is None else raw[kept]
        stats[3, cols] = out.std(axis=0)
        if standardize:
            out = signal.standardize_signal(out, standardize="zscore_sample", detrend=False)
        data[:n_kept, cols] = out
    return _median_ratio(stats[0], stats[1]), _median_ratio(stats[2], stats[3])


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
    min_volumes: int = 10,
    min_fraction_kept: float = 0.5,
) -> DenoiseResult:
    """Regress confounds, filter and censor a BOLD series inside a mask.

    Parameters
    ----------
    bold_img : path-like or nibabel image
        Preprocessed 4-D BOLD (fMRIPrep ``*_desc-preproc_bold.nii.gz``, or
        SPM's ``swa*.nii``). Values outside the mask are ignored (SPM writes
        NaN there); inside it they are an error.
    %(mask_img)s
    confounds : path-like, pandas.DataFrame or None
        The confounds table: the path of a TSV (fMRIPrep's
        ``*_desc-confounds_timeseries.tsv``, or any table with its column
        names, e.g. SPM's six realignment parameters as ``trans_x/y/z``,
        ``rot_x/y/z``; its JSON sidecar is read when present), the path of
        the preprocessed BOLD (its fMRIPrep table is found beside it), a
        DataFrame, or None (no table: strategies "none" and "custom" only).
    strategy : {"simple", "scrubbing", "compcor", "custom", "none"}, default="simple"
        nilearn's presets: "simple" = 24 motion parameters + WM/CSF + cosines;
        "scrubbing" = "simple" with WM/CSF expansions and censoring of
        high-motion volumes (``fd_threshold``, ``std_dvars_threshold``, and
        segments shorter than 5 volumes); "compcor" = 24 motion parameters +
        all anatomical CompCor components (combined mask) + cosines. Motion
        and WM/CSF expansions missing from the table are derived as fMRIPrep
        does (listed in ``qc["derived_confounds"]``). "custom": every column
        of a DataFrame is regressed out as it is (none when None; NaN
        refused). "none": the data pass through (masked, float32): no
        regression, and ``high_pass``, ``low_pass``, ``detrend`` and
        ``standardize`` are not applied (``qc`` records them as off).
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
        Volumes to keep with strategy "custom" or "none" (the presets
        censor by themselves).
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
        For an unknown ``strategy``, a non-positive ``t_r``, ``sample_mask``
        with a preset strategy, or "custom" with a path.
    TypeError
        If ``confounds`` is not a path, a DataFrame or None.
    FileNotFoundError
        If an input file is missing.
    InputDataError
        For unusable inputs (see :mod:`pipeline.image_checks`; NaN inside the
        mask), a preset strategy without a confounds table or whose columns
        are missing (the message names them and the strategies the table
        supports), NaN in a "custom" DataFrame, or too many censored volumes.

    Notes
    -----
    tSNR is the median over in-mask voxels of mean / standard deviation over
    time (ddof=0). ``tsnr_before`` uses the raw signal over all volumes.
    ``tsnr_after`` uses the kept volumes: the temporal mean of the *raw*
    signal divided by the standard deviation of the cleaned signal *before*
    standardization (after z-scoring every voxel would have std 1 and mean 0,
    which says nothing). It therefore measures how much variance denoising
    removed relative to the baseline signal.

    Memory: one float32 copy of the in-mask run (4 bytes per voxel and
    volume) plus blocks of 16 MiB; see the module docstring.

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
    mask_name = _image_name(mask_img, "mask image")
    bold = load_bold(bold_img, min_volumes=min_volumes)
    mask = load_mask(mask_img)
    check_same_grid(bold, mask, bold_name, mask_name)
    n_volumes = bold.shape[3]

    regressors, kept, raw_table, derived = run_confounds(
        confounds, strategy, n_volumes=n_volumes, bold_name=bold_name,
        fd_threshold=fd_threshold, std_dvars_threshold=std_dvars_threshold,
        sample_mask=sample_mask)
    kept = None if kept is None else np.asarray(kept, dtype=int)
    n_kept = n_volumes if kept is None else kept.size
    needed = max(min_volumes, math.ceil(min_fraction_kept * n_volumes))
    if n_kept < needed:
        raise InputDataError(
            f"Censoring kept {n_kept} of {n_volumes} volumes of {bold_name} (strategy "
            f"{strategy!r}, fd_threshold={fd_threshold}, std_dvars_threshold="
            f"{std_dvars_threshold}); at least {needed} are needed. Use a looser threshold, "
            "another --denoise-strategy, or exclude this run."
        )

    if strategy == "none":
        high_pass = low_pass = None
        detrend = standardize = False
    do_filter = high_pass is not None or low_pass is not None
    data = read_masked(bold, mask, name=bold_name, mask_name=mask_name)
    tsnr_before, tsnr_after = _clean_in_place(
        data,
        confounds=None if regressors is None else regressors.to_numpy(dtype=np.float64),
        kept=kept,
        clean=strategy != "none",
        detrend=detrend,
        filter_kwargs={"filter": "butterworth" if do_filter else False, "low_pass": low_pass,
                       "high_pass": high_pass, "t_r": float(t_r),
                       "butterworth__copy": True},
        standardize=standardize,
    )
    data = data[:n_kept]
    mean_fd, max_fd = _framewise_displacement(raw_table)
    qc = {
        "n_volumes": int(n_volumes),
        "n_volumes_kept": int(n_kept),
        "mean_fd": mean_fd,
        "max_fd": max_fd,
        "tsnr_before": tsnr_before,
        "tsnr_after": tsnr_after,
        "n_confounds": 0 if regressors is None else int(regressors.shape[1]),
        "confounds": [] if regressors is None else [str(c) for c in regressors.columns],
        "derived_confounds": derived,
        "strategy": strategy,
        "t_r": float(t_r),
        "high_pass": high_pass,
        "low_pass": low_pass,
        "detrend": bool(detrend),
        "standardize": bool(standardize),
    }
    if strategy == "scrubbing":
        qc.update(fd_threshold=fd_threshold, std_dvars_threshold=std_dvars_threshold)
    LOGGER.info(
        "Denoised %s (%s): kept %d/%d volumes, tSNR %.1f -> %.1f",
        bold_name, strategy, n_kept, n_volumes, tsnr_before, tsnr_after,
    )
    return DenoiseResult(
        data=data,
        sample_mask=np.arange(n_volumes) if kept is None else kept,
        mask_img=mask,
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
