"""Nuisance side of the simulator: head motion, physiology and fMRIPrep-style confounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "MOTION_COLUMNS",
    "confounds_table",
    "cosine_basis",
    "framewise_displacement",
    "motion_leak_patterns",
    "simulate_motion",
    "simulate_physio",
]

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
#: Head radius (mm) turning rotations into displacements (Power et al., 2012).
HEAD_RADIUS_MM = 50.0
N_COMPCOR = 5
#: Percent signal change per mm of displacement at the brain edge.
LEAK_PCT_PER_MM = 0.3


def simulate_motion(n_volumes: int, level: float, rng: np.random.RandomState) -> np.ndarray:
    """Six rigid-body parameters as random walks with rare jumps.

    Parameters
    ----------
    level : float
        Scale of the steps; 1 gives a typical low-motion adult (mean FD ~0.1 mm).

    Returns
    -------
    ndarray of shape (n_volumes, 6)
        Translations in mm, rotations in radians (fMRIPrep convention).
    """
    steps = rng.standard_normal((n_volumes, 6)) * level
    steps[:, :3] *= 0.025
    steps[:, 3:] *= 0.025 / HEAD_RADIUS_MM
    n_jumps = rng.poisson(0.01 * n_volumes * level)
    for t in rng.randint(1, n_volumes, size=n_jumps):
        steps[t, :3] += rng.normal(scale=0.3, size=3)
        steps[t, 3:] += rng.normal(scale=0.3 / HEAD_RADIUS_MM, size=3)
    steps[0] = 0.0
    return np.cumsum(steps, axis=0)


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Power's framewise displacement; the first value is NaN (``n/a`` in the TSV)."""
    d = np.abs(np.diff(motion, axis=0))
    fd = d[:, :3].sum(axis=1) + HEAD_RADIUS_MM * d[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])


