"""Top-level workflow builders: the only code that reads :class:`~workflows.config.Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pipeline import __version__
from workflows.config import Settings
from workflows.derivatives import sink_factory
from workflows.engine import Workflow

__all__ = [
    "connect_networks_fnc",
    "init_denoise_wf",
    "init_msica_participant_wf",
    "init_participant_wf",
    "participant_wf_name",
]


def participant_wf_name(subject_label: str) -> str:
    """Return the name of a participant's workflow.

    Examples
    --------
    >>> participant_wf_name("01")
    'sub_01_wf'
    """
    return f"sub_{subject_label}_wf"


def init_msica_participant_wf(
    settings: Settings, subject_label: str, runs: list[dict[str, Any]]
) -> Workflow:
    """Build one participant's workflow from the run settings."""
    return init_participant_wf(
        subject_label=subject_label,
        runs=runs,
        output_dir=settings.output_dir,
        strategy=settings.denoise_strategy,
        high_pass=settings.high_pass,
        low_pass=settings.low_pass,
        detrend=settings.detrend,
        standardize=settings.standardize,
        fd_threshold=settings.fd_threshold,
        min_volumes=settings.min_volumes,
        save_denoised=settings.save_denoised,
        templates=list(zip(settings.templates, _labels_or_none(settings))),
        backrecon_method=settings.backrecon_method,
        gift_compatible=settings.gift_compatible,
        resample_template=settings.resample_template,
        device=settings.device,
        dfnc_window=settings.dfnc_window,
        model_orders=settings.model_orders,
        pca_dir=settings.subject_pca_dir,
        dataset_links=dataset_links(settings),
    )


def dataset_links(settings: Settings) -> dict[str, str]:
    """Names of the input datasets for BIDS URIs (``bids:<name>:<path>``) in sidecars."""
    links = {"raw": str(settings.bids_dir)}
    links.update({Path(d).name: str(d) for d in settings.derivatives})
    return links


def _labels_or_none(settings: Settings) -> list[Path | None]:
    if settings.template_labels:
        return list(settings.template_labels)
    return [None] * len(settings.templates)


