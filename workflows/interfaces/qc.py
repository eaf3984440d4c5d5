"""Nipype interface that gathers per-run QC tables into one group table."""

from __future__ import annotations

import pandas as pd
from nipype.interfaces.base import File, InputMultiObject, TraitedSpec, traits

from workflows.interfaces.base import ParticipantsInputSpec, PipelineInterface, given

__all__ = ["GatherQC"]


class _GatherQCInputSpec(ParticipantsInputSpec):
    qc_files = InputMultiObject(File(exists=True), mandatory=True, desc="per-run QC TSVs")


class _GatherQCOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="group QC table (one row per run)")
    n_runs = traits.Int(desc="number of runs in the table")


class GatherQC(PipelineInterface):
    """Concatenate per-run QC rows, add the run's BIDS entities and participants.tsv columns."""

    input_spec = _GatherQCInputSpec
    output_spec = _GatherQCOutputSpec

    def _run_interface(self, runtime):
        from workflows.bids.naming import source_entities
        from workflows.bids.participants import read_participants

        rows = []
        for qc_file in self.inputs.qc_files:
            table = pd.read_csv(qc_file, sep="\t", na_values="n/a")
            entities = source_entities(qc_file)
            for key in ("space", "res"):
                entities.pop(key, None)
            table.insert(0, "participant_id", f"sub-{entities.pop('subject')}")
            for position, (key, value) in enumerate(entities.items(), start=1):
                table.insert(position, key, value)
            rows.append(table)
        group = pd.concat(rows, ignore_index=True)
        participants_file = given(self.inputs.participants_file)
        if participants_file is not None:
            group = group.merge(read_participants(participants_file),
                                on="participant_id", how="left")
        group = group.sort_values(list(group.columns[:1])).reset_index(drop=True)
        self._write_table(runtime, group, "group_qc.tsv", "out_file")
        self._results["n_runs"] = len(group)
        return runtime
