"""Group-level interface: train msica's MLP on the FNC feature table and record gradient spectra."""

from __future__ import annotations

import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, traits

from workflows.interfaces.base import MetaOutputSpec, PipelineInterface

__all__ = ["IntrospectTraining"]


class _IntrospectTrainingInputSpec(BaseInterfaceInputSpec):
    features_file = File(exists=True, mandatory=True, desc="group FNC feature table (TSV)")
    participants_file = File(exists=True, mandatory=True, desc="participants.tsv")
    target = traits.Str(mandatory=True, desc="participants.tsv column the MLP is trained on")
    group_column = traits.Str("diagnosis", usedefault=True,
                              desc="participants.tsv column of the per-group spectra")
    hidden = traits.List(traits.Int, [64], usedefault=True, desc="hidden layer widths")
    epochs = traits.Int(20, usedefault=True, desc="training epochs")
    batch_size = traits.Int(32, usedefault=True, desc="mini-batch size")
    lr = traits.Float(1e-3, usedefault=True, desc="Adam learning rate")
    record_every = traits.Int(1, usedefault=True, desc="record every n-th optimisation step")
    random_state = traits.Int(0, usedefault=True, desc="seed of the weights and batch order")
    device = traits.Str("auto", usedefault=True,
                        desc="torch device (pipeline._validation.resolve_device)")
    # Nipype's Node.is_gpu_node() reads ``inputs.use_gpu``: MultiProc then counts
    # the node against ``n_gpu_procs``. Set it with pipeline._validation.uses_cuda(device).
    use_gpu = traits.Bool(False, usedefault=True, desc="schedule the node on a GPU slot")


class _IntrospectTrainingOutputSpec(MetaOutputSpec):
    spectra_file = File(exists=True, desc="singular values per step, layer, parameter, group")
    summary_file = File(exists=True, desc="ranks, norms and bounds per step, layer, group")
    figure_file = File(exists=True, desc="effective-rank trajectories (SVG)")


class IntrospectTraining(PipelineInterface):
    """Train msica's MLP on one target with spectra recorded (:func:`~pipeline.introspect.target.introspect_target`)."""

    input_spec = _IntrospectTrainingInputSpec
    output_spec = _IntrospectTrainingOutputSpec

    def _run_interface(self, runtime):
        from pipeline.introspect import plot_spectrum_trajectories
        from pipeline.introspect.target import introspect_target
        from workflows.bids.participants import read_participants

        inputs = self.inputs
        features = pd.read_csv(inputs.features_file, sep="\t", index_col=0, na_values="n/a")
        run = introspect_target(
            features, read_participants(inputs.participants_file), inputs.target,
            group_column=inputs.group_column, hidden=inputs.hidden, epochs=inputs.epochs,
            batch_size=inputs.batch_size, lr=inputs.lr, record_every=inputs.record_every,
            device=inputs.device, random_state=inputs.random_state)
        self._write_table(runtime, run.result.spectra, "spectra.tsv", "spectra_file")
        self._write_table(runtime, run.result.summary, "summary.tsv", "summary_file")
        self._write_figure(runtime, plot_spectrum_trajectories(run.result.summary),
                           "spectra.svg", "figure_file")
        self._results["meta"] = run.metadata
        return runtime