def init_participant_wf(
    *,
    subject_label: str,
    runs: list[dict[str, Any]],
    output_dir: Path,
    strategy: str = "simple",
    high_pass: float | None = 0.01,
    low_pass: float | None = None,
    detrend: bool = True,
    standardize: bool = True,
    fd_threshold: float = 0.5,
    min_volumes: int = 50,
    save_denoised: bool = False,
    templates: list[tuple[Path, Path | None]] | None = None,
    backrecon_method: str = "moo-icar",
    gift_compatible: bool = False,
    resample_template: bool = False,
    device: str = "auto",
    dfnc_window: int = 30,
    model_orders: tuple[int, ...] = (),
    pca_dir: Path | None = None,
    dataset_links: dict[str, str] | None = None,
    name: str | None = None,
) -> Workflow:
    """Build the participant-level workflow: one sub-workflow per BOLD run.

    Each run is denoised and QC'd. With ``templates`` (template mode), its
    networks are back-reconstructed at every scale and static and dynamic FNC
    are computed across scales; with ``model_orders`` (data-driven mode), it
    is reduced by subject PCA into ``pca_dir`` for the group ICA.

    Parameters
    ----------
    subject_label : str
        Participant label without ``sub-``.
    runs : list of dict
        Inputs of each run, as returned by :func:`workflows.bids.collect_runs`
        (keys ``bold``, ``mask``, ``confounds``, ``t_r``, ``entities``).
    output_dir : Path
        Root of the msica derivatives.
    strategy, high_pass, low_pass, detrend, standardize, fd_threshold, min_volumes, save_denoised
        Denoising options, see :func:`init_denoise_wf`.
    templates : list of (Path, Path or None), optional
        4-D template and its labels TSV, one pair per scale.
    backrecon_method, gift_compatible, resample_template, device, dfnc_window
        Network options, see :func:`init_networks_wf`.
    model_orders : tuple of int
        Group ICA model orders (data-driven mode, used when no ``templates``).
    pca_dir : Path, optional
        Where subject PCAs are written (data-driven mode).
    dataset_links : dict, optional
        Input dataset names and roots, for the ``Sources`` URIs of sidecars.
    name : str, optional
        Workflow name (default ``sub_<label>_wf``).

    Returns
    -------
    Workflow
    """
    workflow = Workflow(name=name or participant_wf_name(subject_label))
    for index, run in enumerate(runs):
        run_wf = init_denoise_wf(
            bold_file=run["bold"],
            mask_file=run["mask"],
            confounds_file=run["confounds"],
            t_r=run["t_r"],
            output_dir=output_dir,
            strategy=strategy,
            high_pass=high_pass,
            low_pass=low_pass,
            detrend=detrend,
            standardize=standardize,
            fd_threshold=fd_threshold,
            min_volumes=min_volumes,
            save_denoised=save_denoised,
            dataset_links=dataset_links,
            name=f"run_{index:02d}_wf",
        )
        if not templates and model_orders:
            _add_subject_pca(workflow, run_wf, run, subject_label, index,
                             n_components=max(model_orders), pca_dir=pca_dir)
            continue
        if not templates:
            workflow.add_nodes([run_wf])
            continue
        networks_wf = init_networks_wf(
            bold_file=run["bold"],
            mask_file=run["mask"],
            confounds_file=run["confounds"],
            t_r=run["t_r"],
            output_dir=output_dir,
            templates=templates,
            method=backrecon_method,
            gift_compatible=gift_compatible,
            resample_template=resample_template,
            device=device,
            dfnc_window=dfnc_window,
            dataset_links=dataset_links,
            name=f"run_{index:02d}_networks_wf",
        )
        workflow.connect([
            (run_wf, networks_wf, [("outputnode.denoised_file", "inputnode.denoised_file"),
                                   ("outputnode.sample_mask", "inputnode.sample_mask")]),
        ])  # fmt:skip
    return workflow


def _add_subject_pca(workflow: Workflow, run_wf: Workflow, run: dict[str, Any], subject_label: str,
                     index: int, *, n_components: int, pca_dir: Path | None) -> None:
    """Reduce a denoised run by subject PCA for the group ICA (data-driven mode)."""
    from workflows.interfaces.groupica import SubjectPCA

    if pca_dir is None:
        raise ValueError("'pca_dir' is needed with model orders (data-driven mode).")
    meta = {"Subject": subject_label, "SourceFile": str(run["bold"]),
            "MaskFile": str(run["mask"]), "ConfoundsFile": str(run["confounds"]),
            "RepetitionTime": float(run["t_r"])}
    pca = pe.Node(SubjectPCA(mask_file=run["mask"], n_components=n_components,
                             out_dir=str(pca_dir), meta=meta), name=f"run_{index:02d}_pca")
    workflow.connect([
        (run_wf, pca, [("outputnode.denoised_file", "bold_file"),
                       ("outputnode.sample_mask", "sample_mask")]),
    ])  # fmt:skip


