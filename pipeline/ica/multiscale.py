"""Multi-scale group ICA: several model orders, selection, correspondence, templates.

:func:`fit_multiscale` reduces every subject once (subject PCA sized for the
largest model order), runs one group PCA at the largest order and an ICA (or
ICASSO) on the leading rows of it at each order: the group PCA of a smaller
order is the leading part of the larger one. Each component is then scored
and selected with NeuroMark's criteria (:mod:`pipeline.ica.selection`:
stability, brain-edge energy, low/high-frequency power ratio).

Every threshold is stored in ``MultiscaleResult.thresholds`` and each score
in the ``labels`` table (``passed``: met every criterion). A scale where no
network passes keeps all of them (``keep`` true, ``selection_fallback`` of
that scale true, a warning naming the scale and the criteria), so that every
scale has a template. Networks at each finer scale are assigned a *parent*
at the next coarser scale by maximal ``|r|`` with the kept coarser networks.

:func:`fit_multiscale_subject_pcas` fits on the participant level's subject-PCA
files (:mod:`pipeline.ica.persistence`) inside GIFT's group mask
(:func:`group_mask`: the voxels inside every run's mask).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline._docs import fill_doc
from pipeline._validation import check_array_2d, check_type, derive_seeds
from pipeline.exceptions import InputDataError
from pipeline.ica._matching import abs_correlation, match_components
from pipeline.ica.group import GroupICA, reduce_subjects
from pipeline.ica.pca import group_pca
from pipeline.ica.persistence import GroupMask, read_subject_pcas, subject_pca_grid
from pipeline.ica.selection import DEFAULT_THRESHOLDS, edge_fraction, power_ratio, select_networks

__all__ = [
    "MultiscaleResult",
    "assign_parents",
    "export_template",
    "fit_multiscale",
    "fit_multiscale_subject_pcas",
    "group_mask",
    "match_to_template",
]

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
        ``edge_fraction``, ``power_ratio``, ``passed`` (met every criterion),
        ``keep`` (in the template), ``parent`` (label at the next coarser
        scale, or ``"n/a"``), ``parent_r``.
    thresholds : dict
        The criteria used (see the module docstring).
    group_pca : dict
        How the group PCA (at the largest order) ran: ``method``, ``n_iter``,
        ``n_passes`` (reads of every subject's data), ``converged``,
        ``relative_change``.
    selection_fallback : dict of int to bool
        Per order, whether no network passed and all were kept.
    group_mask : GroupMask or None
        The voxels of the maps (set by :func:`fit_multiscale_subject_pcas`).
    """

    model_orders: tuple
    components: dict
    estimators: dict
    labels: pd.DataFrame
    thresholds: dict = field(default_factory=dict)
    group_pca: dict = field(default_factory=dict)
    selection_fallback: dict = field(default_factory=dict)
    group_mask: GroupMask | None = None

    def kept(self, order: int) -> np.ndarray:
        """0-based components of ``order`` in the template."""
        rows = self.labels[(self.labels["scale"] == order) & self.labels["keep"]]
        return rows["component"].to_numpy()

    def scale_labels(self, order: int) -> pd.DataFrame:
        """The ``labels`` rows of the template of ``order``, ``index`` renumbered from 1."""
        rows = self.labels[(self.labels["scale"] == order) & self.labels["keep"]]
        table = rows.drop(columns=["index"]).reset_index(drop=True)
        table.insert(0, "index", np.arange(1, len(table) + 1))
        return table


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
    estimators, components, rows, fallback = {}, {}, [], {}
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
        selection = select_networks(order, stability=stab, edge=edge, ratio=ratio,
                                    thresholds=thr)
        fallback[order] = selection.fallback
        passed, keep = selection.passed, selection.keep
        for j in range(order):
            rows.append({"scale": order, "component": j, "label": f"N{j + 1}",
                         "stability": stab[j], "edge_fraction": edge[j],
                         "power_ratio": ratio[j], "passed": bool(passed[j]),
                         "keep": bool(keep[j])})
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
                            estimators[orders[-1]].group_pca_, fallback)


def group_mask(grids: Iterable[tuple[str, GroupMask]]) -> GroupMask:
    """GIFT's group mask: the voxels inside every run's mask, all on one grid.

    Parameters
    ----------
    grids : iterable of (str, GroupMask)
        Each run's name (for messages) and mask, read one at a time.

    Returns
    -------
    GroupMask

    Raises
    ------
    InputDataError
        If a run is on another grid than the first, or the masks share no voxel.

    Examples
    --------
    >>> import numpy as np
    >>> a = GroupMask(np.array([0, 1, 2, 5]), (2, 2, 2), np.eye(4))
    >>> b = GroupMask(np.array([1, 2, 3, 5]), (2, 2, 2), np.eye(4))
    >>> group_mask([("a", a), ("b", b)]).voxels.tolist()
    [1, 2, 5]
    """
    first = common = None
    for name, grid in grids:
        if first is None:
            first, common = (name, grid), grid.voxels
            continue
        if grid.shape != first[1].shape or not np.allclose(grid.affine, first[1].affine,
                                                            atol=1e-3):
            raise InputDataError(
                f"{name} is on grid {grid.shape}, not {first[1].shape} like {first[0]}; group "
                "ICA needs every run in the same space (e.g. fMRIPrep's MNI152NLin2009cAsym "
                "output)."
            )
        common = np.intersect1d(common, grid.voxels, assume_unique=True)
    if first is None:
        raise ValueError("'grids' must hold at least one run's mask. Got none.")
    if common.size == 0:
        raise InputDataError("The runs' brain masks share no voxel; check their space.")
    return GroupMask(common, first[1].shape, first[1].affine)


@fill_doc
def fit_multiscale_subject_pcas(
    pca_files: Sequence[str | os.PathLike],
    model_orders: Sequence[int],
    *,
    algorithm: str = "infomax",
    n_runs: int = 1,
    t_r: float | None = None,
    random_state: Any = None,
    device: Any = "auto",
) -> MultiscaleResult:
    """:func:`fit_multiscale` on the participant level's subject PCAs, inside GIFT's group mask.

    The runs' masks are read first (:func:`group_mask`); the group PCA then
    reads each run's reduced data from its file when it needs it, so memory
    does not grow with the number of runs.

    Parameters
    ----------
    pca_files : sequence of path-like
        Subject-PCA files (:func:`pipeline.ica.persistence.save_subject_pca`),
        one per run; their order is the run index of the group model.
    model_orders : sequence of int
    algorithm : {"infomax", "fastica"}, default="infomax"
    n_runs : int, default=1
        ICASSO runs per order.
    t_r : float or None
        Repetition time shared by the runs (temporal criterion skipped when None).
    %(random_state)s
    %(device)s

    Returns
    -------
    MultiscaleResult
        With ``group_mask`` set; the spatial criterion uses it.

    Raises
    ------
    InputDataError
        If a file is not a subject PCA of this msica, the runs are on different
        grids, or their masks share no voxel.
    """
    paths = [str(p) for p in pca_files]
    grid = group_mask((path, subject_pca_grid(path)) for path in paths)
    result = fit_multiscale(read_subject_pcas(paths, grid.voxels), model_orders,
                            algorithm=algorithm, n_runs=n_runs, mask=grid.mask, t_r=t_r,
                            random_state=random_state, device=device)
    result.group_mask = grid
    return result


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
