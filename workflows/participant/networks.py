"""A run's networks at every scale (back-reconstruction), then its static and dynamic FNC."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pipeline.fnc.static import DEFAULT_FNC_MEASURE, FNC_MEASURES
from pipeline.ica.backrecon import BACKRECON_METHODS
from workflows._docs import fill_doc
from workflows.execution.engine import Workflow

__all__ = ["NetworkOptions", "init_networks_wf", "networks_output_fields"]

#: Outputs of each scale's back-reconstruction on the outputnode (suffixed ``_<index>``).
SCALE_FIELDS = ("components_file", "timeseries_file", "scale", "meta")
#: Outputs of the FNC on the outputnode.
FNC_FIELDS = ("relmat_file", "dfnc_file", "fnc_meta")


@dataclass(frozen=True)
class NetworkOptions:
    """How every run's networks and FNC are made from the templates (template mode).

    Parameters
    ----------
    method : str
        Back-reconstruction method, a key of
        :data:`pipeline.ica.backrecon.BACKRECON_METHODS`.
    gift_compatible : bool
        The method's GIFT-compatible variant (MOO-ICAR exactly as GIFT's NeuroMark
        path); maps also made in GIFT's scale.
    resample_template : bool
        Resample templates that are not on the BOLD grid.
    device : str
        Torch device for MOO-ICAR.
    fnc_measure : str
        Static-FNC measure, a key of :data:`pipeline.fnc.static.FNC_MEASURES`.
    dfnc_window : int
        Sliding-window length in TRs.
    """

    method: str = "moo-icar"
    gift_compatible: bool = False
    resample_template: bool = False
    device: str = "auto"
    fnc_measure: str = DEFAULT_FNC_MEASURE
    dfnc_window: int = 30


def networks_output_fields(n_scales: int, *, gift_compatible: bool = False) -> list[str]:
    """Return the fields of :func:`init_networks_wf`'s outputnode.

    Parameters
    ----------
    n_scales : int
        Number of template scales.
    gift_compatible : bool
        Include the maps in GIFT's scale (``gift_components_file_<index>``).

    Returns
    -------
    list of str
        The fields of each scale (suffixed by its index), then those of the FNC.

    Examples
    --------
    >>> networks_output_fields(2)
    ['components_file_0', 'timeseries_file_0', 'scale_0', 'meta_0', 'components_file_1', \
'timeseries_file_1', 'scale_1', 'meta_1', 'relmat_file', 'dfnc_file', 'fnc_meta']
    >>> networks_output_fields(1, gift_compatible=True)[:5]
    ['components_file_0', 'timeseries_file_0', 'scale_0', 'meta_0', 'gift_components_file_0']
    """
    return [*(f"{field}_{index}" for index in range(n_scales)
              for field in _per_scale(gift_compatible)), *FNC_FIELDS]


def _per_scale(gift_compatible: bool) -> tuple[str, ...]:
    return SCALE_FIELDS + (("gift_components_file",) if gift_compatible else ())


@fill_doc
def init_networks_wf(
    *,
    bold_file: str,
    mask_file: str,
    confounds_file: str,
    t_r: float,
    templates: list[tuple[Path, Path | None]],
    options: NetworkOptions = NetworkOptions(),
    mem_gb: float = 0.2,
    name: str = "networks_wf",
) -> Workflow:
    """Back-reconstruct a run's networks at every template scale, then static and dynamic FNC.

    Its derivatives are written by
    :func:`workflows.participant.outputs.init_networks_outputs_wf`.

    Parameters
    ----------
    bold_file, mask_file, confounds_file : str
        The run's fMRIPrep inputs (``bold_file`` names the run in the time courses).
    %(t_r)s
    templates : list of (Path, Path or None)
        4-D template and labels TSV per scale.
    options : NetworkOptions, default=NetworkOptions()
        How the networks and FNC are made. Frozen, so one shared default is safe.
    %(mem_gb)s
    %(wf_name)s

    %(denoised_inputs)s

    Outputs
    -------
    components_file_<index>, timeseries_file_<index>
        z-scored maps and time courses of the networks of each scale (index in
        ``templates``).
    gift_components_file_<index>
        The maps in GIFT's scale (only with ``options.gift_compatible``).
    scale_<index>, meta_<index>
        Its model order and the parameters for the sidecars.
    relmat_file
        Multi-scale static FNC of the run.
    dfnc_file
        Its sliding-window FNC.
    fnc_meta
        Parameters of the FNC, for the sidecars.
    """
    from workflows.interfaces.fnc import ComputeFNC
    from workflows.interfaces.ica import BackReconstruct

    workflow = Workflow(name=name)
    gift_compatible = options.gift_compatible
    scales_text = ", ".join(Path(t).name for t, _ in templates)
    method_text = BACKRECON_METHODS[options.method].describe(gift_compatible)
    fnc_text = FNC_MEASURES[options.fnc_measure].summary
    workflow.__desc__ = (
        f"Participant networks were estimated at {len(templates)} scale(s) ({scales_text}) by "
        f"{method_text}; maps were z-scored. Network time courses were detrended (3rd order with "
        f"sine/cosine terms), {'motion-regressed, ' if confounds_file else ''}despiked and "
        "low-pass filtered at 0.15 Hz "
        f"(5th-order Butterworth, zero phase) as in GIFT, and static FNC ({fnc_text}) was "
        "computed within and across scales, with tapered sliding windows of "
        f"{options.dfnc_window} TRs (Gaussian sigma 3 TRs, step 1 TR) for dynamic FNC."
    )
    n_scales = len(templates)
    inputnode = pe.Node(niu.IdentityInterface(fields=["denoised_file", "sample_mask"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(
        fields=networks_output_fields(n_scales, gift_compatible=gift_compatible)),
        name="outputnode")
    merge_tcs = pe.Node(niu.Merge(n_scales), name="merge_tcs", run_without_submitting=True)
    merge_scales = pe.Node(niu.Merge(n_scales), name="merge_scales",
                           run_without_submitting=True)
    merge_networks = pe.Node(niu.Merge(n_scales, no_flatten=True), name="merge_networks",
                             run_without_submitting=True)
    merge_domains = pe.Node(niu.Merge(n_scales, no_flatten=True), name="merge_domains",
                            run_without_submitting=True)
    fnc = pe.Node(ComputeFNC(t_r=t_r, measure=options.fnc_measure, window=options.dfnc_window),
                  name="fnc")
    if confounds_file:
        fnc.inputs.confounds_file = confounds_file
    for index, (template, labels) in enumerate(templates):
        backrecon = pe.Node(
            BackReconstruct(mask_file=mask_file, template_file=str(template),
                            method=options.method, gift_compatible=gift_compatible,
                            run_name=Path(bold_file).name,
                            resample_template=options.resample_template, device=options.device),
            name=f"backrecon_{index}",
            mem_gb=mem_gb,
        )
        if labels is not None:
            backrecon.inputs.labels_file = str(labels)
        workflow.connect([
            (inputnode, backrecon, [("denoised_file", "bold_file")]),
            (backrecon, outputnode, [(field, f"{field}_{index}")
                                     for field in _per_scale(gift_compatible)]),
            (backrecon, merge_tcs, [("timeseries_file", f"in{index + 1}")]),
            (backrecon, merge_scales, [("scale", f"in{index + 1}")]),
            (backrecon, merge_networks, [("fnc_networks", f"in{index + 1}")]),
            (backrecon, merge_domains, [("domains", f"in{index + 1}")]),
        ])  # fmt:skip
    workflow.connect([
        (inputnode, fnc, [("sample_mask", "sample_mask")]),
        (merge_tcs, fnc, [("out", "timeseries_files")]),
        (merge_scales, fnc, [("out", "scales")]),
        (merge_networks, fnc, [("out", "fnc_networks")]),
        (merge_domains, fnc, [("out", "domains")]),
        (fnc, outputnode, [("relmat_file", "relmat_file"), ("dfnc_file", "dfnc_file"),
                           ("meta", "fnc_meta")]),
    ])  # fmt:skip
    return workflow
