"""Group-level interfaces: FNC feature tables and dFNC states from participant derivatives."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from nipype.interfaces.base import File, InputMultiObject, traits

from workflows.bids.naming import participant_of
from workflows.interfaces.base import (
    MetaOutputSpec,
    ParticipantsInputSpec,
    PipelineInterface,
    given,
)

if TYPE_CHECKING:
    from pipeline.features import RunTimecourses

__all__ = [
    "DFNCStates",
    "FNCFeatureTable",
    "TimecourseFeatureTable",
    "read_dfnc_windows",
    "read_fnc_features",
    "read_run_timecourses",
    "read_timecourse_features",
]


def _read_participants(path) -> pd.DataFrame | None:
    from workflows.bids.participants import read_participants

    return read_participants(path) if path else None


def read_fnc_features(relmat_files, participants_file=None) -> tuple[pd.DataFrame, list[str]]:
    """Read participants' multi-scale FNC matrices into one edge table.

    Runs of one participant are averaged in Fisher z.

    Parameters
    ----------
    relmat_files : list of str
        ``*_desc-multiscale_relmat.tsv`` files written by the participant level.
    participants_file : str, optional
        participants.tsv whose columns are joined to the table.

    Returns
    -------
    table : pandas.DataFrame
        Index participant_id; covariates, then one column per edge (``"a__b"``).
    labels : list of str
        Node labels of the matrices.

    Raises
    ------
    InputDataError
        If the matrices do not all have the same nodes and measure (their
        sidecars' ``Measure``).
    """
    from pipeline.exceptions import InputDataError
    from pipeline.features import static_fnc_table

    by_participant: dict[str, list[np.ndarray]] = defaultdict(list)
    labels = None
    first_measure: tuple[str, str] | None = None  # (measure, file) of the first sidecar saying it
    for path in relmat_files:
        frame = pd.read_csv(path, sep="\t", index_col=0)
        if labels is None:
            labels = list(frame.columns)
        elif list(frame.columns) != labels:
            raise InputDataError(
                f"{path} has other networks than the first FNC matrix; rerun the "
                "participant level with the same templates for everyone."
            )
        measure = _measure_of(path)
        if measure is not None:
            first_measure = first_measure or (measure, path)
            if measure != first_measure[0]:
                raise InputDataError(
                    f"{path} holds {measure}, {Path(first_measure[1]).name} "
                    f"{first_measure[0]}; rerun the participant level with one --fnc-measure "
                    "for everyone."
                )
        by_participant[participant_of(path)].append(frame.to_numpy())
    ids = sorted(by_participant)
    fnc = np.stack([np.mean(by_participant[pid], axis=0) for pid in ids])
    table = static_fnc_table(fnc, labels, ids, participants=_read_participants(participants_file))
    return table, labels


class _FNCFeatureTableInputSpec(ParticipantsInputSpec):
    relmat_files = InputMultiObject(File(exists=True), mandatory=True,
                                    desc="participants' multi-scale FNC matrices (TSV)")


class _FeatureTableOutputSpec(MetaOutputSpec):
    out_file = File(exists=True, desc="the feature table: one row per participant (TSV)")


class FNCFeatureTable(PipelineInterface):
    """Stack static FNC edges of all participants (runs averaged in Fisher z)."""

    input_spec = _FNCFeatureTableInputSpec
    output_spec = _FeatureTableOutputSpec

    def _run_interface(self, runtime):
        table, labels = read_fnc_features(self.inputs.relmat_files,
                                          given(self.inputs.participants_file))
        ids = list(table.index)
        self._write_table(runtime, table, "fnc_features.tsv", "out_file", index=True)
        self._results["meta"] = {
            "Description": "Static FNC edges (Fisher z) within and across scales; runs of a "
                           "participant averaged.",
            "NumberOfParticipants": len(ids),
            "NumberOfEdges": int(len(labels) * (len(labels) - 1) / 2),
            "NodeLabels": labels,
        }
        return runtime


def _measure_of(relmat_file: str) -> str | None:
    """The FNC measure of a run, from its sidecar (None for a sidecar that does not say)."""
    from workflows.bids.provenance import read_sidecar

    return read_sidecar(relmat_file).get("Measure")


def _postprocessing_of(relmat_file: str) -> dict:
    """Repetition time and post-processing of a run, from its FNC sidecar (written by ComputeFNC)."""
    from pipeline.exceptions import InputDataError
    from workflows.bids.provenance import read_sidecar

    meta = read_sidecar(relmat_file, required=True)
    try:
        post = meta.get("PostProcessing", {})
        return {"t_r": float(meta["RepetitionTime"]),
                "detrend_order": int(post.get("DetrendOrder", 3)),
                "despike": bool(post.get("Despike", True)),
                "lowpass_hz": float(post.get("LowPassHz", 0.15))}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputDataError(
            f"{relmat_file}: its sidecar has no valid RepetitionTime or PostProcessing "
            f"({exc!r}); rerun the participant level for this run."
        ) from exc


def read_run_timecourses(timeseries_files, relmat_files) -> Iterator[RunTimecourses]:
    """The participant level's network time courses, one run at a time (runs sorted by name).

    Parameters
    ----------
    timeseries_files : list of str
        ``*_scale-<n>_desc-ica_timeseries.tsv`` files of the participant level.
    relmat_files : list of str
        The runs' ``*_desc-multiscale_relmat.tsv``; their sidecars give the
        repetition time and the post-processing.

    Yields
    ------
    pipeline.features.RunTimecourses

    Raises
    ------
    InputDataError
        If a run has no FNC matrix or its sidecar no RepetitionTime.
    """
    from pipeline.exceptions import InputDataError
    from pipeline.features import RunTimecourses
    from workflows.bids.naming import scale_of, source_entities

    def run_key(path: str) -> tuple:
        return tuple(sorted(source_entities(path).items()))

    runs: dict[tuple, dict[int, str]] = defaultdict(dict)
    for path in timeseries_files:
        runs[run_key(path)][scale_of(path)] = path
    relmat_of = {run_key(path): path for path in relmat_files}
    for key in sorted(runs):
        files = runs[key]
        first = files[min(files)]
        if key not in relmat_of:
            raise InputDataError(
                f"{sorted(files.values())[0]} has no multi-scale FNC matrix of the same run; "
                "rerun the participant level for this run."
            )
        yield RunTimecourses(
            participant_id=participant_of(first), source=first,
            timecourses={scale: pd.read_csv(files[scale], sep="\t") for scale in sorted(files)},
            **_postprocessing_of(relmat_of[key]))


def read_timecourse_features(
    timeseries_files, relmat_files, participants_file=None
) -> tuple[pd.DataFrame, list[str]]:
    """Network amplitude, fALFF and spectral dynamic range of every participant.

    The runs of :func:`read_run_timecourses` summarised by
    :func:`pipeline.features.timecourse_features` (detrended as at the
    participant level, grouped by repetition time, runs of a participant
    averaged), with participants.tsv joined.

    Returns
    -------
    table : pandas.DataFrame
        Index participant_id; covariates, then ``amplitude_<node>``,
        ``falff_<node>`` and ``dynamic_range_<node>`` columns.
    labels : list of str
        Node labels.
    """
    from pipeline.features import timecourse_features

    return timecourse_features(read_run_timecourses(timeseries_files, relmat_files),
                               participants=_read_participants(participants_file))


class _TimecourseFeatureTableInputSpec(ParticipantsInputSpec):
    timeseries_files = InputMultiObject(File(exists=True), mandatory=True,
                                        desc="participants' network time courses, one TSV per "
                                             "scale and run")
    relmat_files = InputMultiObject(File(exists=True), mandatory=True,
                                    desc="the runs' multi-scale FNC (sidecars give TR, detrending)")


class TimecourseFeatureTable(PipelineInterface):
    """Network amplitude, fALFF and spectral dynamic range of all participants (runs averaged)."""

    input_spec = _TimecourseFeatureTableInputSpec
    output_spec = _FeatureTableOutputSpec

    def _run_interface(self, runtime):
        table, labels = read_timecourse_features(
            self.inputs.timeseries_files, self.inputs.relmat_files,
            given(self.inputs.participants_file))
        self._write_table(runtime, table, "timecourse_features.tsv", "out_file", index=True)
        self._results["meta"] = {
            "Description": "Per network: amplitude (standard deviation), fALFF and spectral "
                           "dynamic range of the detrended time courses (GIFT); runs of a "
                           "participant averaged.",
            "fALFF": "area of the spectrum below 0.1 Hz over the area above 0.15 Hz "
                     "(GIFT icatb_get_spec_stats)",
            "NumberOfParticipants": len(table),
            "NodeLabels": labels,
        }
        return runtime


class _DFNCStatesInputSpec(ParticipantsInputSpec):
    dfnc_files = InputMultiObject(File(exists=True), mandatory=True,
                                  desc="participants' sliding-window FNC (TSV)")
    n_states = traits.Int(desc="number of states; chosen by the elbow criterion when undefined")
    max_states = traits.Int(8, usedefault=True,
                            desc="largest number of states tried (fewer for few windows: "
                                 "DynamicFNC's min_windows_per_state)")
    random_state = traits.Int(0, usedefault=True, desc="seed of k-means")


class _DFNCStatesOutputSpec(MetaOutputSpec):
    states_file = File(exists=True, desc="state centroids (states x pairs)")
    metrics_file = File(exists=True, desc="state metrics per participant")


def read_dfnc_windows(dfnc_files) -> tuple[np.ndarray | list[np.ndarray], list[str]]:
    """Every run's sliding-window FNC (``desc-dfnc_timeseries.tsv``), read once into memory.

    Runs with the same number of windows are read into one float64 array of shape
    ``(n_runs, n_windows, n_pairs)``, which :class:`pipeline.fnc.states.DynamicFNC`
    pools without a copy (the windows are a group level's largest table: they
    grow with the number of participants); otherwise a list of arrays.

    Returns
    -------
    windows : ndarray or list of ndarray
    columns : list of str
        The edge names of the first run.
    """
    first = pd.read_csv(dfnc_files[0], sep="\t")
    columns = list(first.columns)
    windows = np.empty((len(dfnc_files), *first.shape))
    runs = []
    for index, path in enumerate(dfnc_files):
        values = (first if index == 0 else pd.read_csv(path, sep="\t")).to_numpy(np.float64)
        if runs or values.shape != windows.shape[1:]:  # runs of other lengths: a list
            runs = runs or list(windows[:index])
            runs.append(values)
        else:
            windows[index] = values
    return (runs or windows), columns


class DFNCStates(PipelineInterface):
    """Cluster all participants' dFNC windows into states (GIFT's exemplar L1 k-means)."""

    input_spec = _DFNCStatesInputSpec
    output_spec = _DFNCStatesOutputSpec

    def _run_interface(self, runtime):
        from pipeline.features import dfnc_metrics_table
        from pipeline.fnc.states import DynamicFNC

        windows, columns = read_dfnc_windows(self.inputs.dfnc_files)
        ids = [participant_of(path) for path in self.inputs.dfnc_files]
        n_states = given(self.inputs.n_states)
        est = DynamicFNC(n_states=n_states, max_states=self.inputs.max_states,
                         precomputed=True, random_state=self.inputs.random_state)
        est.fit(windows)
        centers = pd.DataFrame(est.cluster_centers_, columns=columns)
        centers.insert(0, "state", [f"state{i + 1}" for i in range(est.n_states_)])
        self._write_table(runtime, centers, "states.tsv", "states_file")
        participants = _read_participants(given(self.inputs.participants_file))
        metrics = dfnc_metrics_table(est.metrics_, ids, participants=participants)
        self._write_table(runtime, metrics, "dfnc_metrics.tsv", "metrics_file", index=True)
        self._results.update(
            meta={
                "Method": "L1 (city-block) k-means on subject exemplar windows, then on all "
                          "windows (GIFT icatb_post_process_dfnc)",
                "NumberOfStates": int(est.n_states_),
                "StatesChosenBy": "given" if n_states else "elbow",
                **({} if n_states else {
                    "MaxStates": self.inputs.max_states,
                    "MinWindowsPerState": est.min_windows_per_state,
                    "CandidateStates": sorted(int(k) for k in est.selection_scores_)}),
                "RandomSeed": self.inputs.random_state,
                "NumberOfParticipants": len(ids),
            },
        )
        return runtime
