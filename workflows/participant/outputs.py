"""Where a run's participant-level derivatives are written (the sinks), apart from the science.

The builders of :mod:`.denoise` and :mod:`.networks` expose their results on an
``outputnode``; the top-level builder (:mod:`.base`) connects them to the workflows
built here, as fMRIPrep's ``outputs.py`` does.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from workflows._docs import fill_doc
from workflows.bids.sink import init_sinks_wf, sink_factory
from workflows.execution.engine import Workflow
from workflows.participant.networks import networks_output_fields

__all__ = ["init_denoise_outputs_wf", "init_networks_outputs_wf"]


@fill_doc
def init_denoise_outputs_wf(
    *,
    output_dir: Path,
    bold_file: str,
    save_denoised: bool = False,
    dataset_links: dict[str, str] | None = None,
    name: str = "denoise_outputs_wf",
) -> Workflow:
    """Write a run's QC table (and denoised BOLD) with their sidecars.

    Parameters
    ----------
    %(output_dir)s
    bold_file : str
        The run's preprocessed BOLD, whose entities the outputs inherit.
    save_denoised : bool
        Also write the denoised BOLD (``desc-denoised_bold.nii.gz``).
    %(dataset_links)s
    %(wf_name)s

    Inputs
    ------
    qc_file
        One-row QC table (``desc-denoise_qc.tsv``).
    denoised_nifti
        Denoised 4-D BOLD (used with ``save_denoised``).
    meta
        Parameters of the denoising, for the sidecars.

    Outputs
    -------
    qc_file, denoised_nifti
        The written derivatives.
    """
    outputs = {"qc_file": ("meta", {"desc": "denoise", "suffix": "qc", "extension": ".tsv"})}
    if save_denoised:
        outputs["denoised_nifti"] = (
            "meta", {"desc": "denoised", "suffix": "bold", "extension": ".nii.gz"})
    return init_sinks_wf(output_dir=output_dir, outputs=outputs, source_file=bold_file,
                         dataset_links=dataset_links, name=name)


def init_networks_outputs_wf(
    *,
    n_scales: int,
    gift_compatible: bool = False,
    output_dir: Path,
    bold_file: str,
    dataset_links: dict[str, str] | None = None,
    name: str = "networks_outputs_wf",
) -> Workflow:
    """Write a run's network maps and time courses of every scale, and its FNC, with sidecars.

    Parameters
    ----------
    n_scales : int
        Number of template scales.
    gift_compatible : bool
        Also write the maps in GIFT's scale (``desc-gift_components.nii.gz``).
    output_dir, bold_file, dataset_links, name
        As for :func:`init_denoise_outputs_wf`.

    Inputs
    ------
    As the outputs of :func:`workflows.participant.networks.init_networks_wf`:

    components_file_<index>, timeseries_file_<index>, gift_components_file_<index>
        Maps (``desc-ica_components.nii.gz``, and ``desc-gift`` with ``gift_compatible``)
        and time courses (``desc-ica_timeseries.tsv``) of each scale.
    scale_<index>, meta_<index>
        Its model order (the ``scale`` entity) and sidecar content.
    relmat_file, dfnc_file
        Static (``desc-multiscale_relmat.tsv``) and sliding-window
        (``desc-dfnc_timeseries.tsv``) FNC.
    fnc_meta
        Their sidecar content.

    Outputs
    -------
    components_file_<index>, timeseries_file_<index>, gift_components_file_<index>, relmat_file, dfnc_file
        The written derivatives.
    """
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(
        fields=networks_output_fields(n_scales, gift_compatible=gift_compatible)),
        name="inputnode")
    sink = sink_factory(output_dir, source_file=bold_file, dataset_links=dataset_links)
    sinks = {"relmat_file": ("fnc_meta", sink("ds_relmat", desc="multiscale", suffix="relmat",
                                              extension=".tsv")),
             "dfnc_file": ("fnc_meta", sink("ds_dfnc", desc="dfnc", suffix="timeseries",
                                            extension=".tsv"))}
    for index in range(n_scales):
        scale_sinks = {
            "components_file": sink(f"ds_components_{index}", desc="ica", suffix="components",
                                    extension=".nii.gz"),
            "timeseries_file": sink(f"ds_timeseries_{index}", desc="ica", suffix="timeseries",
                                    extension=".tsv"),
        }
        if gift_compatible:
            scale_sinks["gift_components_file"] = sink(
                f"ds_gift_components_{index}", desc="gift", suffix="components",
                extension=".nii.gz")
        for field, node in scale_sinks.items():
            workflow.connect([(inputnode, node, [(f"scale_{index}", "scale")])])  # fmt:skip
            sinks[f"{field}_{index}"] = (f"meta_{index}", node)
    outputnode = pe.Node(niu.IdentityInterface(fields=list(sinks)), name="outputnode")
    for field, (meta, node) in sinks.items():
        workflow.connect([
            (inputnode, node, [(field, "in_file"), (meta, "meta_dict")]),
            (node, outputnode, [("out_file", field)]),
        ])  # fmt:skip
    return workflow
