"""Checks on input images and confounds, with one-line messages that say the fix.

Every function here raises :class:`~pipeline.exceptions.InputDataError` for
data that exist but cannot be used, and :class:`FileNotFoundError` for missing
files. Messages name the file and what to do, so the command line can print
them as they are (exit code 65 and 66).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from pipeline.exceptions import InputDataError

__all__ = [
    "check_confounds",
    "check_same_grid",
    "load_bold",
    "load_mask",
    "read_masked",
]

#: Errors nibabel lets through for empty, truncated or corrupt files.
_READ_ERRORS = (
    nib.filebasedimages.ImageFileError,
    EOFError,
    OSError,
    zlib.error,
    gzip.BadGzipFile,
    ValueError,
)


def _name(img: Any, default: str) -> str:
    if isinstance(img, (str, os.PathLike)):
        return str(img)
    filename = getattr(img, "get_filename", lambda: None)()
    return str(filename) if filename else default


def _load(path: str | os.PathLike | nib.Nifti1Image, what: str) -> nib.Nifti1Image:
    """Load an image's header (the voxels are read later, once, by :func:`read_masked`)."""
    if isinstance(path, nib.spatialimages.SpatialImage):
        return path
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; check the path or the BIDS query.")
    try:
        img = nib.load(path)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    proxy = img.dataobj
    if isinstance(proxy, nib.arrayproxy.ArrayProxy) and not path.name.endswith(".gz"):
        # an uncompressed file's size tells whether its voxels are all there
        expected = proxy.offset + int(np.prod(proxy.shape)) * proxy.dtype.itemsize
        size = path.stat().st_size
        if size < expected:
            raise _unreadable(path, f"truncated: {size} bytes, the header announces {expected}")
    return img


def _unreadable(path: Any, exc: BaseException) -> InputDataError:
    return InputDataError(
        f"{path} is not a readable NIfTI (corrupt or truncated gzip?: {_one_line(exc)}); "
        "re-export or re-download it."
    )


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def load_bold(
    path: str | os.PathLike | nib.Nifti1Image,
    *,
    min_volumes: int = 10,
) -> nib.Nifti1Image:
    """Open a 4-D BOLD image and check its header (the voxels are not read here).

    Parameters
    ----------
    path : path-like or nibabel image
        Preprocessed BOLD series.
    min_volumes : int, default=10
        Fewest volumes accepted (ICA and filtering need a usable series).

    Returns
    -------
    nibabel.Nifti1Image
        The image, its data still on disk: read them once with
        :func:`read_masked`, which also checks them.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    InputDataError
        If its header is unreadable, or it is not 4-D or is shorter than
        ``min_volumes``.

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> img = nib.Nifti1Image(np.ones((2, 2, 2, 12), dtype="float32"), np.eye(4))
    >>> load_bold(img).shape
    (2, 2, 2, 12)
    """
    name = _name(path, "BOLD image")
    img = _load(path, "BOLD file")
    if img.ndim != 4:
        raise InputDataError(
            f"{name} is {img.ndim}-D with shape {img.shape}; a 4-D BOLD series is expected "
            "(pass the preprocessed BOLD, not a reference or mask image)."
        )
    n_volumes = img.shape[3]
    if n_volumes < min_volumes:
        raise InputDataError(
            f"{name} has {n_volumes} volumes; at least {min_volumes} are needed. "
            "Exclude this run (--bids-filter-file) or acquire longer runs."
        )
    return img


def _streaming_dataobj(img: nib.spatialimages.SpatialImage) -> Any:
    """The image's data object, with one file handle kept open while it is read.

    (A gzipped series read volume block by volume block is then decompressed
    once, not once per block.)
    """
    proxy = img.dataobj
    if not isinstance(proxy, nib.arrayproxy.ArrayProxy) or not isinstance(
            proxy.file_like, (str, os.PathLike)):
        return proxy  # in memory, or an open file object: read as it is
    spec = (proxy.shape, proxy.dtype, proxy.offset, proxy.slope, proxy.inter)
    return nib.arrayproxy.ArrayProxy(proxy.file_like, spec, order=proxy.order,
                                     keep_file_open=True)