def init_denoise_wf(
    *,
    bold_file: str,
    mask_file: str,
    confounds_file: str | None,
    t_r: float,
    output_dir: Path,
    strategy: str = "simple",
    high_pass: float | None = 0.01,
    low_pass: float | None = None,
    detrend: bool = True,
    standardize: bool = True,
    fd_threshold: float = 0.5,
    min_volumes: int = 50,
    save_denoised: bool = False,
    dataset_links: dict[str, str] | None = None,
    name: str = "denoise_wf",
) -> Workflow:
    """Check, denoise and QC one BOLD run, and write its derivatives.

    Parameters
    ----------
    bold_file, mask_file : str
        Preprocessed BOLD and brain mask.
    confounds_file : str or None
        fMRIPrep-style confounds TSV (None with ``strategy="none"``).
    t_r : float
        Repetition time (s).
    output_dir : Path
        Root of the msica derivatives.
    strategy : {"simple", "scrubbing", "compcor", "none"}
        nilearn confound strategy, or none.
    high_pass, low_pass : float or None
        Filter cut-offs in Hz (None for no filter).
    detrend, standardize : bool
        Remove each voxel's linear trend; z-score each voxel.
    fd_threshold : float
        Framewise displacement threshold (mm) for scrubbing.
    min_volumes : int
        Fewest (kept) volumes accepted.
    save_denoised : bool
        Also write the denoised BOLD.
    dataset_links : dict, optional
        Input dataset names and roots, for the ``Sources`` URIs of sidecars.
    name : str
        Workflow name.

    Inputs
    ------
    bold_file, mask_file, confounds_file, t_r (set at build time)

    Outputs
    -------
    qc_file
        One-row QC table of the run.
    denoised_file
        Denoised BOLD (only with ``save_denoised``).
    """
    from workflows.interfaces.denoise import DenoiseBold

    workflow = Workflow(name=name)
    sink = sink_factory(output_dir, source_file=bold_file, dataset_links=dataset_links)
    workflow.__desc__ = _denoise_desc(strategy=strategy, high_pass=high_pass, low_pass=low_pass,
                                      detrend=detrend, standardize=standardize,
                                      fd_threshold=fd_threshold, min_volumes=min_volumes)
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["qc_file", "denoised_file", "sample_mask"]),
        name="outputnode")
    denoise = pe.Node(
        DenoiseBold(
            bold_file=bold_file,
            mask_file=mask_file,
            t_r=t_r,
            strategy=strategy,
            detrend=detrend,
            standardize=standardize,
            fd_threshold=fd_threshold,
            min_volumes=min_volumes,
            save_nifti=save_denoised,
        ),
        name="denoise",
    )
    for field, value in (("confounds_file", confounds_file), ("high_pass", high_pass),
                         ("low_pass", low_pass)):
        if value is not None:
            setattr(denoise.inputs, field, value)
    ds_qc = sink("ds_qc", desc="denoise", suffix="qc", extension=".tsv")
    workflow.connect([
        (denoise, ds_qc, [("qc_file", "in_file"), ("qc_meta", "meta_dict")]),
        (denoise, outputnode, [("qc_file", "qc_file"), ("denoised_file", "denoised_file"),
                               ("sample_mask", "sample_mask")]),
    ])  # fmt:skip
    if save_denoised:
        ds_bold = sink("ds_bold", desc="denoised", suffix="bold", extension=".nii.gz")
        workflow.connect([
            (denoise, ds_bold, [("denoised_nifti", "in_file"), ("qc_meta", "meta_dict")]),
        ])  # fmt:skip
    return workflow


def _denoise_desc(*, strategy: str, high_pass: float | None, low_pass: float | None,
                  detrend: bool, standardize: bool, fd_threshold: float, min_volumes: int) -> str:
    """Methods text of the denoising, with the values used."""
    if strategy == "none":
        steps = "were used as preprocessed (no confound regression, filtering or scaling)"
    else:
        scrub = (f", volumes with framewise displacement > {fd_threshold} mm censored"
                 if strategy == "scrubbing" else "")
        steps = (f"were denoised inside the brain mask with nilearn's '{strategy}' confound "
                 f"strategy (load_confounds_strategy){scrub}")
    extras = [text for flag, text in (
        (detrend, "linearly detrended"),
        (high_pass is not None, f"high-pass filtered at {high_pass} Hz"),
        (low_pass is not None, f"low-pass filtered at {low_pass} Hz"),
        (standardize, "z-scored per voxel")) if flag]
    more = f", {', '.join(extras)}" if extras else ""
    return (f"BOLD runs {steps}{more}, using msica {__version__}. Runs with fewer than "
            f"{min_volumes} usable volumes were refused.")


