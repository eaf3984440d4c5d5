"""Nipype interface around :func:`pipeline.denoise.denoise_bold`.

The denoised run travels between nodes as a float32 ``.npy`` array
``(kept volumes, mask voxels)`` in the work directory (no gzip round trip, no
full-grid image); :func:`load_denoised` reads it back (or any 4-D NIfTI,
masked) for the nodes that use it. The NIfTI derivative is written only when
it is asked for (``--save-denoised``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from workflows.interfaces.base import PipelineInterface, given

__all__ = ["DenoiseBold", "load_denoised"]


def load_denoised(
    path: str | Path, mask_file: str | Path | nb.Nifti1Image, *, dtype: type = np.float32
) -> np.ndarray:
    """A denoised run inside its mask, ``(n_volumes, n_voxels)``.

    Parameters
    ----------
    path : path-like
        :class:`DenoiseBold`'s ``denoised_file`` (``.npy``, already masked), or
        a 4-D NIfTI (read once, inside the mask).
    mask_file : path-like or nibabel image
        The run's brain mask (the columns of a ``.npy`` are its non-zero
        voxels, in the order of nilearn's maskers).
    dtype : numpy dtype, default=float32
        Dtype of the result. The file is read in blocks straight into it, so
        float64 costs 8 bytes per voxel and volume, not 12.

    Returns
    -------
    ndarray of shape (n_volumes, n_voxels)

    Raises
    ------
    InputDataError
        If a ``.npy`` is truncated, not numeric or does not have one column
        per mask voxel, or the NIfTI cannot be read (see
        :func:`pipeline.image_checks.read_masked`).
    """
    from pipeline.image_checks import load_bold, load_mask, read_masked

    mask = load_mask(mask_file)
    if str(path).endswith(".npy"):
        n_voxels = int(np.count_nonzero(np.asanyarray(mask.dataobj)))
        return _read_npy_rows(path, n_voxels, dtype, f"{n_voxels} voxels of {mask_file}")
    return read_masked(load_bold(path, min_volumes=1), mask, name=str(path),
                       mask_name=str(mask_file), dtype=dtype)


def _read_npy_rows(
    path: str | Path, n_columns: int, dtype: type, columns: str, block_bytes: int = 64 * 2**20
) -> np.ndarray:
    """A 2-D numeric ``.npy`` of ``n_columns`` columns, read by blocks of rows into ``dtype``.

    Only the header is parsed (nothing is unpickled); ``columns`` names them in messages.
    """
    from pipeline.exceptions import InputDataError

    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, file_dtype = read_header(f)
        if len(shape) != 2 or shape[1] != n_columns:
            raise InputDataError(f"{path} has shape {shape}, not (volumes, {columns}); rerun the "
                                 "participant level with this mask.")
        if fortran_order or not np.issubdtype(file_dtype, np.number):
            raise InputDataError(f"{path} is not a C-order numeric array ({file_dtype}); rerun "
                                 "the participant level.")
        out = np.empty(shape, dtype=dtype)
        rows = max(1, block_bytes // max(1, n_columns * file_dtype.itemsize))
        for start in range(0, shape[0], rows):
            n = min(rows, shape[0] - start)
            block = np.fromfile(f, dtype=file_dtype, count=n * n_columns)
            if block.size != n * n_columns:
                raise InputDataError(f"{path} is truncated ({shape[0]} volumes announced); "
                                     "rerun the participant level.")
            out[start:start + n] = block.reshape(n, n_columns)
    return out


class _DenoiseBoldInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="preprocessed BOLD (fMRIPrep desc-preproc)")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    confounds_file = File(exists=True, desc="confounds TSV (fMRIPrep's, or the six rigid-body "
                                            "parameters); undefined: none (strategy 'none')")
    t_r = traits.Float(mandatory=True, desc="repetition time (s)")
    strategy = traits.Enum("none", "simple", "scrubbing", "compcor", usedefault=True)
    high_pass = traits.Float(desc="high-pass cut-off (Hz); undefined for none")
    low_pass = traits.Float(desc="low-pass cut-off (Hz); undefined for none")
    detrend = traits.Bool(False, usedefault=True, desc="remove each voxel's linear trend")
    standardize = traits.Bool(False, usedefault=True, desc="z-score each voxel")
    fd_threshold = traits.Float(0.5, usedefault=True, desc="FD threshold for scrubbing (mm)")
    min_volumes = traits.Int(50, usedefault=True, desc="fewest volumes accepted")
    save_nifti = traits.Bool(False, usedefault=True,
                             desc="also write the denoised run as a NIfTI (--save-denoised)")


class _DenoiseBoldOutputSpec(TraitedSpec):
    qc_file = File(exists=True, desc="one-row QC table (TSV)")
    qc_meta = traits.Dict(desc="parameters of the denoising, for the JSON sidecar")
    denoised_file = File(exists=True, desc="denoised run, float32 .npy (kept volumes x mask "
                                           "voxels), in the work directory")
    denoised_nifti = File(exists=True, desc="denoised 4-D BOLD (only with save_nifti)")
    sample_mask = traits.List(traits.Int, desc="indices of the volumes kept")


class DenoiseBold(PipelineInterface):
    """Check the inputs of one run, denoise it with nilearn and tabulate QC."""

    input_spec = _DenoiseBoldInputSpec
    output_spec = _DenoiseBoldOutputSpec

    def _run_interface(self, runtime):
        from pipeline.denoise import denoise_bold, qc_table

        inputs = self.inputs
        result = denoise_bold(
            inputs.bold_file,
            inputs.mask_file,
            given(inputs.confounds_file),
            strategy=inputs.strategy,
            t_r=inputs.t_r,
            high_pass=given(inputs.high_pass),
            low_pass=given(inputs.low_pass),
            detrend=inputs.detrend,
            standardize=inputs.standardize,
            fd_threshold=inputs.fd_threshold,
            min_volumes=inputs.min_volumes,
        )
        cwd = Path(runtime.cwd)
        self._write_table(runtime, qc_table([result.qc]), "qc.tsv", "qc_file")
        out = cwd / "denoised_bold.npy"
        np.save(out, result.data)
        if inputs.save_nifti:
            nifti = cwd / "denoised_bold.nii.gz"
            result.img.to_filename(nifti)
            self._results["denoised_nifti"] = str(nifti)
        self._results.update(
            qc_meta=json.loads(json.dumps(result.qc, default=str)),
            denoised_file=str(out),
            sample_mask=[int(i) for i in result.sample_mask],
        )
        return runtime
