"""Group-level interface: train msica's MLP on the FNC feature table and record gradient spectra."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

__all__ = ["IntrospectTraining"]

LOGGER = logging.getLogger("msica.workflows")


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
    # Nipype's Node.is_gpu_node() reads ``inputs.use_gpu``: MultiProc then counts
    # the node against ``n_gpu_procs``.
    use_gpu = traits.Bool(False, usedefault=True,
                          desc="train on CUDA when available (CPU otherwise, logged)")


class _IntrospectTrainingOutputSpec(TraitedSpec):
    spectra_file = File(exists=True, desc="singular values per step, layer, parameter, group")
    summary_file = File(exists=True, desc="ranks, norms and bounds per step, layer, group")
    figure_file = File(exists=True, desc="effective-rank trajectories (SVG)")
    meta = traits.Dict(desc="sidecar content")


def _standardize(features: pd.DataFrame) -> np.ndarray:
    """Z-score each column (population std); constant columns are centred only (logged)."""
    X = features.to_numpy(dtype=np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    constant = ~(std > 0)
    if constant.any():
        LOGGER.info("introspect: %d constant feature column(s) centred but not scaled: %s",
                    int(constant.sum()), list(features.columns[constant])[:5])
    return (X - mean) / np.where(constant, 1.0, std)


class IntrospectTraining(SimpleInterface):
    """Train :class:`~pipeline.introspect.models.FNCMLP` on one target with spectra recorded.

    Edge columns (names containing ``"__"``) of the feature table are z-scored
    over the participants where the target is defined (medication and
    response: patients only, see :func:`pipeline.classify.targets.derive_target`)
    and fed to :func:`~pipeline.introspect.training.train_with_introspection`,
    with the ``group_column`` of participants.tsv as the groups of the
    per-group spectra. Training is on everyone (no held-out data): the
    spectra describe the optimisation, not generalisation.
    """

    input_spec = _IntrospectTrainingInputSpec
    output_spec = _IntrospectTrainingOutputSpec

    def _run_interface(self, runtime):
        import torch

        from pipeline.classify.targets import align_features, derive_target
        from pipeline._validation import derive_seeds
        from pipeline.introspect import FNCMLP, plot_spectrum_trajectories, train_with_introspection

        inputs = self.inputs
        table = pd.read_csv(inputs.features_file, sep="\t", index_col=0, na_values="n/a")
        features = table[[c for c in table.columns if "__" in c]]
        if features.shape[1] == 0:
            raise ValueError(
                f"'features_file' must have edge columns (names containing '__'); "
                f"{inputs.features_file} has {list(table.columns)[:5]}. Pass the FNC feature table."
            )
        participants = pd.read_csv(inputs.participants_file, sep="\t", na_values="n/a",
                                   keep_default_na=False)
        target = derive_target(participants, inputs.target)
        indexed = (participants.set_index("participant_id")
                   if "participant_id" in participants.columns else participants)
        if inputs.group_column not in indexed.columns:
            raise ValueError(
                f"'group_column' must be a column of the participants table "
                f"{list(indexed.columns)}. Got {inputs.group_column!r}."
            )
        X = _standardize(align_features(features, target))
        groups = indexed.loc[target.participant_ids, inputs.group_column]
        n_missing = int(groups.isna().sum())
        if n_missing:
            LOGGER.warning("introspect: %d participant(s) without %r are grouped as 'n/a'.",
                           n_missing, inputs.group_column)
        groups = groups.astype(object).where(groups.notna(), "n/a").astype(str).to_numpy()

        if inputs.use_gpu and torch.cuda.is_available():
            device = "cuda"
        else:
            device = "cpu"
            if inputs.use_gpu:
                LOGGER.info("introspect: use_gpu=True but no CUDA device is available; "
                            "training on CPU.")
        model_seed, train_seed = (int(s) for s in derive_seeds(inputs.random_state, 2))
        hidden = tuple(int(h) for h in inputs.hidden)
        model = FNCMLP(X.shape[1], n_classes=len(target.classes), hidden=hidden,
                       activation="relu", random_state=model_seed)
        result = train_with_introspection(
            model, X, target.y.to_numpy(), groups, epochs=inputs.epochs,
            batch_size=inputs.batch_size, lr=inputs.lr, record_every=inputs.record_every,
            device=device, random_state=train_seed)

        cwd = Path(runtime.cwd)
        for key, frame, name in (("spectra_file", result.spectra, "spectra.tsv"),
                                 ("summary_file", result.summary, "summary.tsv")):
            frame.to_csv(cwd / name, sep="\t", index=False, na_rep="n/a")
            self._results[key] = str(cwd / name)
        fig = plot_spectrum_trajectories(result.summary)
        from workflows.reports.figures import savefig_reproducible

        savefig_reproducible(fig, cwd / "spectra.svg", format="svg")
        self._results["figure_file"] = str(cwd / "spectra.svg")
        last = result.history.iloc[-1]
        self._results["meta"] = {
            "Target": inputs.target,
            "Classes": [str(c) for c in result.classes],
            "NumberOfParticipants": int(X.shape[0]),
            "NumberOfFeatures": int(X.shape[1]),
            "GroupColumn": inputs.group_column,
            "Groups": sorted(set(groups.tolist())),
            "Device": result.device,
            "Epochs": inputs.epochs,
            "BatchSize": inputs.batch_size,
            "RecordEvery": inputs.record_every,
            "Architecture": {"Model": "FNCMLP", "InputFeatures": int(X.shape[1]),
                             "Hidden": list(hidden), "Activation": "relu",
                             "Outputs": len(target.classes)},
            "Optimizer": "adam",
            "LearningRate": inputs.lr,
            "Loss": "cross-entropy (batch mean)",
            "FinalTrainingLoss": float(last["loss"]),
            "FinalTrainingAccuracy": float(last["accuracy"]),
            "RandomSeed": inputs.random_state,
            "Preprocessing": "edge columns z-scored over the trained participants",
        }
        return runtime
