"""A run's networks at every scale (back-reconstruction), then its static and dynamic FNC."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pipeline.fnc.static import FNC_MEASURES, StaticFNC
from pipeline.ica.backrecon import BACKRECON_METHODS
from workflows.bids.sink import sink_factory
from workflows.execution.engine import Workflow

__all__ = ["connect_networks_fnc", "init_networks_wf"]

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
    method : str
        Back-reconstruction method, a key of
        :data:`pipeline.ica.backrecon.BACKRECON_METHODS`.
    gift_compatible : bool
        The method's GIFT-compatible variant (MOO-ICAR exactly as GIFT's NeuroMark
        path); maps also written in GIFT's scale.
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

    Outputs
    -------
    relmat_file
        Multi-scale static FNC of the run.
    dfnc_file
        Its sliding-window FNC.

    Maps, time courses and FNC are written by :func:`connect_networks_fnc`, which the
    data-driven group level shares.
    """
    from workflows.interfaces.ica import BackReconstruct

    workflow = Workflow(name=name)
    sink = sink_factory(output_dir, source_file=bold_file, dataset_links=dataset_links)
    scales_text = ", ".join(Path(t).name for t, _ in templates)
    method_text = BACKRECON_METHODS[method].describe(gift_compatible)
    fnc_text = FNC_MEASURES[StaticFNC().kind].summary  # ComputeFNC's measure
    workflow.__desc__ = (
        f"Participant networks were estimated at {len(templates)} scale(s) ({scales_text}) by "
        f"{method_text}; maps were z-scored. Network time courses were detrended (3rd order with "
        f"sine/cosine terms), {'motion-regressed, ' if confounds_file else ''}despiked and "
        "low-pass filtered at 0.15 Hz "
        f"(5th-order Butterworth, zero phase) as in GIFT, and static FNC ({fnc_text}) was "
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
    outputnode = pe.Node(niu.IdentityInterface(fields=["relmat_file", "dfnc_file"]),
                         name="outputnode")
    workflow.connect([
        (workflow.get_node("fnc"), outputnode, [("relmat_file", "relmat_file"),
                                                ("dfnc_file", "dfnc_file")]),
    ])  # fmt:skip
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
        From :func:`workflows.bids.sink.sink_factory` with the run's BOLD as source.
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
