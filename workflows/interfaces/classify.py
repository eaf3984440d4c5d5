"""Group-level interface: classify one participants.tsv target from connectivity features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, InputMultiObject, traits

from pipeline.classify.harmonize import HARMONIZE_OPTIONS
from pipeline.classify.search import CLASSIFIER_DEFAULTS
from workflows.execution.environment import stop_joblib_workers
from workflows.interfaces.base import MetaOutputSpec, PipelineInterface

__all__ = ["ClassifyTarget", "read_network_covariances"]


def read_network_covariances(timeseries_files, relmat_files) -> pd.DataFrame:
    """Covariance table of the participants' multi-scale network time courses.

    The runs of :func:`workflows.interfaces.features.read_run_timecourses`, post-processed
    as the participant level did before its FNC and reduced to Ledoit-Wolf covariances
    (:func:`pipeline.features.network_covariance_table`).

    Raises
    ------
    InputDataError
        If a run has no FNC sidecar with its repetition time, or the runs do not all have
        the same networks.
    """
    from pipeline.features import network_covariance_table
    from workflows.interfaces.features import read_run_timecourses

    return network_covariance_table(read_run_timecourses(timeseries_files, relmat_files))


class _ClassifyTargetInputSpec(BaseInterfaceInputSpec):
    features_file = File(exists=True, desc="group FNC feature table (TSV; connectivity fnc)")
    timeseries_files = InputMultiObject(File(exists=True),
                                        desc="network time courses (connectivity kinds)")
    relmat_files = InputMultiObject(File(exists=True),
                                    desc="the runs' FNC (sidecars give TR and post-processing)")
    participants_file = File(exists=True, mandatory=True, desc="participants.tsv")
    target = traits.Str(mandatory=True, desc="participants.tsv column to predict")
    confounds = traits.List(traits.Str, usedefault=True,
                            desc="columns regressed out inside training folds")
    protect = traits.List(traits.Str, usedefault=True, desc="covariates kept by harmonization")
    site_column = traits.Str("auto", usedefault=True,
                             desc="site column ('auto': 'site' when present)")
    harmonize = traits.Enum(CLASSIFIER_DEFAULTS["harmonize"], *(
        h for h in HARMONIZE_OPTIONS if h != CLASSIFIER_DEFAULTS["harmonize"]), usedefault=True,
        desc="site harmonization ('auto': ComBat by its rule, the choice recorded)")
    connectivity = traits.List(traits.Str, value=["fnc"], usedefault=True,
                               desc="'fnc' or connectivity kinds")
    n_permutations = traits.Int(100, usedefault=True, desc="label permutations (0: none)")
    n_jobs = traits.Int(1, usedefault=True, desc="processes for folds and permutations")
    random_state = traits.Int(0, usedefault=True, desc="seed of every random step")
    device = traits.Str("cpu", usedefault=True, desc="torch device (tangent space, MLP)")


class _ClassifyTargetOutputSpec(MetaOutputSpec):
    metrics_file = File(exists=True, desc="metrics with bootstrap CIs, baseline, permutation p")
    site_metrics_file = File(exists=True, desc="metrics per site with CIs, baseline beside")
    predictions_file = File(exists=True, desc="out-of-fold predictions")
    biomarkers_file = File(exists=True, desc="selected edges, scales, domains, stability")
    model_file = File(exists=True, desc="final model refitted on everyone (skops)")
    model_meta = traits.Dict(desc="the model's sidecar (versions, SHA-256, features, sites)")
    calibration_file = File(exists=True, desc="calibration curve (binary targets; else empty)")
    figure_file = File(exists=True, desc="top connections of the biomarker report (SVG)")


class ClassifyTarget(PipelineInterface):
    """Site-aware nested CV beside a baseline, permutation test, biomarkers and final model."""

    input_spec = _ClassifyTargetInputSpec
    output_spec = _ClassifyTargetOutputSpec

    def _run_interface(self, runtime):
        from pipeline.classify.analysis import (
            classify_target,
            describe_outcome,
            metrics_table,
            site_metrics_table,
        )
        from pipeline.classify.biomarkers import plot_top_connections
        from pipeline.classify.persistence import MODEL_EXTENSION, save_model
        from pipeline.fnc.names import is_edge
        from workflows.bids.participants import read_participants

        inputs = self.inputs
        kinds = None if list(inputs.connectivity) == ["fnc"] else list(inputs.connectivity)
        if kinds is None:
            table = pd.read_csv(inputs.features_file, sep="\t", index_col=0, na_values="n/a")
            features = table[[c for c in table.columns if is_edge(c)]]
        else:
            features = read_network_covariances(inputs.timeseries_files, inputs.relmat_files)
        participants = read_participants(inputs.participants_file,
                                         numeric=[*inputs.confounds, *inputs.protect])
        confounds = [c for c in inputs.confounds if c in participants.columns]
        protect = [c for c in inputs.protect if c in participants.columns
                   and c != inputs.target] if inputs.harmonize != "none" else []
        n_jobs = inputs.n_jobs if inputs.n_jobs > 1 else None
        try:
            outcome = classify_target(
                features, participants, inputs.target, confounds=tuple(confounds),
                protect=tuple(protect), site_column=inputs.site_column, kinds=kinds,
                harmonize=inputs.harmonize, n_permutations=inputs.n_permutations,
                random_state=inputs.random_state, device=inputs.device, n_jobs=n_jobs)
        finally:
            if n_jobs:
                stop_joblib_workers()
        self._write_table(runtime, metrics_table(outcome), "metrics.tsv", "metrics_file",
                          index=True)
        self._write_table(runtime, site_metrics_table(outcome), "site_metrics.tsv",
                          "site_metrics_file")
        self._write_table(runtime, outcome.cv.predictions, "predictions.tsv", "predictions_file")
        self._write_table(runtime, outcome.biomarkers, "biomarkers.tsv", "biomarkers_file")
        calibration = (outcome.cv.calibration if outcome.cv.calibration is not None
                       else pd.DataFrame(columns=["prob_pred", "prob_true"]))
        self._write_table(runtime, calibration, "calibration.tsv", "calibration_file")
        self._write_figure(runtime, plot_top_connections(
            outcome.biomarkers, title=f"{inputs.target}: top connections"),
            "biomarkers.svg", "figure_file")
        meta = describe_outcome(outcome, kinds=kinds, harmonize=inputs.harmonize,
                                n_permutations=inputs.n_permutations,
                                random_state=inputs.random_state)
        model_file = Path(runtime.cwd) / f"model{MODEL_EXTENSION}"
        model_meta = save_model(
            outcome.final_model, model_file, feature_names=outcome.feature_names,
            target=inputs.target, X=outcome.X, y=outcome.target.y.to_numpy(),
            confounds=outcome.confounds, protect=outcome.protect,
            confound_categories=outcome.confound_categories, sites=outcome.sites,
            extra={"connectivity": list(inputs.connectivity), "validation": outcome.validation})
        self._results["model_file"] = str(model_file)
        self._results["model_meta"] = json.loads(json.dumps(model_meta, default=_plain))
        self._results["meta"] = json.loads(json.dumps(meta, default=_plain))
        return runtime


def _plain(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
