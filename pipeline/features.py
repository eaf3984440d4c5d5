"""Tidy, vectorised feature tables for the group level (one row per participant).

Static FNC edges (named ``"<node_a>__<node_b>"``, e.g. ``"s4-N1__s10-N3"``),
dFNC state metrics, network amplitude and fALFF, indexed by
``participant_id`` and joined with the covariates of ``participants.tsv``.
Tables are built from stacked arrays (upper triangles taken in one indexing
operation), never with a Python loop over edges.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline._validation import check_array_2d
from pipeline.exceptions import InputDataError
from pipeline.fnc.names import (
    NODE_PATTERN,
    edge_name,
    network_labels,
    node_feature_name,
    split_edge,
)
from pipeline.fnc.timecourse import detrend, postprocess, spectra, spectral_stats

__all__ = [
    "RunTimecourses",
    "dfnc_metrics_table",
    "edge_labels",
    "edge_scale_pairs",
    "join_participants",
    "network_covariance_table",
    "static_fnc_table",
    "timecourse_features",
    "timecourse_table",
]


def _check_ids(participant_ids: Sequence[str], n: int) -> pd.Index:
    ids = pd.Index([str(p) for p in participant_ids], name="participant_id")
    if len(ids) != n:
        raise ValueError(
            f"'participant_ids' must have one entry per participant ({n}). Got {len(ids)}."
        )
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique().tolist()
        raise ValueError(f"'participant_ids' must be unique. Duplicated: {dup[:5]}.")
    return ids


def edge_labels(node_labels: Sequence[str]) -> list[str]:
    """Names of the upper-triangle edges, in ``numpy.triu_indices(n, 1)`` order.

    Parameters
    ----------
    node_labels : sequence of str, length n_nodes

    Returns
    -------
    list of str
        ``"<a>__<b>"`` for every pair ``a < b``.

    Examples
    --------
    >>> edge_labels(["s4-N1", "s4-N2", "s10-N1"])
    ['s4-N1__s4-N2', 's4-N1__s10-N1', 's4-N2__s10-N1']
    """
    labels = [str(x) for x in node_labels]
    rows, cols = np.triu_indices(len(labels), 1)
    return [edge_name(labels[i], labels[j]) for i, j in zip(rows, cols, strict=True)]


def _scale_of(label: str) -> str:
    match = NODE_PATTERN.match(label)
    if match is None:
        raise ValueError(
            f"Node label {label!r} does not start with 's<scale>-' (e.g. 's10-N3'). "
            "Name nodes with pipeline.fnc.names.network_labels."
        )
    return match["scale"]


def edge_scale_pairs(columns: Sequence[str]) -> list[tuple[str, str]]:
    """Scale pair ``(scale_a, scale_b)`` of each edge column.

    Examples
    --------
    >>> edge_scale_pairs(["s4-N1__s10-N3"])
    [('4', '10')]
    """
    out = []
    for col in columns:
        a, b = split_edge(col)
        out.append((_scale_of(a), _scale_of(b)))
    return out


def join_participants(table: pd.DataFrame, participants: pd.DataFrame | None) -> pd.DataFrame:
    """Left-join ``participants.tsv`` covariates onto a feature table.

    Parameters
    ----------
    table : DataFrame indexed by ``participant_id``
    participants : DataFrame or None
        With a ``participant_id`` column (or index). A covariate column named
        like a feature column raises.

    Returns
    -------
    DataFrame
        Covariate columns first, then the features; same row order as ``table``.

    Raises
    ------
    ValueError
        If ``participants`` has no ``participant_id``, duplicated ids, or a
        column that clashes with a feature name.
    """
    if participants is None:
        return table
    part = participants.copy()
    if "participant_id" in part.columns:
        part = part.set_index("participant_id")
    elif part.index.name != "participant_id":
        raise ValueError(
            "'participants' must have a 'participant_id' column or index (participants.tsv)."
        )
    part.index = part.index.astype(str)
    if part.index.has_duplicates:
        raise ValueError("'participants' has duplicated participant_id values.")
    clash = sorted(set(part.columns) & set(table.columns))
    if clash:
        raise ValueError(f"participants.tsv columns clash with feature names: {clash[:5]}.")
    missing = table.index.difference(part.index)
    if len(missing):
        warnings.warn(
            f"{len(missing)} participant(s) have features but no row in participants.tsv "
            f"(e.g. {list(missing[:3])}); their covariates are NaN. Check participant labels.",
            UserWarning,
            stacklevel=2,
        )
    covars = part.reindex(table.index)
    return pd.concat([covars, table], axis=1)


def static_fnc_table(
    fnc: Any,
    node_labels: Sequence[str],
    participant_ids: Sequence[str],
    *,
    scale_pairs: Sequence[tuple[Any, Any]] | None = None,
    participants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per participant, one column per static FNC edge.

    Parameters
    ----------
    fnc : array-like of shape (n_participants, n_nodes, n_nodes)
        Multi-scale FNC (e.g. :class:`pipeline.fnc.static.StaticFNC` output).
    node_labels : sequence of str, length n_nodes
        ``"s<scale>-<label>"`` names (``StaticFNC.labels_``).
    participant_ids : sequence of str
    scale_pairs : sequence of (scale_a, scale_b), optional
        Keep only edges between these scales (unordered; ``(4, 4)`` is within
        scale 4, ``(4, 10)`` across). All edges when None.
    participants : DataFrame, optional
        participants.tsv; joined with :func:`join_participants`.

    Returns
    -------
    DataFrame of shape (n_participants, n_covariates + n_edges)
        Index ``participant_id``; edge columns ``"<a>__<b>"``.

    Raises
    ------
    ValueError
        For a non-square or mis-sized ``fnc`` or mismatched labels/ids.

    Examples
    --------
    >>> import numpy as np
    >>> fnc = np.zeros((2, 3, 3))
    >>> static_fnc_table(fnc, ["s2-N1", "s2-N2", "s3-N1"], ["sub-01", "sub-02"]).shape
    (2, 3)
    """
    arr = np.asarray(fnc, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ValueError(
            "'fnc' must have shape (n_participants, n_nodes, n_nodes). "
            f"Got {np.asarray(fnc).shape}."
        )
    labels = [str(x) for x in node_labels]
    if len(labels) != arr.shape[1]:
        raise ValueError(
            f"'node_labels' must have one entry per node ({arr.shape[1]}). Got {len(labels)}."
        )
    ids = _check_ids(participant_ids, arr.shape[0])
    iu = np.triu_indices(arr.shape[1], 1)
    values = arr[:, iu[0], iu[1]]
    columns = np.asarray(edge_labels(labels), dtype=object)
    if scale_pairs is not None:
        scales = np.asarray([_scale_of(lab) for lab in labels], dtype=object)
        wanted = {frozenset((str(a), str(b))) for a, b in scale_pairs}
        keep = np.fromiter(
            (frozenset((a, b)) in wanted for a, b in zip(scales[iu[0]], scales[iu[1]])),
            dtype=bool,
            count=iu[0].size,
        )
        if not keep.any():
            raise ValueError(
                f"No edge matches scale_pairs={list(scale_pairs)}; scales are "
                f"{sorted(set(scales), key=str)}."
            )
        values, columns = values[:, keep], columns[keep]
    table = pd.DataFrame(values, index=ids, columns=pd.Index(columns.tolist()))
    return join_participants(table, participants)


def dfnc_metrics_table(
    metrics: Mapping[str, Any],
    participant_ids: Sequence[str],
    *,
    participants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """dFNC state metrics as columns (``DynamicFNC.metrics_`` layout).

    Parameters
    ----------
    metrics : mapping
        ``fraction`` (n, k), ``mean_dwell`` (n, k), ``n_transitions`` (n,),
        ``transition_matrix`` (n, k, k).
    participant_ids : sequence of str
    participants : DataFrame, optional

    Returns
    -------
    DataFrame
        Columns ``dfnc_fraction_state<i>``, ``dfnc_dwell_state<i>``,
        ``dfnc_n_transitions`` and ``dfnc_tm_state<i>_state<j>`` (1-based states).
    """
    frac = np.atleast_2d(np.asarray(metrics["fraction"], dtype=float))
    dwell = np.atleast_2d(np.asarray(metrics["mean_dwell"], dtype=float))
    ntr = np.asarray(metrics["n_transitions"], dtype=float).reshape(-1)
    tm = np.asarray(metrics["transition_matrix"], dtype=float)
    if tm.ndim == 2:
        tm = tm[None]
    n, k = frac.shape
    ids = _check_ids(participant_ids, n)
    if dwell.shape != (n, k) or ntr.shape != (n,) or tm.shape != (n, k, k):
        raise ValueError(
            "Inconsistent metric shapes: fraction "
            f"{frac.shape}, mean_dwell {dwell.shape}, n_transitions {ntr.shape}, "
            f"transition_matrix {tm.shape}."
        )
    states = [f"state{i + 1}" for i in range(k)]
    cols = (
        [f"dfnc_fraction_{s}" for s in states]
        + [f"dfnc_dwell_{s}" for s in states]
        + ["dfnc_n_transitions"]
        + [f"dfnc_tm_{a}_{b}" for a in states for b in states]
    )
    values = np.hstack([frac, dwell, ntr[:, None], tm.reshape(n, k * k)])
    return join_participants(pd.DataFrame(values, index=ids, columns=cols), participants)


def timecourse_table(
    timecourses: Any,
    node_labels: Sequence[str],
    participant_ids: Sequence[str],
    t_r: float,
    *,
    freq_limits: tuple[float, float] = (0.1, 0.15),
    participants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Network amplitude, fALFF and spectral dynamic range per participant.

    Parameters
    ----------
    timecourses : array-like of shape (n_participants, n_volumes, n_nodes) or list
        Detrended time courses (GIFT computes spectra before despiking and
        filtering). A list may mix run lengths.
    node_labels : sequence of str, length n_nodes
    participant_ids : sequence of str
    t_r : float
    freq_limits : (float, float), default=(0.1, 0.15)
        Bands of GIFT's fALFF ratio (see :func:`pipeline.fnc.timecourse.spectral_stats`).
    participants : DataFrame, optional

    Returns
    -------
    DataFrame
        Columns ``amplitude_<node>`` (standard deviation, ``ddof=1``),
        ``falff_<node>`` and ``dynamic_range_<node>``
        (:func:`pipeline.fnc.names.node_feature_name`).
    """
    if isinstance(timecourses, np.ndarray) and timecourses.ndim == 3:
        groups = [np.asarray(timecourses, dtype=np.float64)]
    else:
        groups = [
            check_array_2d(f"timecourses[{i}]", x, min_rows=4)[None]
            for i, x in enumerate(timecourses)
        ]
    n_sub = sum(g.shape[0] for g in groups)
    n_nodes = groups[0].shape[2]
    labels = [str(x) for x in node_labels]
    if len(labels) != n_nodes or any(g.shape[2] != n_nodes for g in groups):
        raise ValueError(
            f"Every participant needs {len(labels)} networks (one per node label)."
        )
    ids = _check_ids(participant_ids, n_sub)
    amp, falff, dyn = [], [], []
    for g in groups:
        if not np.all(np.isfinite(g)):
            raise ValueError("'timecourses' contains NaN or infinite values.")
        amp.append(g.std(axis=1, ddof=1))
        # all participants of one length in a single spectra call (networks stacked)
        flat = g.transpose(1, 0, 2).reshape(g.shape[1], -1)
        spec, freqs = spectra(flat, t_r)
        d, f = spectral_stats(spec, freqs, freq_limits)
        dyn.append(d.reshape(g.shape[0], n_nodes))
        falff.append(f.reshape(g.shape[0], n_nodes))
    values = np.hstack([np.vstack(amp), np.vstack(falff), np.vstack(dyn)])
    cols = [node_feature_name(feature, lab)
            for feature in ("amplitude", "falff", "dynamic_range") for lab in labels]
    return join_participants(pd.DataFrame(values, index=ids, columns=cols), participants)


@dataclass(frozen=True)
class RunTimecourses:
    """One run's network time courses at every scale, with how the participant level treated them.

    Attributes
    ----------
    participant_id : str
        ``sub-<label>`` of the run.
    t_r : float
        Repetition time (s).
    timecourses : mapping of int to DataFrame of shape (n_volumes, n_networks)
        Per scale (model order), the time courses with the networks' labels as columns.
    detrend_order : int, default=3
        GIFT detrending order of the run's FNC post-processing.
    despike : bool, default=True
    lowpass_hz : float, default=0.15
        The rest of that post-processing (see :func:`pipeline.fnc.timecourse.postprocess`).
    source : str, default=""
        What to name in messages (e.g. the run's first file).
    """

    participant_id: str
    t_r: float
    timecourses: Mapping[int, pd.DataFrame]
    detrend_order: int = 3
    despike: bool = True
    lowpass_hz: float = 0.15
    source: str = ""

    def node_labels(self) -> list[str]:
        """Multi-scale node names of the columns, coarse scale first (``s<scale>-<label>``)."""
        return [label for scale in sorted(self.timecourses) for label in network_labels(
            scale, self.timecourses[scale].shape[1], list(self.timecourses[scale].columns))]

    def postprocessed(self) -> np.ndarray:
        """The time courses as the participant level's FNC used them, scales side by side.

        Returns
        -------
        ndarray of shape (n_volumes, n_nodes)
            Every scale (coarse first) detrended, despiked and low-passed with this run's
            own settings (:func:`pipeline.fnc.timecourse.postprocess`).
        """
        return np.hstack([postprocess(self.timecourses[scale].to_numpy(dtype=float), self.t_r,
                                      detrend_order=self.detrend_order, despike=self.despike,
                                      lowpass_hz=self.lowpass_hz)
                          for scale in sorted(self.timecourses)])


def _same_networks(run: RunTimecourses, labels: list[str] | None) -> list[str]:
    """``run``'s node labels, checked against those of the first run (``None`` for the first).

    Raises
    ------
    InputDataError
        If ``run`` has other networks than the first run.
    """
    run_labels = run.node_labels()
    if labels is not None and run_labels != labels:
        raise InputDataError(
            f"{run.source or run.participant_id} has other networks than the first run; "
            "rerun the participant level with the same templates for everyone."
        )
    return run_labels


def network_covariance_table(runs: Iterable[RunTimecourses]) -> pd.DataFrame:
    """Covariance table of the participants from their runs' post-processed time courses.

    Each run is post-processed as the participant level did before its FNC
    (:meth:`RunTimecourses.postprocessed`) and reduced to a Ledoit-Wolf covariance,
    runs of a participant averaged (:func:`pipeline.classify.connectivity.network_covariances`).

    Parameters
    ----------
    runs : iterable of RunTimecourses

    Returns
    -------
    DataFrame
        One row per participant (sorted), one column per covariance entry.

    Raises
    ------
    InputDataError, ValueError
        As :func:`timecourse_features`: runs with other networks than the first, no run.
    """
    from pipeline.classify.connectivity import network_covariances

    labels, items = None, []
    for run in runs:
        labels = _same_networks(run, labels)
        items.append((run.participant_id, run.postprocessed()))
    if labels is None:
        raise ValueError("'runs' must hold at least one run's time courses. Got none.")
    return network_covariances(items, labels)


def timecourse_features(
    runs: Iterable[RunTimecourses],
    *,
    freq_limits: tuple[float, float] = (0.1, 0.15),
    participants: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Network amplitude, fALFF and spectral dynamic range of every participant, runs averaged.

    Each run's time courses (every scale, coarse first) are detrended with its
    own order, as at the participant level (GIFT computes spectra before
    despiking and filtering); runs are summarised with :func:`timecourse_table`
    in groups of equal repetition time (the spectra's frequencies depend on
    it), and the runs of one participant are averaged.

    Parameters
    ----------
    runs : iterable of RunTimecourses
        Read one at a time (a generator keeps one run's raw tables in memory).
    freq_limits : (float, float), default=(0.1, 0.15)
        Bands of GIFT's fALFF ratio.
    participants : DataFrame, optional
        participants.tsv; joined with :func:`join_participants`.

    Returns
    -------
    table : DataFrame
        Index ``participant_id`` (sorted); covariates, then
        ``amplitude_<node>``, ``falff_<node>`` and ``dynamic_range_<node>``.
    labels : list of str
        Node labels (``s<scale>-<label>``).

    Raises
    ------
    InputDataError
        If the runs do not all have the same networks.
    ValueError
        If there is no run.
    """
    labels = None
    by_t_r: dict[float, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for run in runs:
        labels = _same_networks(run, labels)
        tcs = np.hstack([detrend(run.timecourses[scale].to_numpy(dtype=float),
                                 order=run.detrend_order) for scale in sorted(run.timecourses)])
        by_t_r[run.t_r].append((run.participant_id, tcs))
    if labels is None:
        raise ValueError("'runs' must hold at least one run's time courses. Got none.")
    per_t_r = []
    for t_r, items in by_t_r.items():
        table = timecourse_table([tcs for _, tcs in items], labels,
                                 [f"run{i}" for i in range(len(items))], t_r,
                                 freq_limits=freq_limits)
        table.index = pd.Index([pid for pid, _ in items], name="participant_id")
        per_t_r.append(table)
    table = pd.concat(per_t_r).groupby(level=0, sort=True).mean()
    table.index.name = "participant_id"
    return join_participants(table, participants), labels
