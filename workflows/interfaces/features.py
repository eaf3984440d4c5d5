"""Group-level interfaces: FNC feature tables and dFNC states from participant derivatives."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = ["DFNCStates", "FNCFeatureTable", "participant_of", "read_fnc_features"]


def participant_of(path: str) -> str:
    """Return ``sub-<label>`` of a derivative file.

    Examples
    --------
    >>> participant_of("/out/sub-07/func/sub-07_task-rest_desc-multiscale_relmat.tsv")
    'sub-07'
    """
    from workflows.derivatives import source_entities

    return f"sub-{source_entities(path)['subject']}"


def _read_participants(path) -> pd.DataFrame | None:
    if not path:
        return None
    return pd.read_csv(path, sep="\t", dtype=str, na_values="n/a", keep_default_na=False)


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
        If the matrices do not all have the same nodes.
    """
    from pipeline.exceptions import InputDataError
    from pipeline.features import static_fnc_table

    by_participant: dict[str, list[np.ndarray]] = defaultdict(list)
    labels = None
    for path in relmat_files:
        frame = pd.read_csv(path, sep="\t", index_col=0)
        if labels is None:
            labels = list(frame.columns)
        elif list(frame.columns) != labels:
            raise InputDataError(
                f"{path} has other networks than the first FNC matrix; rerun the "
                "participant level with the same templates for everyone."
            )
        by_participant[participant_of(path)].append(frame.to_numpy())
    ids = sorted(by_participant)
    fnc = np.stack([np.mean(by_participant[pid], axis=0) for pid in ids])
    table = static_fnc_table(fnc, labels, ids, participants=_read_participants(participants_file))
    return table, labels


class _FNCFeatureTableInputSpec(BaseInterfaceInputSpec):
    relmat_files = InputMultiObject(File(exists=True), mandatory=True,
                                    desc="participants' multi-scale FNC matrices (TSV)")
    participants_file = File(exists=True, desc="participants.tsv to join")


class _FNCFeatureTableOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="one row per participant, one column per edge")
    meta = traits.Dict(desc="sidecar content")


class FNCFeatureTable(SimpleInterface):
    """Stack static FNC edges of all participants (runs averaged in Fisher z)."""

    input_spec = _FNCFeatureTableInputSpec
    output_spec = _FNCFeatureTableOutputSpec

    def _run_interface(self, runtime):
        participants = (self.inputs.participants_file
                        if isdefined(self.inputs.participants_file) else None)
        table, labels = read_fnc_features(self.inputs.relmat_files, participants)
        ids = list(table.index)
        out_file = Path(runtime.cwd) / "fnc_features.tsv"
        table.to_csv(out_file, sep="\t", na_rep="n/a")
        self._results["out_file"] = str(out_file)
        self._results["meta"] = {
            "Description": "Static FNC edges (Fisher z) within and across scales; runs of a "
                           "participant averaged.",
            "NumberOfParticipants": len(ids),
            "NumberOfEdges": int(len(labels) * (len(labels) - 1) / 2),
            "NodeLabels": labels,
        }
        return runtime


class _DFNCStatesInputSpec(BaseInterfaceInputSpec):
    dfnc_files = InputMultiObject(File(exists=True), mandatory=True,
                                  desc="participants' sliding-window FNC (TSV)")
    participants_file = File(exists=True, desc="participants.tsv to join")
    n_states = traits.Int(desc="number of states; chosen by the elbow criterion when undefined")
    max_states = traits.Int(8, usedefault=True, desc="largest number of states tried")
    random_state = traits.Int(0, usedefault=True, desc="seed of k-means")


class _DFNCStatesOutputSpec(TraitedSpec):
    states_file = File(exists=True, desc="state centroids (states x pairs)")
    metrics_file = File(exists=True, desc="state metrics per participant")
    meta = traits.Dict(desc="sidecar content")


class DFNCStates(SimpleInterface):
    """Cluster all participants' dFNC windows into states (GIFT's exemplar L1 k-means)."""

    input_spec = _DFNCStatesInputSpec
    output_spec = _DFNCStatesOutputSpec

    def _run_interface(self, runtime):
        from pipeline.features import dfnc_metrics_table
        from pipeline.fnc.states import DynamicFNC

        frames = [pd.read_csv(path, sep="\t") for path in self.inputs.dfnc_files]
        ids = [participant_of(path) for path in self.inputs.dfnc_files]
        n_states = self.inputs.n_states if isdefined(self.inputs.n_states) else None
        max_states = min(self.inputs.max_states, max(3, sum(len(f) for f in frames) // 20))
        est = DynamicFNC(n_states=n_states, max_states=max_states, precomputed=True,
                         random_state=self.inputs.random_state)
        est.fit([frame.to_numpy() for frame in frames])
        cwd = Path(runtime.cwd)
        states_file = cwd / "states.tsv"
        centers = pd.DataFrame(est.cluster_centers_, columns=frames[0].columns)
        centers.insert(0, "state", [f"state{i + 1}" for i in range(est.n_states_)])
        centers.to_csv(states_file, sep="\t", index=False)
        participants = _read_participants(
            self.inputs.participants_file if isdefined(self.inputs.participants_file) else None)
        metrics = dfnc_metrics_table(est.metrics_, ids, participants=participants)
        metrics_file = cwd / "dfnc_metrics.tsv"
        metrics.to_csv(metrics_file, sep="\t", na_rep="n/a")
        self._results.update(
            states_file=str(states_file),
            metrics_file=str(metrics_file),
            meta={
                "Method": "L1 (city-block) k-means on subject exemplar windows, then on all "
                          "windows (GIFT icatb_post_process_dfnc)",
                "NumberOfStates": int(est.n_states_),
                "StatesChosenBy": "given" if n_states else "elbow",
                "RandomSeed": self.inputs.random_state,
                "NumberOfParticipants": len(ids),
            },
        )
        return runtime
