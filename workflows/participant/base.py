"""The participant workflow: the only builder that reads :class:`~workflows.config.Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows._docs import fill_doc
from workflows.config import Settings, options_from_settings
from workflows.execution.engine import Workflow
from workflows.execution.memory import run_mem_gb
from workflows.participant.denoise import DenoiseOptions, init_denoise_wf
from workflows.participant.networks import (
    NetworkOptions,
    init_networks_wf,
    networks_output_fields,
)
from workflows.participant.outputs import (
    init_denoise_outputs_wf,
    init_networks_outputs_wf,
)
from workflows.participant.pca import init_subject_pca_wf

__all__ = ["dataset_links", "init_msica_participant_wf", "init_participant_wf",
           "participant_wf_name"]


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
        denoise=options_from_settings(DenoiseOptions, settings, strategy="denoise_strategy"),
        templates=list(zip(settings.templates, _labels_or_none(settings))),
        networks=options_from_settings(NetworkOptions, settings, method="backrecon_method"),
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


@fill_doc
def init_participant_wf(
    *,
    subject_label: str,
    runs: list[dict[str, Any]],
    output_dir: Path,
    denoise: DenoiseOptions = DenoiseOptions(),
    templates: list[tuple[Path, Path | None]] | None = None,
    networks: NetworkOptions = NetworkOptions(),
    model_orders: tuple[int, ...] = (),
    pca_dir: Path | None = None,
    dataset_links: dict[str, str] | None = None,
    name: str | None = None,
) -> Workflow:
    """Build the participant-level workflow: sub-workflows per BOLD run.

    Each run is denoised and QC'd (``run_XX_wf``) and its QC written
    (``run_XX_outputs_wf``). With ``templates`` (template mode), its networks are
    back-reconstructed at every scale and static and dynamic FNC are computed across
    scales (``run_XX_networks_wf``), and written (``run_XX_networks_outputs_wf``); with
    ``model_orders`` (data-driven mode), it is reduced by subject PCA into ``pca_dir`` for the
    group ICA.

    Parameters
    ----------
    subject_label : str
        Participant label without ``sub-``.
    runs : list of dict
        Inputs of each run, as returned by :func:`workflows.bids.collect_runs`
        (keys ``bold``, ``mask``, ``confounds``, ``t_r``, ``entities``).
    %(output_dir)s
    denoise : DenoiseOptions, default=DenoiseOptions()
        How every run is denoised (the default: as preprocessed). Frozen, so one shared
        default is safe.
    templates : list of (Path, Path or None), optional
        4-D template and its labels TSV, one pair per scale.
    networks : NetworkOptions, default=NetworkOptions()
        How every run's networks and FNC are made from ``templates``. Frozen, so one
        shared default is safe.
    model_orders : tuple of int
        Group ICA model orders (data-driven mode, used when no ``templates``).
    pca_dir : Path, optional
        Where subject PCAs are written (data-driven mode).
    %(dataset_links)s
    name : str, optional
        Workflow name (default ``sub_<label>_wf``).

    Returns
    -------
    Workflow
    """
    if not templates and model_orders and pca_dir is None:
        raise ValueError("'pca_dir' is needed with model orders (data-driven mode).")
    workflow = Workflow(name=name or participant_wf_name(subject_label))
    for index, run in enumerate(runs):
        run_inputs = {"bold_file": run["bold"], "mask_file": run["mask"],
                      "confounds_file": run["confounds"], "t_r": run["t_r"],
                      "mem_gb": run_mem_gb(run["bold"], run["mask"])}
        run_wf = init_denoise_wf(**run_inputs, options=denoise, name=f"run_{index:02d}_wf")
        ds_run_wf = init_denoise_outputs_wf(
            output_dir=output_dir, bold_file=run["bold"], save_denoised=denoise.save_denoised,
            dataset_links=dataset_links, name=f"run_{index:02d}_outputs_wf")
        workflow.connect([
            (run_wf, ds_run_wf, [("outputnode.qc_file", "inputnode.qc_file"),
                                 ("outputnode.qc_meta", "inputnode.meta")]),
        ])  # fmt:skip
        if denoise.save_denoised:
            workflow.connect([
                (run_wf, ds_run_wf, [("outputnode.denoised_nifti", "inputnode.denoised_nifti")]),
            ])  # fmt:skip
        if templates:
            networks_wf = init_networks_wf(**run_inputs, templates=templates, options=networks,
                                           name=f"run_{index:02d}_networks_wf")
            ds_networks_wf = init_networks_outputs_wf(
                output_dir=output_dir, bold_file=run["bold"], n_scales=len(templates),
                gift_compatible=networks.gift_compatible, dataset_links=dataset_links,
                name=f"run_{index:02d}_networks_outputs_wf")
            fields = networks_output_fields(len(templates),
                                            gift_compatible=networks.gift_compatible)
            workflow.connect([
                (networks_wf, ds_networks_wf, [(f"outputnode.{field}", f"inputnode.{field}")
                                               for field in fields]),
            ])  # fmt:skip
        elif model_orders:
            networks_wf = init_subject_pca_wf(
                **run_inputs, subject_label=subject_label, n_components=max(model_orders),
                pca_dir=pca_dir, name=f"run_{index:02d}_pca_wf")
        else:
            continue
        workflow.connect([
            (run_wf, networks_wf, [("outputnode.denoised_file", "inputnode.denoised_file"),
                                   ("outputnode.sample_mask", "inputnode.sample_mask")]),
        ])  # fmt:skip
    return workflow
