"""Denoising and QC of one run."""

from __future__ import annotations

from dataclasses import dataclass

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pipeline import __version__
from workflows._docs import fill_doc
from workflows.execution.engine import Workflow

__all__ = ["DenoiseOptions", "init_denoise_wf"]


@dataclass(frozen=True)
class DenoiseOptions:
    """How every BOLD run is denoised and QC'd (the defaults denoise nothing).

    Parameters
    ----------
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
        Also make the denoised BOLD as a NIfTI (``outputnode.denoised_nifti``).
    """

    strategy: str = "none"
    high_pass: float | None = None
    low_pass: float | None = None
    detrend: bool = False
    standardize: bool = False
    fd_threshold: float = 0.5
    min_volumes: int = 50
    save_denoised: bool = False


@fill_doc
def init_denoise_wf(
    *,
    bold_file: str,
    mask_file: str,
    confounds_file: str | None,
    t_r: float,
    options: DenoiseOptions = DenoiseOptions(),
    mem_gb: float = 0.2,
    name: str = "denoise_wf",
) -> Workflow:
    """Check, denoise and QC one BOLD run (its derivatives: :mod:`.outputs`).

    Parameters
    ----------
    bold_file, mask_file : str
        Preprocessed BOLD and brain mask.
    confounds_file : str or None
        fMRIPrep-style confounds TSV (None with ``options.strategy="none"``).
    %(t_r)s
    options : DenoiseOptions
        How the run is denoised.
    %(mem_gb)s
    %(wf_name)s

    Inputs
    ------
    bold_file, mask_file, confounds_file, t_r
        As the parameters (set from them).

    Outputs
    -------
    qc_file
        One-row QC table of the run.
    qc_meta
        Parameters of the denoising, for the sidecars.
    denoised_file
        Denoised run (kept volumes x mask voxels, ``.npy`` in the work directory).
    denoised_nifti
        Denoised 4-D BOLD (only with ``options.save_denoised``).
    sample_mask
        Indices of the volumes kept.
    """
    from workflows.interfaces.denoise import DenoiseBold

    workflow = Workflow(name=name)
    workflow.__desc__ = _denoise_desc(options)
    inputnode = pe.Node(
        niu.IdentityInterface(fields=["bold_file", "mask_file", "confounds_file", "t_r"]),
        name="inputnode")
    inputnode.inputs.bold_file = bold_file
    inputnode.inputs.mask_file = mask_file
    inputnode.inputs.t_r = t_r
    if confounds_file is not None:
        inputnode.inputs.confounds_file = confounds_file
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["qc_file", "qc_meta", "denoised_file", "denoised_nifti",
                                      "sample_mask"]),
        name="outputnode")
    denoise = pe.Node(
        DenoiseBold(
            strategy=options.strategy,
            detrend=options.detrend,
            standardize=options.standardize,
            fd_threshold=options.fd_threshold,
            min_volumes=options.min_volumes,
            save_nifti=options.save_denoised,
        ),
        name="denoise",
        mem_gb=mem_gb,
    )
    for field, value in (("high_pass", options.high_pass), ("low_pass", options.low_pass)):
        if value is not None:
            setattr(denoise.inputs, field, value)
    workflow.connect([
        (inputnode, denoise, [("bold_file", "bold_file"), ("mask_file", "mask_file"),
                              ("confounds_file", "confounds_file"), ("t_r", "t_r")]),
        (denoise, outputnode, [("qc_file", "qc_file"), ("qc_meta", "qc_meta"),
                               ("denoised_file", "denoised_file"),
                               ("sample_mask", "sample_mask")]),
    ])  # fmt:skip
    if options.save_denoised:
        workflow.connect([(denoise, outputnode, [("denoised_nifti", "denoised_nifti")])])  # fmt:skip
    return workflow


def _denoise_desc(options: DenoiseOptions) -> str:
    """Methods text of the denoising, with the values used."""
    if options.strategy == "none":
        steps = "were used as preprocessed (no confound regression, filtering or scaling)"
    else:
        scrub = (f", volumes with framewise displacement > {options.fd_threshold} mm censored"
                 if options.strategy == "scrubbing" else "")
        steps = (f"were denoised inside the brain mask with nilearn's '{options.strategy}' "
                 f"confound strategy (load_confounds_strategy){scrub}")
    extras = [text for flag, text in (
        (options.detrend, "linearly detrended"),
        (options.high_pass is not None, f"high-pass filtered at {options.high_pass} Hz"),
        (options.low_pass is not None, f"low-pass filtered at {options.low_pass} Hz"),
        (options.standardize, "z-scored per voxel")) if flag]
    more = f", {', '.join(extras)}" if extras else ""
    return (f"BOLD runs {steps}{more}, using msica {__version__}. Runs with fewer than "
            f"{options.min_volumes} usable volumes were refused.")
