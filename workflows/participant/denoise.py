"""Denoising and QC of one run, with its derivatives."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from pipeline import __version__
from workflows.bids.sink import sink_factory
from workflows.execution.engine import Workflow

__all__ = ["init_denoise_wf"]

def init_denoise_wf(
    *,
    bold_file: str,
    mask_file: str,
    confounds_file: str | None,
    t_r: float,
    output_dir: Path,
    strategy: str = "none",
    high_pass: float | None = None,
    low_pass: float | None = None,
    detrend: bool = False,
    standardize: bool = False,
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