def read_masked(
    img: nib.spatialimages.SpatialImage,
    mask: nib.spatialimages.SpatialImage,
    *,
    name: str | None = None,
    mask_name: str | None = None,
    block_bytes: int = 64 * 2**20,
    dtype: type = np.float32,
) -> np.ndarray:
    """Read a 4-D series inside a mask, in one pass, as ``(n_volumes, n_voxels)``.

    The volumes are read in blocks of about ``block_bytes`` (on the full
    grid, in float64), so the only full-size array is the result.
    Voxels are in the order of nilearn's maskers (C order over the mask).
    Values outside the mask are never looked at (SPM writes NaN there).

    Parameters
    ----------
    img : nibabel image
        4-D series, e.g. from :func:`load_bold`.
    mask : nibabel image
        3-D mask on the same grid (non-zero voxels are in), e.g. from
        :func:`load_mask`.
    name, mask_name : str, optional
        Names of the images in messages (default: their file names).
    block_bytes : int, default=64 MiB
        Size of the blocks of volumes read at a time.
    dtype : numpy dtype, default=float32
        The result's dtype; each block is converted as it is read.

    Returns
    -------
    ndarray of shape (n_volumes, n_voxels), of ``dtype``

    Raises
    ------
    InputDataError
        If the data cannot be read (corrupt or truncated file), or hold NaN
        or infinite values inside the mask (the message gives their number).

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> data = np.ones((2, 2, 2, 3), dtype="float32")
    >>> data[0, 0, 0] = np.nan  # outside the mask
    >>> mask = np.ones((2, 2, 2), dtype="uint8")
    >>> mask[0, 0, 0] = 0
    >>> read_masked(nib.Nifti1Image(data, np.eye(4)), nib.Nifti1Image(mask, np.eye(4))).shape
    (3, 7)
    """
    name = name or _name(img, "BOLD image")
    mask_name = mask_name or _name(mask, "mask image")
    inside = np.asanyarray(mask.dataobj)
    inside = inside[..., 0] if inside.ndim == 4 else inside
    inside = np.isfinite(inside) & (inside != 0)
    n_volumes = img.shape[3]
    out = np.empty((n_volumes, int(inside.sum())), dtype=dtype)
    step = max(1, block_bytes // (8 * inside.size))
    dataobj = _streaming_dataobj(img)
    n_bad, bad_voxels = 0, np.zeros(out.shape[1], dtype=bool)
    try:
        for start in range(0, n_volumes, step):
            block = np.asanyarray(dataobj[..., start:start + step])[inside]  # (n_voxels, n)
            finite = np.isfinite(block)
            if not finite.all():
                n_bad += int(finite.size - np.count_nonzero(finite))
                bad_voxels |= ~finite.all(axis=1)
            out[start:start + block.shape[1]] = block.T
    except _READ_ERRORS as exc:
        raise _unreadable(name, exc) from exc
    finally:
        del dataobj  # closes the file handle kept open for the read
    if n_bad:
        raise InputDataError(
            f"{name} has {n_bad} NaN or infinite values inside the brain mask {mask_name} "
            f"(in {int(bad_voxels.sum())} voxels; values outside the mask are ignored); "
            "re-run preprocessing, or pass a mask that excludes those voxels."
        )
    return out


def load_mask(path: str | os.PathLike | nib.Nifti1Image) -> nib.Nifti1Image:
    """Load a 3-D brain mask (non-zero voxels are in).

    Returns
    -------
    nibabel.Nifti1Image
        Image of dtype uint8 with values 0/1, on the input grid.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    InputDataError
        If it is unreadable, not 3-D (a 4-D image with one volume is accepted),
        or empty.
    """
    name = _name(path, "mask image")
    img = _load(path, "Mask file")
    try:
        data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise _unreadable(name, exc) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputDataError(
            f"{name} has shape {img.shape}; a 3-D brain mask is expected "
            "(fMRIPrep's *_desc-brain_mask.nii.gz)."
        )
    in_mask = np.isfinite(data) & (data != 0)
    if not in_mask.any():
        raise InputDataError(f"{name} has no non-zero voxel; pass a non-empty brain mask.")
    return nib.Nifti1Image(in_mask.astype(np.uint8), img.affine)


def check_same_grid(
    img_a: nib.Nifti1Image,
    img_b: nib.Nifti1Image,
    name_a: str,
    name_b: str,
    *,
    atol: float = 1e-3,
) -> None:
    """Raise unless two images share voxel grid (first 3 dims) and affine.

    Parameters
    ----------
    img_a, img_b : nibabel images
    name_a, name_b : str
        Names used in the message (file paths).
    atol : float, default=1e-3
        Tolerance on affine entries (mm).

    Raises
    ------
    InputDataError
        If shapes or affines differ.

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> a = nib.Nifti1Image(np.zeros((2, 2, 2, 3)), np.eye(4))
    >>> b = nib.Nifti1Image(np.zeros((2, 2, 2)), np.eye(4))
    >>> check_same_grid(a, b, "bold.nii.gz", "mask.nii.gz")
    """
    shape_a, shape_b = tuple(img_a.shape[:3]), tuple(img_b.shape[:3])
    if shape_a != shape_b:
        raise InputDataError(
            f"{name_b} (shape {shape_b}) and {name_a} (shape {shape_a}) are on different "
            f"grids; resample {name_b} to the grid of {name_a} "
            "(e.g. nilearn.image.resample_to_img(..., interpolation='nearest'))."
        )
    if not np.allclose(img_a.affine, img_b.affine, atol=atol):
        diff = float(np.max(np.abs(img_a.affine - img_b.affine)))
        raise InputDataError(
            f"{name_b} and {name_a} have the same shape {shape_a} but different affines "
            f"(max difference {diff:.3g} mm); resample {name_b} to the grid of {name_a} "
            "(e.g. nilearn.image.resample_to_img(..., interpolation='nearest'))."
        )


def check_confounds(
    confounds: str | os.PathLike | pd.DataFrame,
    n_volumes: int,
    bold_path: str | os.PathLike,
) -> pd.DataFrame:
    """Load an fMRIPrep confounds table and check it has one row per volume.

    Parameters
    ----------
    confounds : path-like or pandas.DataFrame
        Tab-separated table with a header line (``n/a`` is read as NaN).
    n_volumes : int
        Number of volumes of the BOLD series.
    bold_path : path-like
        The BOLD the confounds belong to (for the message).

    Returns
    -------
    pandas.DataFrame of shape (n_volumes, n_confounds)

    Raises
    ------
    FileNotFoundError
        If the table does not exist.
    InputDataError
        If it is empty or unreadable, or its row count differs from ``n_volumes``.

    Examples
    --------
    >>> import pandas as pd
    >>> check_confounds(pd.DataFrame({"trans_x": [0.0, 0.1]}), 2, "bold.nii.gz").shape
    (2, 1)
    """
    if isinstance(confounds, pd.DataFrame):
        table, name = confounds, "confounds table"
    else:
        path = Path(confounds)
        name = str(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Confounds table {path} for {bold_path} does not exist; msica needs "
                "fMRIPrep's *_desc-confounds_timeseries.tsv next to the BOLD."
            )
        try:
            table = pd.read_csv(path, sep="\t", na_values=["n/a"])
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputDataError(
                f"{path} (confounds of {bold_path}) is empty or not a TSV table ({exc}); "
                "re-run fMRIPrep or re-download the derivatives."
            ) from exc
    if table.shape[0] != n_volumes:
        raise InputDataError(
            f"{name} has {table.shape[0]} rows but {bold_path} has {n_volumes} volumes; "
            "use the confounds table of this run (one row per volume)."
        )
    return table
