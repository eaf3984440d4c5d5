"""Group-level interface: classify one participants.tsv target from the FNC feature table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

__all__ = ["ClassifyTarget"]


class _ClassifyTargetInputSpec(BaseInterfaceInputSpec):
    features_file = File(exists=True, mandatory=True, desc="group FNC feature table (TSV)")
    participants_file = File(exists=True, mandatory=True, desc="participants.tsv")
    target = traits.Str(mandatory=True, desc="participants.tsv column to predict")
    confounds = traits.List(traits.Str, desc="columns regressed out inside training folds")
    n_permutations = traits.Int(100, usedefault=True, desc="label permutations (0: none)")
    random_state = traits.Int(0, usedefault=True, desc="seed of every random step")
    device = traits.Str("cpu", usedefault=True, desc="torch device (MLP)")


class _ClassifyTargetOutputSpec(TraitedSpec):
    metrics_file = File(exists=True, desc="overall metrics with bootstrap CIs")
    site_metrics_file = File(exists=True, desc="metrics per site")
    predictions_file = File(exists=True, desc="out-of-fold predictions")
    biomarkers_file = File(exists=True, desc="selected edges, scales, domains, stability")
    model_file = File(exists=True, desc="final model refitted on everyone (joblib)")
    calibration_file = File(exists=True, desc="calibration curve (binary targets; else empty)")
    figure_file = File(exists=True, desc="top connections of the biomarker report (SVG)")
    meta = traits.Dict(desc="sidecar content")


class ClassifyTarget(SimpleInterface):
    """Site-aware nested CV, permutation test, biomarkers and final model for one target."""

    input_spec = _ClassifyTargetInputSpec
    output_spec = _ClassifyTargetOutputSpec

    def _run_interface(self, runtime):
        from pipeline.classify.analysis import classify_target
        from pipeline.classify.biomarkers import plot_top_connections
        from pipeline.classify.persistence import save_model

        inputs = self.inputs
        table = pd.read_csv(inputs.features_file, sep="\t", index_col=0, na_values="n/a")
        features = table[[c for c in table.columns if "__" in c]]
        participants = pd.read_csv(inputs.participants_file, sep="\t", na_values="n/a",
                                   keep_default_na=False)
        confounds = [c for c in inputs.confounds if c in participants.columns]
        outcome = classify_target(
            features, participants, inputs.target, confounds=tuple(confounds),
            n_permutations=inputs.n_permutations, random_state=inputs.random_state,
            device=inputs.device)
        cwd = Path(runtime.cwd)
        outputs = {
            "metrics_file": (outcome.cv.metrics, "metrics.tsv", True),
            "site_metrics_file": (outcome.cv.per_site, "site_metrics.tsv", False),
            "predictions_file": (outcome.cv.predictions, "predictions.tsv", False),
            "biomarkers_file": (outcome.biomarkers, "biomarkers.tsv", False),
            "calibration_file": (
                outcome.cv.calibration if outcome.cv.calibration is not None
                else pd.DataFrame(columns=["prob_pred", "prob_true"]),
                "calibration.tsv", False),
        }
        for key, (frame, name, keep_index) in outputs.items():
            frame.to_csv(cwd / name, sep="\t", index=keep_index, na_rep="n/a")
            self._results[key] = str(cwd / name)
        figure = plot_top_connections(outcome.biomarkers,
                                      title=f"{inputs.target}: top connections")
        from workflows.reports.figures import savefig_reproducible

        savefig_reproducible(figure, cwd / "biomarkers.svg", format="svg")
        self._results["figure_file"] = str(cwd / "biomarkers.svg")
        model_file = cwd / "model.joblib"
        save_model(outcome.final_model, model_file, feature_names=outcome.feature_names,
                   target=inputs.target, X=outcome.X, y=outcome.target.y.to_numpy(),
                   confounds=outcome.confounds, confound_categories=outcome.confound_categories)
        self._results["model_file"] = str(model_file)
        perm = outcome.permutation
        self._results["meta"] = {
            "Target": inputs.target,
            "Classes": [str(c) for c in outcome.target.classes],
            "NumberOfParticipants": int(len(outcome.target.y)),
            "Confounds": confounds,
            "BalancedAccuracy": outcome.cv.balanced_accuracy,
            "ROCAUC": outcome.cv.roc_auc,
            "NumberOfPermutations": inputs.n_permutations,
            "PermutationPValue": None if perm is None else float(perm.p_value),
            "RandomSeed": inputs.random_state,
            "Validation": "nested cross-validation, outer splits keep sites apart",
        }
        return runtime
