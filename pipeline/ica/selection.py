"""Which group-ICA networks enter the template: NeuroMark's criteria and GIFT-style scores.

Each component of a model order is scored:

- **stability**: ICASSO ``Iq`` (``n_runs >= 2``); passes when ``>= min_stability``
  (0.8, the NeuroMark criterion);
- **spatial**: :func:`edge_fraction`, the share of the map's supra-threshold
  energy (``z^2`` where ``|z| > 2``) on the brain-mask edge (mask minus its
  binary erosion); artefacts at the brain edge fail when ``> max_edge_fraction``
  (0.5). The mask's own edge share is recorded as ``mask_edge_fraction`` for
  reference;
- **temporal**: :func:`power_ratio`, the median over subjects of the GICA time
  course power below 0.1 Hz over power in 0.15-0.25 Hz (NeuroMark's
  low/high-frequency criterion; white noise gives about 1); passes when
  ``>= min_power_ratio`` (1.5).

:func:`select_networks` applies the criteria that have scores. A scale where no
network passes keeps all of them, so that every scale has a template; the
fallback is warned (naming the scale and the criteria) and recorded
(:attr:`Selection.fallback`), never silent.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from pipeline._validation import check_array_2d

__all__ = ["DEFAULT_THRESHOLDS", "Selection", "edge_fraction", "power_ratio", "select_networks"]

#: Thresholds of the criteria (None disables one) and the parameters of the scores.
DEFAULT_THRESHOLDS = {
    "min_stability": 0.8,
    "max_edge_fraction": 0.5,
    "min_power_ratio": 1.5,
    "z_threshold": 2.0,
    "low_band_hz": (0.0, 0.1),
    "high_band_hz": (0.15, 0.25),
    "n_erosions": 1,
}


def edge_fraction(
    maps: np.ndarray, mask: np.ndarray, *, n_erosions: int = 1, z_threshold: float = 2.0
) -> tuple[np.ndarray, float]:
    """Share of each map's supra-threshold energy on the brain-mask edge.

    Parameters
    ----------
    maps : ndarray of shape (n_maps, n_voxels)
        Maps on the in-mask voxels (C order of ``np.flatnonzero(mask)``).
    mask : ndarray of shape (nx, ny, nz), bool
    n_erosions : int, default=1
        Edge = mask minus its binary erosion repeated this many times.
    z_threshold : float, default=2.0
        Only voxels with ``|z| > z_threshold`` of the z-scored map count.

    Returns
    -------
    fractions : ndarray of shape (n_maps,)
        In [0, 1]; 0 for a map without supra-threshold voxels.
    mask_edge_fraction : float
        Share of mask voxels on the edge (the value for a map spread evenly).

    Raises
    ------
    ValueError
        If the number of map columns differs from the mask's voxel count.
    """
    mask = np.asarray(mask, dtype=bool)
    maps = check_array_2d("maps", maps)
    if maps.shape[1] != int(mask.sum()):
        raise ValueError(
            f"'maps' must have one column per in-mask voxel ({int(mask.sum())}). "
            f"Got {maps.shape[1]}; pass the mask the maps were made with."
        )
    core = ndimage.binary_erosion(mask, iterations=n_erosions)
    edge = (mask & ~core)[mask]
    z = maps - maps.mean(axis=1, keepdims=True)
    std = z.std(axis=1, keepdims=True)
    std[std == 0] = 1.0
    z = z / std
    energy = np.where(np.abs(z) > z_threshold, z**2, 0.0)
    total = energy.sum(axis=1)
    frac = np.divide(energy[:, edge].sum(axis=1), total, out=np.zeros_like(total),
                     where=total > 0)
    return frac, float(edge.mean())


def power_ratio(
    timecourses: np.ndarray,
    t_r: float,
    *,
    low_band: tuple = (0.0, 0.1),
    high_band: tuple = (0.15, 0.25),
) -> np.ndarray:
    """Low- over high-frequency power of each time course (NeuroMark criterion).

    Parameters
    ----------
    timecourses : array-like of shape (n_volumes, n_networks)
        One column per network.
    t_r : float
        Repetition time in seconds.
    low_band, high_band : tuple of float
        Frequency bands in Hz; the low band excludes 0 Hz.

    Returns
    -------
    ndarray of shape (n_networks,)
        ``sum P(low) / sum P(high)`` of the linearly detrended periodogram.

    Raises
    ------
    ValueError
        If the high band has no frequency bin below Nyquist (``t_r`` too long).
    """
    tc = check_array_2d("timecourses", timecourses, min_rows=4)
    freqs, psd = signal.periodogram(signal.detrend(tc, axis=0), fs=1.0 / t_r, axis=0)
    low = (freqs > low_band[0]) & (freqs <= low_band[1])
    high = (freqs >= high_band[0]) & (freqs <= high_band[1])
    if not high.any() or not low.any():
        raise ValueError(
            f"'t_r'={t_r} s with {tc.shape[0]} volumes leaves no frequency bin in "
            f"{low_band} or {high_band} Hz (Nyquist {0.5 / t_r:.3f} Hz). Set "
            "min_power_ratio=None to skip the temporal criterion."
        )
    hi = psd[high].sum(axis=0)
    return psd[low].sum(axis=0) / np.where(hi > 0, hi, np.finfo(float).tiny)


@dataclass(frozen=True)
class Selection:
    """What :func:`select_networks` decided for one model order.

    Attributes
    ----------
    passed : ndarray of shape (order,), bool
        Networks that met every applied criterion.
    keep : ndarray of shape (order,), bool
        Networks in the template: ``passed``, or all of them when none passed.
    fallback : bool
        True when no network passed and all are kept.
    criteria : list of str
        The criteria applied, e.g. ``["stability >= 0.8", "edge fraction <= 0.5"]``.
    """

    passed: np.ndarray
    keep: np.ndarray
    fallback: bool
    criteria: list


def select_networks(
    order: int,
    *,
    stability: np.ndarray | None = None,
    edge: np.ndarray | None = None,
    ratio: np.ndarray | None = None,
    thresholds: dict | None = None,
) -> Selection:
    """Apply the criteria to one model order's scores; keep all when none passes (warned).

    Parameters
    ----------
    order : int
        The model order (named in the warning).
    stability, edge, ratio : ndarray of shape (order,) or None
        ICASSO stability, :func:`edge_fraction`, :func:`power_ratio`. A score
        that is None or all NaN is not applied, nor one whose threshold is None.
    thresholds : dict or None
        :data:`DEFAULT_THRESHOLDS` with overrides.

    Returns
    -------
    Selection

    Warns
    -----
    UserWarning
        When no network passes: names the order and the criteria.

    Examples
    --------
    >>> import numpy as np
    >>> select_networks(3, stability=np.array([0.9, 0.5, 0.85])).keep.tolist()
    [True, False, True]
    """
    thr = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    passed = np.ones(order, dtype=bool)
    criteria = []
    for scores, key, text, passes in (
            (stability, "min_stability", "stability >=", np.greater_equal),
            (edge, "max_edge_fraction", "edge fraction <=", np.less_equal),
            (ratio, "min_power_ratio", "power ratio >=", np.greater_equal)):
        if scores is None or thr[key] is None or np.all(np.isnan(scores)):
            continue
        passed &= passes(scores, thr[key])
        criteria.append(f"{text} {thr[key]}")
    fallback = not passed.any()
    if fallback:
        warnings.warn(
            f"No network of model order {order} passed the selection criteria "
            f"({', '.join(criteria)}); all {order} are kept (SelectionFallback in the sidecar). "
            "Check the runs' quality or relax the thresholds.",
            UserWarning, stacklevel=2)
    return Selection(passed=passed, keep=passed | fallback, fallback=fallback,
                     criteria=criteria)
