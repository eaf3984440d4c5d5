"""The group-level workflow: participant derivatives into group tables, states and classifiers.

One small builder per concern (QC, FNC table, time-course table, classifier, introspection,
dFNC states), composed by :func:`init_group_wf`; their sinks are in :mod:`.outputs`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pipeline._validation import uses_cuda
from pipeline.classify.search import AUTO_SITE_SPLIT_MIN_SITES, CLASSIFIER_DEFAULTS
from workflows._docs import fill_doc
from workflows.bids.derivatives import collect_participant_outputs, derivatives_layout
from workflows.bids.naming import target_tag
from workflows.execution.engine import Workflow
from workflows.group.outputs import init_group_outputs_wf

__all__ = ["ClassifierOptions", "classifier_methods", "init_classify_wf", "init_dfnc_states_wf",
           "init_fnc_table_wf", "init_group_wf", "init_introspect_wf", "init_msica_group_wf",
           "init_qc_wf", "init_timecourse_table_wf", "mixed_repetition_times"]

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


@dataclass(frozen=True)
class ClassifierOptions:
    """What the group level classifies, and how (the settings of these names).

    Parameters
    ----------
    targets : tuple of str
        participants.tsv columns to classify from the FNC feature table.
    confounds : tuple of str
        participants.tsv columns regressed out of the features inside training folds.
    n_permutations : int
        Label permutations of the whole nested CV, for p-values.
    site_column : str, optional
        participants.tsv column of the sites ('site' when present if None).
    harmonize : {"auto", "none", "combat"}
        Site harmonization of the features inside the training folds ("auto": ComBat
        by its rule, see :func:`pipeline.classify.harmonize.resolve_harmonize`).
    harmonize_protect : tuple of str
        Covariates harmonization keeps.
    connectivity : tuple of str
        Classifier features: ``("fnc",)`` or connectivity kinds of the network time
        courses (:data:`pipeline.classify.connectivity.CONNECTIVITY_KINDS`); empty
        (``connectivity = []`` in a ``--config`` file) means ``("fnc",)``.
    introspect : bool
        Also train the torch MLP on each target with gradient-spectrum introspection.
    """

    targets: tuple[str, ...] = ()
    confounds: tuple[str, ...] = ()
    n_permutations: int = 100
    site_column: str | None = None
    harmonize: str = CLASSIFIER_DEFAULTS["harmonize"]
    harmonize_protect: tuple[str, ...] = ()
    connectivity: tuple[str, ...] = ("fnc",)
    introspect: bool = False

    def __post_init__(self) -> None:
        if not self.connectivity:  # frozen: set once, here
            object.__setattr__(self, "connectivity", ("fnc",))


def classifier_methods(options: ClassifierOptions) -> str:
    """Methods text of the classifiers, from the registries and the values used."""
    from pipeline.classify.connectivity import CONNECTIVITY_KINDS
    from pipeline.classify.harmonize import HARMONIZERS, describe_harmonize
    from pipeline.classify.models import MODELS

    def cited(description: str, references) -> str:
        return description + (f" ({', '.join('@' + key for key in references)})"
                              if references else "")

    connectivity, harmonize = list(options.connectivity), options.harmonize
    protect, n_permutations = options.harmonize_protect, options.n_permutations

    features = ("the participant-level multi-scale FNC edges" if connectivity == ["fnc"] else
                "; ".join(cited(kind.description, kind.references)
                          for kind in map(CONNECTIVITY_KINDS.get, connectivity))
                + " (multi-scale network time courses)")
    text = (f" Targets ({', '.join(options.targets)}) were classified from {features} with "
            "nested cross-validation whose outer folds leave sites out and whose inner folds "
            "leave training sites out when a training set holds "
            f"{AUTO_SITE_SPLIT_MIN_SITES} or more sites, else are stratified on site and class "
            "(stratified folds without a site column). Inside each training set: "
            + cited(describe_harmonize(harmonize),  # "auto" and "combat" both describe ComBat
                    HARMONIZERS["combat"]["references"] if harmonize != "none" else ())
            + (f" (protected: {', '.join(protect)})" if harmonize != "none" and protect else "")
            + f", confound regression ({', '.join(options.confounds) or 'none'}), scaling and "
            + " or ".join(cited(MODELS[m].description, MODELS[m].references)
                          for m in CLASSIFIER_DEFAULTS["models"])
            + " on every feature, its penalty chosen by the inner folds"
            + (" (the strongest penalty whose mean score is within one standard error of the "
               "best, @hastie2009)" if CLASSIFIER_DEFAULTS["choice"] == "one_se" else "")
            + (", the kinds' probabilities averaged" if len(connectivity) > 1 else "")
            + "; a plain baseline (correlation, standardized L2 logistic regression) was "
            "cross-validated on the same folds.")
    if n_permutations:
        return text + (f" P-values come from {n_permutations} label permutations (within "
                       "sites) of the whole procedure.")
    return text + " Chance has not been tested (no label permutations)."


def _check_classifier_inputs(options: ClassifierOptions, *, participants: str | None,
                             relmat_files: list[str] | None,
                             timeseries_files: list[str] | None) -> None:
    """Refuse classifier targets without the features or participants.tsv they need."""
    targets, connectivity = list(options.targets), list(options.connectivity)
    if targets and not relmat_files:
        raise FileNotFoundError(
            f"--targets {' '.join(targets)} needs FNC features, but the participant level wrote "
            "none; run it in template mode (--template ...) first."
        )
    if targets and not participants:
        raise FileNotFoundError("--targets needs participants.tsv in BIDS_DIR; add it.")
    if targets and connectivity != ["fnc"] and not timeseries_files:
        raise FileNotFoundError(
            f"--connectivity {' '.join(connectivity)} needs the participants' network time "
            "courses, but the participant level wrote none; run it in template mode first or "
            "use --connectivity fnc."
        )


def _tables_desc(relmat_files: list[str] | None, dfnc_files: list[str] | None,
                 timeseries_files: list[str] | None) -> str | None:
    """Methods text of the feature tables and dFNC states (None without FNC)."""
    if not relmat_files:
        return None
    text = (f"Static FNC edges of {len(relmat_files)} run(s) were tabulated per participant"
            + (" and their sliding-window FNC was clustered into states with city-block k-means "
               "on subject exemplars, as in GIFT" if dfnc_files else "") + ".")
    if timeseries_files:
        text += (" Network amplitude (standard deviation), fALFF and spectral dynamic range (as "
                 "GIFT's spectral statistics) of the detrended time courses were tabulated "
                 "per participant.")
    return text


def _inputnode(**values: Any) -> pe.Node:
    """An ``inputnode`` with these fields, set to the values that are not None."""
    node = pe.Node(niu.IdentityInterface(fields=list(values)), name="inputnode")
    for field, value in values.items():
        if value is not None:
            setattr(node.inputs, field, value)
    return node


def _concern_wf(name: str, node: pe.Node, inputnode: pe.Node, outputs: list[str]) -> Workflow:
    """A workflow of one node fed by ``inputnode`` (same field names) with ``outputs``."""
    workflow = Workflow(name=name)
    outputnode = pe.Node(niu.IdentityInterface(fields=outputs), name="outputnode")
    workflow.connect([
        (inputnode, node, [(field, field) for field in inputnode.inputs.copyable_trait_names()]),
        (node, outputnode, [(field, field) for field in outputs]),
    ])  # fmt:skip
    return workflow


@fill_doc
def init_qc_wf(*, qc_files: list[str], participants_file: str | None = None,
               name: str = "qc_wf") -> Workflow:
    """Gather the runs' QC tables into one group table.

    Parameters
    ----------
    qc_files : list of str
        Per-run QC tables written by the participant level.
    %(participants_file)s
    %(wf_name)s

    Inputs
    ------
    qc_files, participants_file
        As the parameters (set from them).

    Outputs
    -------
    out_file
        Group QC table (one row per run).
    """
    from workflows.interfaces.qc import GatherQC

    return _concern_wf(name, pe.Node(GatherQC(), name="gather_qc"),
                       _inputnode(qc_files=qc_files, participants_file=participants_file),
                       ["out_file"])


@fill_doc
def init_fnc_table_wf(*, relmat_files: list[str], participants_file: str | None = None,
                      name: str = "fnc_table_wf") -> Workflow:
    """Tabulate the participants' static FNC edges (the classifiers' features).

    Parameters
    ----------
    relmat_files : list of str
        Participants' multi-scale static FNC.
    %(participants_file)s
    %(wf_name)s

    Inputs
    ------
    relmat_files, participants_file
        As the parameters (set from them).

    Outputs
    -------
    out_file
        One row per participant, one column per edge.
    meta
        Sidecar content.
    """
    from workflows.interfaces.features import FNCFeatureTable

    return _concern_wf(name, pe.Node(FNCFeatureTable(), name="fnc_table"),
                       _inputnode(relmat_files=relmat_files, participants_file=participants_file),
                       ["out_file", "meta"])


@fill_doc
def init_timecourse_table_wf(*, timeseries_files: list[str], relmat_files: list[str],
                             participants_file: str | None = None,
                             name: str = "timecourse_table_wf") -> Workflow:
    """Tabulate the amplitude, fALFF and dynamic range of the participants' network time courses.

    Parameters
    ----------
    timeseries_files : list of str
        Participants' network time courses (every scale).
    relmat_files : list of str
        Their static FNC (whose sidecars give each run's repetition time).
    %(participants_file)s
    %(wf_name)s

    Inputs
    ------
    timeseries_files, relmat_files, participants_file
        As the parameters (set from them).

    Outputs
    -------
    out_file
        One row per participant.
    meta
        Sidecar content.
    """
    from workflows.interfaces.features import TimecourseFeatureTable

    return _concern_wf(name, pe.Node(TimecourseFeatureTable(), name="timecourse_table"),
                       _inputnode(timeseries_files=timeseries_files, relmat_files=relmat_files,
                                  participants_file=participants_file),
                       ["out_file", "meta"])


def init_classify_wf(
    *,
    target: str,
    participants_file: str,
    options: ClassifierOptions | None = None,
    nprocs: int = 1,
    seed: int = 0,
    device: str = "auto",
    timeseries_files: list[str] | None = None,
    relmat_files: list[str] | None = None,
    name: str | None = None,
) -> Workflow:
    """Classify one participants.tsv column with nested cross-validation.

    Parameters
    ----------
    target : str
        participants.tsv column to classify.
    participants_file : str
        ``participants.tsv`` (labels, sites, confounds).
    options : ClassifierOptions, optional
        How to classify (its ``targets`` and ``introspect`` are not read here).
    nprocs : int
        Processes for the outer folds and permutations.
    seed : int
        Seed of the cross-validation.
    device : str
        Torch device.
    timeseries_files, relmat_files : list of str, optional
        Participants' network time courses and static FNC (connectivity kinds other
        than ``fnc``).
    name : str, optional
        Workflow name (default ``classify_<target>_wf``).

    Inputs
    ------
    features_file
        The FNC feature table (:func:`init_fnc_table_wf`).

    Outputs
    -------
    metrics_file, site_metrics_file, predictions_file, biomarkers_file, calibration_file, figure_file
        Metrics, per-site metrics, out-of-fold predictions, biomarkers, calibration
        curve and biomarker figure.
    model_file, model_meta
        The model refitted on everyone, and its own sidecar.
    meta
        Sidecar content of the other outputs.
    """
    from workflows.interfaces.classify import ClassifyTarget

    options = options or ClassifierOptions()
    tag = target_tag(target)
    connectivity = list(options.connectivity)
    classify = pe.Node(
        ClassifyTarget(participants_file=participants_file, target=target,
                       confounds=list(options.confounds), protect=list(options.harmonize_protect),
                       site_column=options.site_column or "auto", harmonize=options.harmonize,
                       connectivity=connectivity, n_permutations=options.n_permutations,
                       n_jobs=nprocs, random_state=seed, device=device),
        name=f"classify_{tag}", n_procs=nprocs)
    if connectivity != ["fnc"]:
        classify.inputs.timeseries_files = timeseries_files
        classify.inputs.relmat_files = relmat_files
    return _concern_wf(name or f"classify_{tag}_wf", classify,
                       _inputnode(features_file=None),
                       ["metrics_file", "site_metrics_file", "predictions_file",
                        "biomarkers_file", "model_file", "model_meta", "calibration_file",
                        "figure_file", "meta"])


def init_introspect_wf(*, target: str, participants_file: str, seed: int = 0,
                       device: str = "auto", name: str | None = None) -> Workflow:
    """Train the torch MLP on one target with gradient-spectrum introspection.

    Parameters
    ----------
    target : str
        participants.tsv column to classify.
    participants_file : str
        ``participants.tsv``.
    seed : int
        Seed of the training.
    device : str
        Torch device (:func:`pipeline._validation.resolve_device`; a GPU node when it
        resolves to CUDA).
    name : str, optional
        Workflow name (default ``introspect_<target>_wf``).

    Inputs
    ------
    features_file
        What the MLP is trained on: the table of :func:`init_fnc_table_wf`.

    Outputs
    -------
    spectra_file, summary_file, figure_file
        Singular values per step, their summary and the effective-rank figure.
    meta
        Sidecar content.
    """
    from workflows.interfaces.introspect import IntrospectTraining

    tag = target_tag(target)
    spectra = pe.Node(IntrospectTraining(participants_file=participants_file, target=target,
                                         random_state=seed, device=device,
                                         use_gpu=uses_cuda(device)),
                      name=f"introspect_{tag}")
    return _concern_wf(name or f"introspect_{tag}_wf", spectra, _inputnode(features_file=None),
                       ["spectra_file", "summary_file", "figure_file", "meta"])


@fill_doc
def init_dfnc_states_wf(*, dfnc_files: list[str], n_states: int | None = None, seed: int = 0,
                        participants_file: str | None = None,
                        name: str = "dfnc_states_wf") -> Workflow:
    """Cluster the participants' sliding-window FNC into dFNC states.

    Parameters
    ----------
    dfnc_files : list of str
        Participants' sliding-window FNC.
    n_states : int, optional
        Number of states (chosen by the elbow criterion when None).
    seed : int
        Seed of the k-means.
    participants_file : str, optional
        ``participants.tsv``, joined to the state metrics.
    %(wf_name)s

    Inputs
    ------
    dfnc_files, participants_file
        As the parameters (set from them).

    Outputs
    -------
    states_file
        State centroids.
    metrics_file
        State metrics per participant.
    meta
        Sidecar content.
    """
    from workflows.interfaces.features import DFNCStates

    states = pe.Node(DFNCStates(random_state=seed), name="dfnc_states")
    if n_states:
        states.inputs.n_states = n_states
    return _concern_wf(name, states, _inputnode(dfnc_files=dfnc_files,
                                                participants_file=participants_file),
                       ["states_file", "metrics_file", "meta"])


@fill_doc
def init_group_wf(
    *,
    qc_files: list[str],
    output_dir: Path,
    relmat_files: list[str] | None = None,
    dfnc_files: list[str] | None = None,
    timeseries_files: list[str] | None = None,
    n_states: int | None = None,
    classifiers: ClassifierOptions | None = None,
    nprocs: int = 1,
    device: str = "auto",
    seed: int = 0,
    participants_file: Path | None = None,
    name: str = "msica_group_wf",
) -> Workflow:
    """Build the group-level workflow: one sub-workflow per concern, and its outputs.

    ``qc_wf``, ``fnc_table_wf``, ``timecourse_table_wf``, ``classify_<target>_wf``
    (and ``introspect_<target>_wf``) on the FNC table, ``dfnc_states_wf``; each
    connected to its sinks (``ds_<concern>_wf``, :mod:`workflows.group.outputs`).

    Parameters
    ----------
    qc_files : list of str
        Per-run QC tables written by the participant level.
    %(output_dir)s
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
    classifiers : ClassifierOptions, optional
        The targets to classify and how (none when None).
    nprocs : int
        Processes for the classifiers' outer folds and permutations.
    device : str
        Torch device of the classifiers and the introspection MLP
        (:func:`pipeline._validation.resolve_device`).
    seed : int
        Seed of the random steps (k-means).
    participants_file : Path, optional
        ``participants.tsv`` of the input dataset, joined to the tables.
    %(wf_name)s

    Returns
    -------
    Workflow

    Raises
    ------
    FileNotFoundError
        If ``targets`` are given without the features or participants.tsv they need.
    """
    classifiers = classifiers or ClassifierOptions()
    participants = (str(participants_file) if participants_file is not None
                    and Path(participants_file).is_file() else None)
    _check_classifier_inputs(classifiers, participants=participants, relmat_files=relmat_files,
                             timeseries_files=timeseries_files)
    workflow = Workflow(name=name)
    workflow.__desc__ = (
        f"Quality-control measures of {len(qc_files)} run(s) were gathered into one group table."
    )
    workflow.__postdesc__ = _tables_desc(relmat_files, dfnc_files, timeseries_files)

    def add(concern_wf: Workflow, concern: str, sources: list[str], target: str | None = None,
            ) -> Workflow:
        ds_wf = init_group_outputs_wf(output_dir=output_dir, concern=concern, sources=sources,
                                      target=target, name=f"ds_{concern_wf.name}")
        fields = ds_wf.get_node("inputnode").inputs.copyable_trait_names()
        workflow.connect([
            (concern_wf, ds_wf, [(f"outputnode.{field}", f"inputnode.{field}")
                                 for field in fields]),
        ])  # fmt:skip
        return concern_wf

    add(init_qc_wf(qc_files=qc_files, participants_file=participants), "qc", qc_files)
    if relmat_files:
        table_wf = add(init_fnc_table_wf(relmat_files=relmat_files,
                                         participants_file=participants),
                       "fnc_table", relmat_files)
    if timeseries_files and relmat_files:
        add(init_timecourse_table_wf(timeseries_files=timeseries_files,
                                     relmat_files=relmat_files, participants_file=participants),
            "timecourse_table", timeseries_files)
    for target in classifiers.targets:
        classify_wf = add(init_classify_wf(
            target=target, participants_file=participants, options=classifiers, nprocs=nprocs,
            seed=seed, device=device, timeseries_files=timeseries_files,
            relmat_files=relmat_files), "classify", relmat_files, target)
        workflow.connect([
            (table_wf, classify_wf, [("outputnode.out_file", "inputnode.features_file")]),
        ])  # fmt:skip
        if classifiers.introspect:
            introspect_wf = add(init_introspect_wf(target=target, participants_file=participants,
                                                   seed=seed, device=device),
                                "introspect", relmat_files, target)
            workflow.connect([
                (table_wf, introspect_wf, [("outputnode.out_file", "inputnode.features_file")]),
            ])  # fmt:skip
    if classifiers.targets:
        workflow.__postdesc__ += classifier_methods(classifiers)
    if dfnc_files:
        add(init_dfnc_states_wf(dfnc_files=dfnc_files, n_states=n_states, seed=seed,
                                participants_file=participants), "dfnc_states", dfnc_files)
    return workflow


def init_msica_group_wf(
    *,
    output_dir: Path,
    bids_dir: Path,
    participant_label: list[str] | None = None,
    **options: Any,
) -> Workflow:
    """Collect the participant outputs in ``output_dir`` and build the group workflow on them.

    The top-level builder of the group level (after the data-driven group ICA, when
    there is one): it warns when runs have different repetition times and builds
    :func:`init_group_wf` on the derivatives found.

    Parameters
    ----------
    output_dir : Path
        msica derivatives root, where the participant level wrote.
    bids_dir : Path
        Input dataset (its ``participants.tsv``).
    participant_label : list of str, optional
        Participants to include (all when None).
    **options
        The group options of :func:`init_group_wf` (``classifiers``, ``n_states``, ``seed``...).

    Returns
    -------
    Workflow
    """
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
        participants_file=Path(bids_dir) / "participants.tsv",
        **options,
    )
