"""Multi-scale group ICA: several model orders, selection, correspondence, templates.

:func:`fit_multiscale` reduces every subject once (subject PCA sized for the
largest model order), runs one group PCA at the largest order and an ICA (or
ICASSO) on the leading rows of it at each order: the group PCA of a smaller
order is the leading part of the larger one. Each component is then scored:

- **stability**: ICASSO ``Iq`` (``n_runs >= 2``); kept when ``>= min_stability``
  (0.8, the NeuroMark criterion);
- **spatial**: ``edge_fraction``, the share of the map's supra-threshold energy
  (``z^2`` where ``|z| > 2``) on the brain-mask edge (mask minus its binary
  erosion); artefacts at the brain edge are rejected when
  ``> max_edge_fraction`` (0.5). The mask's own edge share is recorded as
  ``mask_edge_fraction`` for reference;
- **temporal**: ``power_ratio``, the median over subjects of the GICA time
  course power below 0.1 Hz over power in 0.15-0.25 Hz (NeuroMark's
  low/high-frequency criterion; white noise gives about 1); kept when
  ``>= min_power_ratio`` (1.5).

Every threshold is stored in ``MultiscaleResult.thresholds`` and each score
in the ``labels`` table. Networks at each finer scale are assigned a *parent*
at the next coarser scale by maximal ``|r|`` with the kept coarser networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage, signal

from pipeline._docs import fill_doc
from pipeline._validation import check_array_2d, check_type, derive_seeds
from pipeline.ica._matching import abs_correlation, match_components
from pipeline.ica.group import GroupICA, reduce_subjects
from pipeline.ica.pca import group_pca

__all__ = [
    "MultiscaleResult",
    "assign_parents",
    "edge_fraction",
    "export_template",
    "fit_multiscale",
    "match_to_template",
    "power_ratio",
]

DEFAULT_THRESHOLDS = {
    "min_stability": 0.8,
    "max_edge_fraction": 0.5,
    "min_power_ratio": 1.5,
    "z_threshold": 2.0,
    "low_band_hz": (0.0, 0.1),
    "high_band_hz": (0.15, 0.25),
    "n_erosions": 1,
}


@dataclass
class MultiscaleResult:
    """Output of :func:`fit_multiscale`.

    Attributes
    ----------
    model_orders : tuple of int
        Sorted coarse to fine.
    components : dict of int to ndarray of shape (order, n_voxels)
        z-scored maps per order.
    estimators : dict of int to GroupICA
        Fitted estimator per order (GICA back-projection attributes).
    labels : DataFrame
        One row per component: ``index`` (1-based, global), ``scale``,
        ``component`` (0-based within scale), ``label`` (``N<component + 1>``;
        FNC node names add the scale, ``s<scale>-N<k>``), ``stability``,
        ``edge_fraction``, ``power_ratio``, ``keep``, ``parent`` (label at the
        next coarser scale, or ``"n/a"``), ``parent_r``.
    thresholds : dict
        The criteria used (see the module docstring).
    group_pca : dict
        How the group PCA (at the largest order) ran: ``method``, ``n_iter``,
        ``n_passes`` (reads of every subject's data), ``converged``,
        ``relative_change``.
    """

    model_orders: tuple
    components: dict
    estimators: dict
    labels: pd.DataFrame
    thresholds: dict = field(default_factory=dict)
    group_pca: dict = field(default_factory=dict)


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


def assign_parents(
    fine: np.ndarray, coarse: np.ndarray, coarse_keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Parent of each finer-scale map: the coarser map with maximal ``|r|``.

    Parameters
    ----------
    fine : ndarray of shape (n_fine, n_voxels)
    coarse : ndarray of shape (n_coarse, n_voxels)
    coarse_keep : ndarray of shape (n_coarse,), bool, or None
        Restrict parents to kept coarse maps (all when None or none kept).

    Returns
    -------
    parent : ndarray of shape (n_fine,)
        Index into ``coarse``.
    parent_r : ndarray of shape (n_fine,)
        The ``|r|`` with the parent.
    """
    corr = abs_correlation(fine, coarse)
    if coarse_keep is not None and np.any(coarse_keep):
        corr = np.where(np.asarray(coarse_keep, bool)[None, :], corr, -1.0)
    parent = corr.argmax(axis=1)
    return parent, corr[np.arange(len(parent)), parent]


@fill_doc
def fit_multiscale(
    subject_data: Sequence[np.ndarray | Callable[[], np.ndarray]] | Mapping[str, Any],
    model_orders: Sequence[int],
    *,
    algorithm: str = "infomax",
    n_runs: int = 1,
    mask: np.ndarray | None = None,
    t_r: float | None = None,
    n_subject_components: int | None = None,
    preprocess: str = "remove_mean",
    thresholds: dict | None = None,
    ica_params: dict | None = None,
    random_state: Any = None,
    device: Any = "auto",
) -> MultiscaleResult:
    """Group ICA at several model orders with selection and cross-scale parents.

    Parameters
    ----------
    subject_data : sequence of ndarray of shape (n_volumes, n_voxels), or loaders, or dict
        Masked subject data, or subjects already reduced: a dict like the
        output of :func:`~pipeline.ica.group.reduce_subjects` (``reduced``,
        ``whitening``, ``dewhitening``, ``n_voxels``), e.g. subject PCAs
        computed at the participant level. Its sequences may read each
        subject from disk when indexed (e.g. a
        :class:`~pipeline.ica._lazy.LazySequence`): the group PCA then streams
        them, and memory does not grow with the number of subjects.
    model_orders : sequence of int
        Distinct model orders, e.g. ``(25, 50, 75, 100)``.
    algorithm : {"infomax", "fastica"}, default="infomax"
    n_runs : int, default=1
        ICASSO runs per order (``>= 2`` gives stability).
    mask : ndarray of shape (nx, ny, nz), bool, or None
        Brain mask of the voxels (spatial criterion skipped when None).
    t_r : float or None
        Repetition time (temporal criterion skipped when None).
    n_subject_components : int or None
        Subject PCs (default ``min(2 * max(model_orders), n_volumes - 1)``).
    preprocess : str, default="remove_mean"
        See :func:`~pipeline.ica.pca.preprocess_subject`.
    thresholds : dict or None
        Overrides of :data:`DEFAULT_THRESHOLDS`; a value of None disables
        that criterion.
    ica_params : dict or None
    %(random_state)s
    %(device)s

    Returns
    -------
    MultiscaleResult

    Raises
    ------
    ValueError
        If ``model_orders`` is empty, repeats an order, or an order exceeds
        the data (see :class:`~pipeline.ica.group.GroupICA`), or a threshold
        key is unknown.
    """
    orders = tuple(sorted(int(check_type("model_orders", o, (int, np.integer)))
                          for o in model_orders))
    if not orders or len(set(orders)) != len(orders):
        raise ValueError(
            f"'model_orders' must be a non-empty list of distinct ints. Got {list(model_orders)}."
        )
    thr = dict(DEFAULT_THRESHOLDS)
    unknown = set(thresholds or {}) - set(thr)
    if unknown:
        raise ValueError(
            f"'thresholds' keys must be among {sorted(thr)}. Got unknown {sorted(unknown)}."
        )
    thr.update(thresholds or {})
    if isinstance(subject_data, Mapping):
        subj = dict(subject_data)
        in_memory = isinstance(subj["reduced"], (list, tuple))  # else group_pca checks
        n_stacked = sum(np.shape(r)[0] for r in subj["reduced"]) if in_memory else orders[-1]
        if orders[-1] > n_stacked:
            raise ValueError(
                f"The largest model order {orders[-1]} must be at most the stacked subject "
                f"components ({n_stacked}); lower the model orders or add participants."
            )
    else:
        subj = reduce_subjects(subject_data, orders[-1],
                               n_subject_components=n_subject_components, preprocess=preprocess)
    seeds = derive_seeds(random_state, 1 + len(orders))
    gpca = group_pca(subj["reduced"], orders[-1], random_state=int(seeds[0]), device=device)
    estimators, components, rows = {}, {}, []
    edge_share = None
    for order, seed in zip(orders, seeds[1:]):
        est = GroupICA(order, algorithm=algorithm, n_runs=n_runs, ica_params=ica_params,
                       preprocess=preprocess, random_state=int(seed), device=device)
        est._set_from_parts(subj, gpca, int(seed))
        estimators[order], components[order] = est, est.components_
        stab = est.stability_ if est.stability_ is not None else np.full(order, np.nan)
        edge = np.full(order, np.nan)
        if mask is not None and thr["max_edge_fraction"] is not None:
            edge, edge_share = edge_fraction(est.components_, mask, n_erosions=thr["n_erosions"],
                                             z_threshold=thr["z_threshold"])
        ratio = np.full(order, np.nan)
        if t_r is not None and thr["min_power_ratio"] is not None:
            ratio = np.median([power_ratio(tc, t_r, low_band=thr["low_band_hz"],
                                           high_band=thr["high_band_hz"])
                               for tc in est.subject_mixing_], axis=0)
        keep = np.ones(order, dtype=bool)
        if n_runs >= 2 and thr["min_stability"] is not None:
            keep &= stab >= thr["min_stability"]
        if not np.all(np.isnan(edge)):
            keep &= edge <= thr["max_edge_fraction"]
        if not np.all(np.isnan(ratio)):
            keep &= ratio >= thr["min_power_ratio"]
        for j in range(order):
            rows.append({"scale": order, "component": j, "label": f"N{j + 1}",
                         "stability": stab[j], "edge_fraction": edge[j],
                         "power_ratio": ratio[j], "keep": bool(keep[j])})
    labels = pd.DataFrame(rows)
    labels.insert(0, "index", np.arange(1, len(labels) + 1))
    labels["parent"] = "n/a"
    labels["parent_r"] = np.nan
    for coarse, fine in zip(orders[:-1], orders[1:]):
        c_rows = labels[labels["scale"] == coarse]
        parent, r = assign_parents(components[fine], components[coarse],
                                   c_rows["keep"].to_numpy())
        f_idx = labels.index[labels["scale"] == fine]
        labels.loc[f_idx, "parent"] = c_rows["label"].to_numpy()[parent]
        labels.loc[f_idx, "parent_r"] = r
    thr["mask_edge_fraction"] = edge_share
    return MultiscaleResult(orders, components, estimators, labels, thr,
                            estimators[orders[-1]].group_pca_)


def match_to_template(
    components: np.ndarray,
    template_maps: np.ndarray,
    template_labels: pd.DataFrame | None = None,
    *,
    min_r: float = 0.4,
    one_to_one: bool = False,
) -> pd.DataFrame:
    """Name components after the best-matching template network (|spatial r|).

    Parameters
    ----------
    components : ndarray of shape (n_components, n_voxels)
    template_maps : ndarray of shape (n_template, n_voxels)
        Template maps on the same voxels (e.g. NeuroMark resampled and masked).
    template_labels : DataFrame or None
        One row per template map, in order (e.g. ``neuromark1_labels.tsv``);
        its columns are copied with a ``template_`` prefix.
    min_r : float, default=0.4
        Matches below this ``|r|`` get ``matched=False``.
    one_to_one : bool, default=False
        Hungarian one-to-one matching instead of each component's best map.

    Returns
    -------
    DataFrame
        ``component``, ``template_index`` (0-based), ``r`` (``|r|``),
        ``matched`` and the ``template_*`` columns.

    Raises
    ------
    ValueError
        If ``template_labels`` does not have one row per template map.
    """
    template_maps = check_array_2d("template_maps", template_maps)
    corr = abs_correlation(components, template_maps)
    if one_to_one:
        rows, cols, _ = match_components(components, template_maps)
        best = np.full(corr.shape[0], -1)
        best[rows] = cols
    else:
        best = corr.argmax(axis=1)
    r = np.where(best >= 0, corr[np.arange(corr.shape[0]), np.maximum(best, 0)], np.nan)
    out = pd.DataFrame({"component": np.arange(corr.shape[0]), "template_index": best,
                        "r": r, "matched": np.nan_to_num(r) >= min_r})
    if template_labels is not None:
        if len(template_labels) != template_maps.shape[0]:
            raise ValueError(
                f"'template_labels' must have one row per template map "
                f"({template_maps.shape[0]}). Got {len(template_labels)} rows."
            )
        extra = template_labels.reset_index(drop=True).add_prefix("template_")
        extra = extra.reindex(np.maximum(best, 0)).reset_index(drop=True)
        extra[best < 0] = np.nan
        out = pd.concat([out, extra], axis=1)
    return out


def export_template(
    result: MultiscaleResult, *, keep_only: bool = True
) -> tuple[np.ndarray, pd.DataFrame]:
    """Multi-scale template as arrays plus its label table.

    Parameters
    ----------
    result : MultiscaleResult
    keep_only : bool, default=True
        Export only the components that passed the criteria.

    Returns
    -------
    maps : ndarray of shape (n_networks, n_voxels)
        z-scored maps, coarse scales first (one NIfTI volume each).
    table : DataFrame
        The ``labels`` rows of the exported maps, re-indexed from 1
        (``index`` is the volume number in ``maps``; ``source_index`` the
        row in ``result.labels``).
    """
    table = result.labels
    if keep_only:
        table = table[table["keep"]]
    maps = np.vstack([result.components[s][c] for s, c in
                      zip(table["scale"], table["component"])]) if len(table) else \
        np.empty((0, next(iter(result.components.values())).shape[1]))
    table = table.rename(columns={"index": "source_index"}).reset_index(drop=True)
    table.insert(0, "index", np.arange(1, len(table) + 1))
    return maps, table
