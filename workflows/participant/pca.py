"""Data-driven mode: a run's subject PCA, the participant level's share of the group ICA."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from workflows._docs import fill_doc
from workflows.execution.engine import Workflow

__all__ = ["init_subject_pca_wf"]


@fill_doc
def init_subject_pca_wf(
    *,
    subject_label: str,
    bold_file: str,
    mask_file: str,
    confounds_file: str | None,
    t_r: float,
    n_components: int,
    pca_dir: Path,
    mem_gb: float = 0.2,
    name: str = "subject_pca_wf",
) -> Workflow:
    """Reduce a denoised run by subject PCA into ``pca_dir``, for the group ICA.

    Parameters
    ----------
    subject_label : str
        Participant label without ``sub-``.
    bold_file, mask_file : str
        The run's preprocessed BOLD (it names the PCA file) and brain mask.
    confounds_file : str or None
        Its confounds TSV (recorded in the PCA's sidecar).
    %(t_r)s
    n_components : int
        Components kept (the largest group ICA model order).
    pca_dir : Path
        Where subject PCAs are written.
    %(mem_gb)s
    %(wf_name)s

    %(denoised_inputs)s

    Outputs
    -------
    pca_file
        The subject PCA (``.npz`` with a JSON sidecar).
    """
    from workflows.interfaces.groupica import SubjectPCA

    workflow = Workflow(name=name)
    meta = {"Subject": subject_label, "SourceFile": str(bold_file),
            "MaskFile": str(mask_file), "ConfoundsFile": str(confounds_file),
            "RepetitionTime": float(t_r)}
    inputnode = pe.Node(niu.IdentityInterface(fields=["denoised_file", "sample_mask"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["pca_file"]), name="outputnode")
    pca = pe.Node(SubjectPCA(mask_file=mask_file, n_components=n_components,
                             out_dir=str(pca_dir), meta=meta), name="pca",
                  mem_gb=mem_gb)
    workflow.connect([
        (inputnode, pca, [("denoised_file", "bold_file"), ("sample_mask", "sample_mask")]),
        (pca, outputnode, [("pca_file", "pca_file")]),
    ])  # fmt:skip
    return workflow