def motion_leak_patterns(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Percent signal change per mm (or per radian) of each motion parameter.

    Motion changes the signal mostly at the edge of the brain, along the outward
    direction (partial-volume effect): translation ``a`` weighs the outward normal
    along axis ``a``; rotation about ``a`` weighs the tangential displacement.

    Returns
    -------
    ndarray of shape (6, n_voxels)
    """
    vox = abs(affine[0, 0])
    xyz = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    depth = ndimage.distance_transform_edt(mask)[mask] * vox
    edge = np.exp(-depth / 3.0)
    center = xyz.mean(axis=0)
    r = xyz - center
    normal = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-6)
    out = np.empty((6, len(xyz)))
    for a in range(3):
        out[a] = LEAK_PCT_PER_MM * edge * normal[:, a]
        axis = np.eye(3)[a]
        disp = np.cross(axis, r)  # mm per radian
        out[3 + a] = LEAK_PCT_PER_MM * edge * (np.sum(disp * normal, axis=1)
                                               + 0.2 * np.linalg.norm(disp, axis=1))
    return out


def simulate_physio(n_volumes: int, t_r: float, rng: np.random.RandomState) -> np.ndarray:
    """Aliased cardiac/respiratory-like nuisance: two drifting sinusoids plus AR(1) noise, unit variance."""
    t = np.arange(n_volumes) * t_r
    sig = np.zeros(n_volumes)
    nyq = 0.5 / t_r
    for _ in range(2):
        f = rng.uniform(0.05, 0.95) * nyq
        sig += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    ar = np.zeros(n_volumes)
    e = rng.standard_normal(n_volumes)
    for i in range(1, n_volumes):
        ar[i] = 0.6 * ar[i - 1] + e[i]
    sig += 0.5 * ar
    return (sig - sig.mean()) / sig.std()


def cosine_basis(n_volumes: int, t_r: float, period_cut: float = 128.0) -> np.ndarray:
    """Discrete cosine high-pass basis as fMRIPrep writes it (``cosine00``...)."""
    order = int(np.floor(2 * n_volumes * t_r / period_cut))
    n = np.arange(n_volumes)
    basis = np.empty((n_volumes, order))
    for k in range(1, order + 1):
        basis[:, k - 1] = np.sqrt(2.0 / n_volumes) * np.cos(np.pi * (2 * n + 1) * k / (2 * n_volumes))
    return basis


def _dvars(bold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DVARS and its standardized form (Nichols' AR(1)-based expectation)."""
    diff = np.diff(bold, axis=0)
    dvars = np.sqrt(np.mean(diff**2, axis=1))
    q75, q25 = np.percentile(bold, [75, 25], axis=0)
    sd = (q75 - q25) / 1.349
    x = bold - bold.mean(axis=0)
    denom = np.sum(x**2, axis=0)
    ar1 = np.sum(x[1:] * x[:-1], axis=0) / np.where(denom > 0, denom, 1.0)
    pred = np.sqrt(np.mean(2.0 * (1.0 - ar1) * sd**2))
    std = dvars / pred if pred > 0 else dvars
    pad = np.array([np.nan])
    return np.concatenate([pad, dvars]), np.concatenate([pad, std])


def _expansions(df: pd.DataFrame, base: str, series: np.ndarray) -> None:
    d1 = np.concatenate([[np.nan], np.diff(series)])
    df[base] = series
    df[f"{base}_derivative1"] = d1
    df[f"{base}_power2"] = series**2
    df[f"{base}_derivative1_power2"] = d1**2


def confounds_table(*, bold: np.ndarray, motion: np.ndarray, csf: np.ndarray,
                    white_matter: np.ndarray, noise_roi: np.ndarray, t_r: float,
                    fd_threshold: float = 0.5, dvars_threshold: float = 1.5,
                    ) -> tuple[pd.DataFrame, dict]:
    """fMRIPrep-style confounds and the metadata of its ``desc-confounds_timeseries.json``.

    Parameters
    ----------
    bold : ndarray of shape (n_volumes, n_voxels)
        In-mask preprocessed BOLD (global signal, DVARS).
    motion : ndarray of shape (n_volumes, 6)
    csf, white_matter : ndarray of shape (n_volumes,)
        Mean signals of the (simulated) CSF and white-matter masks.
    noise_roi : ndarray of shape (n_volumes, n_noise_voxels)
        Simulated voxels of the combined WM+CSF mask, for aCompCor.
    t_r : float

    Returns
    -------
    confounds : DataFrame of shape (n_volumes, n_columns)
        Columns named as fMRIPrep >= 20.2 names them; first-row derivatives NaN.
    metadata : dict
        Per-column metadata; aCompCor entries carry ``Method``, ``Mask``
        (``"combined"``), ``Retained``, ``SingularValue``, ``VarianceExplained``
        and ``CumulativeVarianceExplained`` as nilearn's ``load_confounds`` reads them.
    """
    n = bold.shape[0]
    df = pd.DataFrame(index=pd.RangeIndex(n))
    _expansions(df, "global_signal", bold.mean(axis=1))
    _expansions(df, "csf", csf)
    _expansions(df, "white_matter", white_matter)
    dvars, std_dvars = _dvars(bold)
    df["std_dvars"] = std_dvars
    df["dvars"] = dvars
    fd = framewise_displacement(motion)
    df["framewise_displacement"] = fd
    for k, name in enumerate(MOTION_COLUMNS):
        _expansions(df, name, motion[:, k])
    cos = cosine_basis(n, t_r)
    # aCompCor: high-pass (cosines), standardize, SVD of the noise-ROI voxels.
    x = noise_roi - noise_roi.mean(axis=0)
    if cos.shape[1]:
        x = x - cos @ (cos.T @ x)
    sd = x.std(axis=0)
    x = x / np.where(sd > 0, sd, 1.0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    var = s**2 / np.sum(s**2)
    meta: dict = {}
    for k in range(min(N_COMPCOR, u.shape[1])):
        col = f"a_comp_cor_{k:02d}"
        df[col] = u[:, k]
        meta[col] = {
            "CumulativeVarianceExplained": float(np.sum(var[: k + 1])),
            "Mask": "combined",
            "Method": "aCompCor",
            "Retained": True,
            "SingularValue": float(s[k]),
            "VarianceExplained": float(var[k]),
        }
    for k in range(cos.shape[1]):
        df[f"cosine{k:02d}"] = cos[:, k]
    outliers = np.flatnonzero((np.nan_to_num(fd) > fd_threshold) | (np.nan_to_num(std_dvars) > dvars_threshold))
    spikes = np.zeros((n, len(outliers)))
    spikes[outliers, np.arange(len(outliers))] = 1.0
    df = pd.concat([df, pd.DataFrame(spikes, columns=[f"motion_outlier{k:02d}" for k in range(len(outliers))])],
                   axis=1)
    meta["framewise_displacement"] = {
        "Description": "Framewise displacement (Power et al., 2012), head radius 50 mm.",
        "Units": "mm",
    }
    meta["std_dvars"] = {"Description": "DVARS standardized by its AR(1)-based expectation (Nichols, 2017)."}
    return df, meta
