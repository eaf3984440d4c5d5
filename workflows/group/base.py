"""The group-level workflow: gathers participant derivatives into group tables."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from nipype.pipeline import engine as pe

from pipeline._validation import uses_cuda
from pipeline.classify.persistence import MODEL_EXTENSION
from pipeline.classify.search import AUTO_SITE_SPLIT_MIN_SITES, CLASSIFIER_DEFAULTS
from workflows.bids.derivatives import collect_participant_outputs, derivatives_layout
from workflows.bids.naming import target_tag
from workflows.bids.sink import sink_factory
from workflows.execution.engine import Workflow

__all__ = ["build_group_wf", "classifier_methods", "init_group_wf", "mixed_repetition_times"]

LOGGER = logging.getLogger("msica.workflows")


def _run_tr(qc_file: str) -> float:
    """The repetition time a run was processed with (its QC table's ``t_r``)."""
    return float(pd.read_csv(qc_file, sep="\t", usecols=["t_r"])["t_r"].iloc[0])


def mixed_repetition_times(trs: dict[str, float]) -> str | None:
    """A warning when participants' runs have different TRs (None when they share one).

    Static FNC, amplitude and fALFF use each run's own TR (filters in Hz), so they
    pool; sliding windows are counted in TRs, so dFNC windows of different TR groups
    last different times. The message lists the groups and what to do.

    Examples
    --------
    >>> print(mixed_repetition_times({"01": 2.0, "02": 2.0, "03": 2.5}))
    Runs have different repetition times: 2 s (2 participants: sub-01, sub-02), 2.5 s (1 participant: sub-03). Static FNC and time-course features use each run's TR; dFNC windows are counted in TRs (--dfnc-window), so their length in seconds differs between these groups and the pooled dFNC states mix them. Run the group level per TR group (--participant-label) for dFNC states of equal window lengths.
    >>> mixed_repetition_times({"01": 2.0, "02": 2.0}) is None
    True
    """
    groups: dict[float, list[str]] = {}
    for label, t_r in sorted(trs.items()):
        groups.setdefault(round(t_r, 6), []).append(label)
    if len(groups) < 2:
        return None
    parts = []
    for t_r, labels in sorted(groups.items()):
        shown = ", ".join(f"sub-{label}" for label in labels[:5]) + (
            f" +{len(labels) - 5} more" if len(labels) > 5 else "")
        noun = "participant" if len(labels) == 1 else "participants"
        parts.append(f"{t_r:g} s ({len(labels)} {noun}: {shown})")
    return (f"Runs have different repetition times: {', '.join(parts)}. Static FNC and "
            "time-course features use each run's TR; dFNC windows are counted in TRs "
            "(--dfnc-window), so their length in seconds differs between these groups and the "
            "pooled dFNC states mix them. Run the group level per TR group "
            "(--participant-label) for dFNC states of equal window lengths.")


def classifier_methods(targets, *, confounds, harmonize, protect, connectivity,
                       n_permutations) -> str:
    """Methods text of the classifiers, from the registries and the values used."""
    from pipeline.classify.connectivity import CONNECTIVITY_KINDS
    from pipeline.classify.harmonize import describe_harmonize
    from pipeline.classify.models import MODELS

    features = ("the participant-level multi-scale FNC edges" if connectivity == ["fnc"] else
                "; ".join(CONNECTIVITY_KINDS[k].description for k in connectivity)
                + " (multi-scale network time courses)")
    text = (f" Targets ({', '.join(targets)}) were classified from {features} with nested "
            "cross-validation whose outer folds leave sites out and whose inner folds leave "
            f"training sites out when a training set holds {AUTO_SITE_SPLIT_MIN_SITES} or more "
            "sites, else are stratified on site and class (stratified folds without a site "
            "column). Inside each training set: "
            f"{describe_harmonize(harmonize)}"
            + (f" (protected: {', '.join(protect)})" if harmonize != "none" and protect else "")
            + f", confound regression ({', '.join(confounds or []) or 'none'}), scaling and "
            + " or ".join(MODELS[m].description for m in CLASSIFIER_DEFAULTS["models"])
            + " on every feature, its penalty chosen by the inner folds"
            + (", the kinds' probabilities averaged" if len(connectivity) > 1 else "")
            + "; a plain baseline (correlation, standardized L2 logistic regression) was "
            "cross-validated on the same folds.")
    if n_permutations:
        return text + (f" P-values come from {n_permutations} label permutations (within "
                       "sites) of the whole procedure.")
    return text + " Chance has not been tested (no label permutations)."


def init_group_wf(
    *,
    qc_files: list[str],
    output_dir: Path,
    relmat_files: list[str] | None = None,
    dfnc_files: list[str] | None = None,
    timeseries_files: list[str] | None = None,
    n_states: int | None = None,
    targets: list[str] | None = None,
    confounds: list[str] | None = None,
    n_permutations: int = 100,
    site_column: str | None = None,
    harmonize: str = CLASSIFIER_DEFAULTS["harmonize"],
    harmonize_protect: list[str] | None = None,
    connectivity: list[str] | None = None,
    nprocs: int = 1,
    introspect: bool = False,
    device: str = "auto",
    seed: int = 0,
    participants_file: Path | None = None,
    name: str = "msica_group_wf",
) -> Workflow:
    """Build the group-level workflow.

    Parameters
    ----------
    qc_files : list of str
        Per-run QC tables written by the participant level.
    output_dir : Path
        msica derivatives root.
    relmat_files : list of str, optional
        Participants' multi-scale static FNC (template mode): gathered into the
        FNC feature table.
    dfnc_files : list of str, optional
        Participants' sliding-window FNC: clustered into dFNC states.
    timeseries_files : list of str, optional
        Participants' network time courses (every scale): amplitude and fALFF
        table (needs ``relmat_files`` for the runs' repetition times).
    n_states : int, optional
        Number of dFNC states (chosen by the elbow criterion when None).
    targets : list of str, optional
        participants.tsv columns to classify from the FNC feature table.
    confounds : list of str, optional
        participants.tsv columns regressed out of the features inside training folds.
    n_permutations : int
        Label permutations of the whole nested CV, for p-values.
    site_column : str, optional
        participants.tsv column of the sites ('site' when present if None).
    harmonize : {"auto", "none", "combat"}
        Site harmonization of the classifier features inside the training folds
        ("auto": ComBat by its rule, see
        :func:`pipeline.classify.harmonize.resolve_harmonize`).
    harmonize_protect : list of str, optional
        Covariates harmonization keeps.
    connectivity : list of str, optional
        Classifier features: ``["fnc"]`` (default) or connectivity kinds of the
        network time courses.
    nprocs : int
        Processes for the classifiers' outer folds and permutations.
    introspect : bool
        Also train the torch MLP on each target with gradient-spectrum introspection.
    device : str
        Torch device of the classifiers and the introspection MLP
        (:func:`pipeline._validation.resolve_device`).
    seed : int
        Seed of the random steps (k-means).
    participants_file : Path, optional
        ``participants.tsv`` of the input dataset, joined to the tables.
    name : str
        Workflow name.

    Returns
    -------
    Workflow
    """
    from workflows.interfaces.classify import ClassifyTarget
    from workflows.interfaces.introspect import IntrospectTraining
    from workflows.interfaces.features import (
        DFNCStates,
        FNCFeatureTable,
        TimecourseFeatureTable,
    )
    from workflows.interfaces.qc import GatherQC

    workflow = Workflow(name=name)
    workflow.__desc__ = (
        f"Quality-control measures of {len(qc_files)} run(s) were gathered into one group table."
    )
    participants = (str(participants_file) if participants_file is not None
                    and Path(participants_file).is_file() else None)

    sink = sink_factory(output_dir)

    gather = pe.Node(GatherQC(qc_files=qc_files), name="gather_qc")
    if participants:
        gather.inputs.participants_file = participants
    ds_qc = sink("ds_group_qc", qc_files, desc="denoise", suffix="qc", extension=".tsv")
    workflow.connect([(gather, ds_qc, [("out_file", "in_file")])])  # fmt:skip

    if relmat_files:
        table = pe.Node(FNCFeatureTable(relmat_files=relmat_files), name="fnc_table")
        if participants:
            table.inputs.participants_file = participants
        ds_table = sink("ds_fnc_table", relmat_files, desc="fnc", suffix="features",
                        extension=".tsv")
        workflow.connect([(table, ds_table, [("out_file", "in_file"), ("meta", "meta_dict")])])  # fmt:skip
        workflow.__postdesc__ = (
            f"Static FNC edges of {len(relmat_files)} run(s) were tabulated per participant"
            + (" and their sliding-window FNC was clustered into states with city-block k-means "
               "on subject exemplars, as in GIFT" if dfnc_files else "") + "."
        )
    if timeseries_files and relmat_files:
        tc_table = pe.Node(TimecourseFeatureTable(timeseries_files=timeseries_files,
                                                  relmat_files=relmat_files),
                           name="timecourse_table")
        if participants:
            tc_table.inputs.participants_file = participants
        ds_tc_table = sink("ds_timecourse_table", timeseries_files, desc="timecourse",
                           suffix="features", extension=".tsv")
        workflow.connect([(tc_table, ds_tc_table, [("out_file", "in_file"), ("meta", "meta_dict")])])  # fmt:skip
        workflow.__postdesc__ += (" Network amplitude (standard deviation) and fALFF of the "
                                  "detrended time courses were tabulated per participant.")
    if targets and not relmat_files:
        raise FileNotFoundError(
            f"--targets {' '.join(targets)} needs FNC features, but the participant level wrote "
            "none; run it in template mode (--template ...) first."
        )
    if targets and not participants:
        raise FileNotFoundError("--targets needs participants.tsv in BIDS_DIR; add it.")
    connectivity = list(connectivity or ["fnc"])
    if targets and connectivity != ["fnc"] and not timeseries_files:
        raise FileNotFoundError(
            f"--connectivity {' '.join(connectivity)} needs the participants' network time "
            "courses, but the participant level wrote none; run it in template mode first or "
            "use --connectivity fnc."
        )
    for target in targets or []:
        tag = target_tag(target)
        classify = pe.Node(
            ClassifyTarget(participants_file=participants, target=target,
                           confounds=list(confounds or []),
                           protect=list(harmonize_protect or []),
                           site_column=site_column or "auto", harmonize=harmonize,
                           connectivity=connectivity, n_permutations=n_permutations,
                           n_jobs=nprocs, random_state=seed, device=device),
            name=f"classify_{tag}", n_procs=nprocs)
        if connectivity != ["fnc"]:
            classify.inputs.timeseries_files = timeseries_files
            classify.inputs.relmat_files = relmat_files
        sinks = {
            "metrics_file": sink(f"ds_{tag}_metrics", relmat_files, desc=tag, suffix="metrics",
                                 extension=".tsv"),
            "site_metrics_file": sink(f"ds_{tag}_site_metrics", relmat_files,
                                      desc=f"{tag}persite", suffix="metrics", extension=".tsv"),
            "predictions_file": sink(f"ds_{tag}_predictions", relmat_files, desc=tag,
                                     suffix="predictions", extension=".tsv"),
            "biomarkers_file": sink(f"ds_{tag}_biomarkers", relmat_files,
                                    desc=f"{tag}biomarkers", suffix="features", extension=".tsv"),
            "model_file": sink(f"ds_{tag}_model", relmat_files, desc=tag, suffix="model",
                               extension=MODEL_EXTENSION),
            "calibration_file": sink(f"ds_{tag}_calibration", relmat_files,
                                     desc=f"{tag}calibration", suffix="metrics", extension=".tsv"),
            "figure_file": sink(f"ds_{tag}_figure", relmat_files, datatype="figures",
                                desc=f"{tag}biomarkers", suffix="features", extension=".svg"),
        }
        workflow.connect([(table, classify, [("out_file", "features_file")])])  # fmt:skip
        for field, node in sinks.items():
            meta = "model_meta" if field == "model_file" else "meta"  # the model's own sidecar
            workflow.connect([(classify, node, [(field, "in_file"), (meta, "meta_dict")])])  # fmt:skip
        if introspect:
            spectra = pe.Node(
                IntrospectTraining(participants_file=participants, target=target,
                                   random_state=seed, device=device,
                                   use_gpu=uses_cuda(device)),
                name=f"introspect_{tag}")
            spectra_sinks = {
                "spectra_file": sink(f"ds_{tag}_spectra", relmat_files, desc=f"{tag}introspect",
                                     suffix="spectrum", extension=".tsv"),
                "summary_file": sink(f"ds_{tag}_spectra_summary", relmat_files,
                                     desc=f"{tag}introspectsummary", suffix="spectrum",
                                     extension=".tsv"),
                "figure_file": sink(f"ds_{tag}_spectra_figure", relmat_files,
                                    desc=f"{tag}introspect", suffix="spectrum",
                                    extension=".svg", datatype="figures"),
            }
            workflow.connect([(table, spectra, [("out_file", "features_file")])])  # fmt:skip
            for field, node in spectra_sinks.items():
                workflow.connect([(spectra, node, [(field, "in_file"), ("meta", "meta_dict")])])  # fmt:skip
    if targets:
        workflow.__postdesc__ += classifier_methods(
            targets, confounds=confounds, harmonize=harmonize, protect=harmonize_protect,
            connectivity=connectivity, n_permutations=n_permutations)
    if dfnc_files:
        states = pe.Node(DFNCStates(dfnc_files=dfnc_files, random_state=seed), name="dfnc_states")
        if n_states:
            states.inputs.n_states = n_states
        if participants:
            states.inputs.participants_file = participants
        ds_states = sink("ds_dfnc_states", dfnc_files, desc="dfncstates", suffix="relmat",
                         extension=".tsv")
        ds_metrics = sink("ds_dfnc_metrics", dfnc_files, desc="dfnc", suffix="features",
                          extension=".tsv")
        workflow.connect([
            (states, ds_states, [("states_file", "in_file"), ("meta", "meta_dict")]),
            (states, ds_metrics, [("metrics_file", "in_file"), ("meta", "meta_dict")]),
        ])  # fmt:skip
    return workflow


def build_group_wf(
    *,
    output_dir: Path,
    bids_dir: Path,
    participant_label: list[str] | None = None,
    n_states: int | None = None,
    targets: list[str] | None = None,
    confounds: list[str] | None = None,
    n_permutations: int = 100,
    site_column: str | None = None,
    harmonize: str = CLASSIFIER_DEFAULTS["harmonize"],
    harmonize_protect: list[str] | None = None,
    connectivity: list[str] | None = None,
    nprocs: int = 1,
    introspect: bool = False,
    device: str = "auto",
    seed: int = 0,
) -> Workflow:
    """Collect the participant outputs in ``output_dir`` and build the group workflow on them."""
    layout = derivatives_layout(output_dir)

    def collect(required: bool = True, **query) -> list[str]:
        return collect_participant_outputs(layout, participant_label=participant_label,
                                           required=required, **query)

    qc_files = collect(suffix="qc", desc="denoise", extension=".tsv")
    message = mixed_repetition_times(
        {layout.parse_file_entities(f)["subject"]: _run_tr(f) for f in qc_files})
    if message:
        LOGGER.warning("%s", message)
    return init_group_wf(
        qc_files=qc_files,
        output_dir=output_dir,
        relmat_files=collect(False, suffix="relmat", desc="multiscale", extension=".tsv"),
        dfnc_files=collect(False, suffix="timeseries", desc="dfnc", extension=".tsv"),
        timeseries_files=collect(False, suffix="timeseries", desc="ica", extension=".tsv"),
        n_states=n_states,
        targets=targets,
        confounds=confounds,
        n_permutations=n_permutations,
        site_column=site_column,
        harmonize=harmonize,
        harmonize_protect=harmonize_protect,
        connectivity=connectivity,
        nprocs=nprocs,
        introspect=introspect,
        device=device,
        seed=seed,
        participants_file=Path(bids_dir) / "participants.tsv",
    )