def init_networks_wf(
    *,
    bold_file: str,
    mask_file: str,
    confounds_file: str,
    t_r: float,
    output_dir: Path,
    templates: list[tuple[Path, Path | None]],
    method: str = "moo-icar",
    gift_compatible: bool = False,
    resample_template: bool = False,
    device: str = "auto",
    dfnc_window: int = 30,
    dataset_links: dict[str, str] | None = None,
    name: str = "networks_wf",
) -> Workflow:
    """Back-reconstruct a run's networks at every template scale, then static and dynamic FNC.

    Parameters
    ----------
    bold_file, mask_file, confounds_file : str
        The run's fMRIPrep inputs (names of the outputs derive from ``bold_file``).
    t_r : float
        Repetition time (s).
    output_dir : Path
        Root of the msica derivatives.
    templates : list of (Path, Path or None)
        4-D template and labels TSV per scale.
    method : {"moo-icar", "dual-regression"}
        Back-reconstruction method.
    gift_compatible : bool
        MOO-ICAR exactly as GIFT's NeuroMark path; maps also written in GIFT's scale.
    resample_template : bool
        Resample templates that are not on the BOLD grid.
    device : str
        Torch device for MOO-ICAR.
    dfnc_window : int
        Sliding-window length in TRs.
    dataset_links : dict, optional
        Input dataset names and roots, for the ``Sources`` URIs of sidecars.
    name : str
        Workflow name.

    Inputs
    ------
    denoised_file
        Denoised BOLD of the run.
    sample_mask
        Indices of the volumes kept by denoising.
    """
    from workflows.interfaces.ica import BackReconstruct

    workflow = Workflow(name=name)
    sink = sink_factory(output_dir, source_file=bold_file, dataset_links=dataset_links)
    scales_text = ", ".join(Path(t).name for t, _ in templates)
    method_text = ("spatially constrained ICA (MOO-ICAR, @moo_icar"
                   + (", with GIFT's own optimiser after removing the mean over voxels of each "
                      "volume, as GIFT's NeuroMark pipeline" if gift_compatible else "") + ")"
                   if method == "moo-icar" else "dual regression (@dual_regression)")
    workflow.__desc__ = (
        f"Participant networks were estimated at {len(templates)} scale(s) ({scales_text}) by "
        f"{method_text}; maps were z-scored. Network time courses were detrended (3rd order with "
        "sine/cosine terms), motion-regressed, despiked and low-pass filtered at 0.15 Hz "
        "(5th-order Butterworth, zero phase) as in GIFT, and static FNC (Pearson, Fisher z) was "
        f"computed within and across scales, with tapered sliding windows of {dfnc_window} TRs "
        "(Gaussian sigma 3 TRs, step 1 TR) for dynamic FNC."
    )
    inputnode = pe.Node(niu.IdentityInterface(fields=["denoised_file", "sample_mask"]),
                        name="inputnode")
    nodes = []
    for index, (template, labels) in enumerate(templates):
        backrecon = pe.Node(
            BackReconstruct(mask_file=mask_file, template_file=str(template), method=method,
                            gift_compatible=gift_compatible, run_name=Path(bold_file).name,
                            resample_template=resample_template, device=device),
            name=f"backrecon_{index}",
        )
        if labels is not None:
            backrecon.inputs.labels_file = str(labels)
        workflow.connect([(inputnode, backrecon, [("denoised_file", "bold_file")])])  # fmt:skip
        nodes.append(backrecon)
    connect_networks_fnc(workflow, sink, nodes, (inputnode, "sample_mask"), t_r=t_r,
                         confounds_file=confounds_file, dfnc_window=dfnc_window,
                         gift_compatible=gift_compatible)
    return workflow


