"""Where a run's participant-level derivatives are written (the sinks), apart from the science.

The builders of :mod:`.denoise` and :mod:`.networks` expose their results on an
``outputnode``; the top-level builder (:mod:`.base`) connects them to the workflows
built here, as fMRIPrep's ``outputs.py`` does. The network maps, time courses and FNC
are still sunk by :func:`workflows.participant.networks.connect_networks_fnc`, which the
data-driven group level shares.
"""

from __future__ import annotations

from pathlib import Path

from workflows.bids.sink import init_sinks_wf
from workflows.execution.engine import Workflow

__all__ = ["init_denoise_outputs_wf"]


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
    output_dir : Path
        Root of the msica derivatives.
    bold_file : str
        The run's preprocessed BOLD, whose entities the outputs inherit.
    save_denoised : bool
        Also write the denoised BOLD (``desc-denoised_bold.nii.gz``).
    dataset_links : dict, optional
        Names and roots of the input datasets (the sidecars' ``Sources`` as BIDS URIs).
    name : str
        Workflow name.

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
