"""Memory each run's nodes need, so that ``--mem`` bounds what runs at once.

Nipype's MultiProc plugin starts a node only when the ``mem_gb`` of the nodes
running with it fits in ``--mem`` (90 % of the machine's memory when it is not
given). Every node says 0.2 GB unless told otherwise, which lets ``--nprocs``
alone decide, so eight 2 mm, 1200-volume runs (about 4 GB each) would start
together on a 16 GB node. The nodes that hold a whole run (denoising,
back-reconstruction, subject PCA) declare :func:`run_mem_gb` instead, as
fMRIPrep's nodes declare a size derived from the BOLD run's.

The rule is measured, not guessed: ``benchmarks/scale.py participant``
(template mode) peaks at 9–12 bytes per brain voxel × volume above about
0.45 GB of imported libraries (2 mm: 12.2 bytes at 300 volumes, 9.1 at 1200;
3 mm, 300 volumes: 17.2 bytes over a smaller run, 0.79 GB in all). The peak
is back-reconstruction, which holds the run once, in float64; a data-driven
run's subject PCA holds it once in float32 and peaks at about 7 bytes (3 mm,
600 volumes). The rule's 16 bytes leave a margin of 1.2–1.7 over these peaks.
"""

from __future__ import annotations

import numpy as np

from pipeline.image_checks import load_bold, load_mask

__all__ = ["BASE_GB", "BYTES_PER_VOXEL_VOLUME", "run_mem_gb"]

#: Resident memory of a worker before it reads a run (Python, NumPy, torch, nilearn).
BASE_GB = 0.6
#: Peak bytes per brain voxel × volume of a run's heaviest node.
BYTES_PER_VOXEL_VOLUME = 16


def run_mem_gb(bold_file: str, mask_file: str) -> float:
    """Memory in GB that one node holding this run may need at its peak.

    Parameters
    ----------
    bold_file : str
        4-D BOLD run; only its header is read (number of volumes,
        :func:`pipeline.image_checks.load_bold`).
    mask_file : str
        Its brain mask; the voxels inside it are counted
        (:func:`pipeline.image_checks.load_mask`).

    Returns
    -------
    float
        ``BASE_GB + BYTES_PER_VOXEL_VOLUME × voxels × volumes / 1e9``.

    Raises
    ------
    FileNotFoundError, InputDataError
        As :func:`~pipeline.image_checks.load_bold` and
        :func:`~pipeline.image_checks.load_mask` (one line naming the file).

    Examples
    --------
    A 2 mm MNI brain (about 235,000 voxels) with 1200 volumes needs about 5.1 GB
    by this rule (3.00 GB measured); with 300 volumes about 1.7 GB (1.28 GB).
    """
    n_volumes = load_bold(bold_file, min_volumes=1).shape[3]
    n_voxels = int(np.count_nonzero(load_mask(mask_file).dataobj))
    return BASE_GB + BYTES_PER_VOXEL_VOLUME * n_voxels * n_volumes / 1e9