def connect_networks_fnc(
    workflow: Workflow,
    sink,
    backrecon_nodes: list,
    sample_mask: tuple,
    *,
    t_r: float,
    confounds_file: str | None,
    dfnc_window: int,
    gift_compatible: bool = False,
) -> None:
    """Sink a run's networks of every scale and connect them to its static and dynamic FNC.

    Parameters
    ----------
    workflow : Workflow
        The run's workflow, holding ``backrecon_nodes``.
    sink : callable
        From :func:`workflows.derivatives.sink_factory` with the run's BOLD as source.
    backrecon_nodes : list of Node
        One node per scale with outputs ``components_file``, ``timeseries_file``,
        ``scale``, ``fnc_networks``, ``domains`` and ``meta`` (and
        ``gift_components_file`` with ``gift_compatible``).
    sample_mask : (Node, str)
        Where the indices of the run's kept volumes come from.
    t_r : float
        Repetition time (s).
    confounds_file : str or None
        fMRIPrep confounds TSV (motion regression of the time courses).
    dfnc_window : int
        Sliding-window length in TRs.
    gift_compatible : bool
        Also sink the maps in GIFT's scale (``desc-gift``).
    """
    from workflows.interfaces.fnc import ComputeFNC

    n_scales = len(backrecon_nodes)
    merge_tcs = pe.Node(niu.Merge(n_scales), name="merge_tcs", run_without_submitting=True)
    merge_scales = pe.Node(niu.Merge(n_scales), name="merge_scales",
                           run_without_submitting=True)
    merge_networks = pe.Node(niu.Merge(n_scales, no_flatten=True), name="merge_networks",
                             run_without_submitting=True)
    merge_domains = pe.Node(niu.Merge(n_scales, no_flatten=True), name="merge_domains",
                            run_without_submitting=True)
    fnc = pe.Node(ComputeFNC(t_r=t_r, window=dfnc_window), name="fnc")
    if confounds_file:
        fnc.inputs.confounds_file = confounds_file
    for index, node in enumerate(backrecon_nodes):
        ds_maps = sink(f"ds_components_{index}", desc="ica", suffix="components",
                       extension=".nii.gz")
        ds_tcs = sink(f"ds_timeseries_{index}", desc="ica", suffix="timeseries",
                      extension=".tsv")
        workflow.connect([
            (node, ds_maps, [("components_file", "in_file"), ("meta", "meta_dict"),
                             ("scale", "scale")]),
            (node, ds_tcs, [("timeseries_file", "in_file"), ("meta", "meta_dict"),
                            ("scale", "scale")]),
            (node, merge_tcs, [("timeseries_file", f"in{index + 1}")]),
            (node, merge_scales, [("scale", f"in{index + 1}")]),
            (node, merge_networks, [("fnc_networks", f"in{index + 1}")]),
            (node, merge_domains, [("domains", f"in{index + 1}")]),
        ])  # fmt:skip
        if gift_compatible:
            ds_gift = sink(f"ds_gift_components_{index}", desc="gift", suffix="components",
                           extension=".nii.gz")
            workflow.connect([
                (node, ds_gift, [("gift_components_file", "in_file"), ("meta", "meta_dict"),
                                 ("scale", "scale")]),
            ])  # fmt:skip
    ds_relmat = sink("ds_relmat", desc="multiscale", suffix="relmat", extension=".tsv")
    ds_dfnc = sink("ds_dfnc", desc="dfnc", suffix="timeseries", extension=".tsv")
    workflow.connect([
        (sample_mask[0], fnc, [(sample_mask[1], "sample_mask")]),
        (merge_tcs, fnc, [("out", "timeseries_files")]),
        (merge_scales, fnc, [("out", "scales")]),
        (merge_networks, fnc, [("out", "fnc_networks")]),
        (merge_domains, fnc, [("out", "domains")]),
        (fnc, ds_relmat, [("relmat_file", "in_file"), ("meta", "meta_dict")]),
        (fnc, ds_dfnc, [("dfnc_file", "in_file"), ("meta", "meta_dict")]),
    ])  # fmt:skip
