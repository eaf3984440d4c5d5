"""The files of data-driven group ICA: subject PCAs and the group model.

Both are numpy ``.npz`` archives, written and read only here. They are read
with ``allow_pickle=False`` (loading runs no code) and carry a
``format_version`` that is checked on load, so a file from another layout is
refused with the fix instead of being misread.

**Subject PCA** (one per run, ``<run>_desc-pca.npz`` in the PCA folder, with a
JSON sidecar of the same stem naming the run's inputs), written by the
participant level:

====================  ==========================  =========================================
key                   shape, dtype                content
====================  ==========================  =========================================
``format_version``    (), int                     :data:`SUBJECT_PCA_VERSION`
``reduced``           (p, n_voxels), float32      the run reduced to ``p`` components
                      (or float16)                (read back as float32)
``whitening``         (p, n_volumes)              ``reduced = whitening @ data``
``dewhitening``       (n_volumes, p)              ``data ~= dewhitening @ reduced``
``eigenvalues``       (p,)
``voxels``            (n_voxels,), int            flat C-order indices of the run's mask
``shape``, ``affine``  (3,), (4, 4)               the run's voxel grid
``sample_mask``       (n_volumes,), int           volumes kept by denoising
====================  ==========================  =========================================

**Group model** (``model.npz``), written by the group ICA and read by each
run's GICA back-reconstruction:

==============================  =======================  ==================================
key                             shape                    content
==============================  =======================  ==================================
``format_version``              ()                       :data:`MODEL_VERSION`
``voxels``, ``shape``,          (n_voxels,), (3,),       the group mask (voxels inside
``affine``                      (4, 4)                   every run's mask) and its grid
``model_orders``                (n_orders,)              coarse to fine
``kept_<order>``                (n_kept,)                components in the template
``unmixing_<order>``            (order, order)           ICA unmixing of the group PCA
``gw_<order>_<i>``,             (order, p_i),            run ``i``'s blocks of the group
``gd_<order>_<i>``              (p_i, order)             PCA (whitening, dewhitening)
==============================  =======================  ==================================
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.exceptions import InputDataError
from pipeline.ica._lazy import LazySequence

if TYPE_CHECKING:
    from pipeline.ica.multiscale import MultiscaleResult
    from pipeline.ica.pca import SubjectPCAResult

__all__ = [
    "MODEL_VERSION",
    "SUBJECT_PCA_VERSION",
    "GroupMask",
    "RunModel",
    "load_run_model",
    "load_subject_pca",
    "read_subject_pcas",
    "save_group_model",
    "save_subject_pca",
    "subject_pca_grid",
    "subject_pca_sidecar",
]

#: Layout version of subject-PCA files (the table in the module docstring).
SUBJECT_PCA_VERSION = 1
#: Layout version of group-model files.
MODEL_VERSION = 1


@dataclass(frozen=True)
class GroupMask:
    """Voxels of a brain mask in their grid (flat C-order indices, the order of nilearn's maskers).

    Attributes
    ----------
    voxels : ndarray of shape (n_voxels,)
    shape : tuple of int
        The grid, ``(nx, ny, nz)``.
    affine : ndarray of shape (4, 4)
    """

    voxels: np.ndarray
    shape: tuple
    affine: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """The mask as a boolean array of :attr:`shape`."""
        mask = np.zeros(int(np.prod(self.shape)), dtype=bool)
        mask[self.voxels] = True
        return mask.reshape(self.shape)


@dataclass(frozen=True)
class RunModel:
    """What the GICA back-reconstruction of one run at one scale reads from the group model.

    Attributes
    ----------
    group_mask : GroupMask
    kept : ndarray of shape (n_kept,)
        Components of the template.
    unmixing : ndarray of shape (order, order)
    group_whitening : ndarray of shape (order, p)
    group_dewhitening : ndarray of shape (p, order)
        The run's blocks of the group PCA.
    """

    group_mask: GroupMask
    kept: np.ndarray
    unmixing: np.ndarray
    group_whitening: np.ndarray
    group_dewhitening: np.ndarray


@contextmanager
def _archive(path: Path, what: str, version: int, fix: str) -> Iterator[Any]:
    """Open an archive without unpickling, check its format version, name the file in errors."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputDataError(f"{path} is not a readable {what} ({exc}); {fix}.") from exc
    with npz:
        found = int(npz["format_version"]) if "format_version" in npz.files else "none"
        if found != version:
            raise InputDataError(
                f"{path} is not a {what} of format version {version} (found: {found}; written "
                f"by another msica version or not by msica); {fix}."
            )
        try:
            yield npz
        except InputDataError:
            raise
        except ValueError as exc:  # e.g. an object array, which np.load refuses to unpickle
            raise InputDataError(f"{path} holds data msica does not read ({exc}); {fix}.") from exc


_PCA_FIX = "rerun the participant level with --model-orders"
_MODEL_FIX = "rerun the group level"


def subject_pca_sidecar(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a subject-PCA file (same stem, ``.json``)."""
    return Path(path).with_suffix(".json")


def save_subject_pca(path: str | os.PathLike, result: SubjectPCAResult, *, voxels: np.ndarray,
                     shape: Sequence[int], affine: np.ndarray, sample_mask: np.ndarray,
                     reduced_dtype: str = "float32") -> None:
    """Write one run's subject PCA (the layout in the module docstring).

    Parameters
    ----------
    path : path-like
        The ``.npz`` file (the caller makes the write atomic).
    result : SubjectPCAResult
        From :func:`pipeline.ica.pca.subject_pca`.
    voxels : ndarray of shape (n_voxels,)
        Flat indices of the run's mask voxels (the columns of ``result.reduced``).
    shape, affine
        The run's grid.
    sample_mask : ndarray of shape (n_volumes,)
        Volumes kept by denoising.
    reduced_dtype : {"float32", "float16"}
        Storage of ``reduced``: float16 halves the file and the group PCA's
        reads (its eigenvalues stay within 1e-6 of float32's on simulated
        3 mm data).
    """
    if reduced_dtype not in ("float32", "float16"):
        raise ValueError(f"reduced_dtype must be 'float32' or 'float16', got {reduced_dtype!r}.")
    with open(path, "wb") as handle:
        np.savez(handle, format_version=np.asarray(SUBJECT_PCA_VERSION),
                 reduced=result.reduced.astype(reduced_dtype), whitening=result.whitening,
                 dewhitening=result.dewhitening, eigenvalues=result.eigenvalues,
                 voxels=np.asarray(voxels), shape=np.asarray(shape[:3]),
                 affine=np.asarray(affine), sample_mask=np.asarray(sample_mask))


def load_subject_pca(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a subject-PCA file and its sidecar.

    Returns
    -------
    arrays : dict
        The entries of the module docstring's table.
    meta : dict
        The JSON sidecar (source files, repetition time, ...).

    Raises
    ------
    InputDataError
        If the sidecar is missing, or the file is unreadable or of another format version.
    """
    path = Path(path)
    sidecar = subject_pca_sidecar(path)
    if not sidecar.is_file():
        raise InputDataError(f"{path} has no sidecar {sidecar.name}; {_PCA_FIX}.")
    with _archive(path, "subject PCA", SUBJECT_PCA_VERSION, _PCA_FIX) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads(sidecar.read_text())


def subject_pca_grid(path: str | os.PathLike) -> GroupMask:
    """The mask voxels and grid of a subject PCA (its other arrays are not read)."""
    path = Path(path)
    with _archive(path, "subject PCA", SUBJECT_PCA_VERSION, _PCA_FIX) as npz:
        return GroupMask(npz["voxels"], tuple(int(n) for n in npz["shape"]), npz["affine"])


def _read_reduced(paths: Sequence[str], voxels: np.ndarray, index: int) -> np.ndarray:
    """Run ``index``'s reduced data on ``voxels`` (a subset of its mask voxels)."""
    with np.load(paths[index], allow_pickle=False) as npz:
        keep = np.searchsorted(npz["voxels"], voxels)
        return npz["reduced"][:, keep].astype(np.float32, copy=False)  # float16 files too


def _read_array(paths: Sequence[str], key: str, index: int) -> np.ndarray:
    with np.load(paths[index], allow_pickle=False) as npz:
        return npz[key]


def read_subject_pcas(paths: Sequence[str | os.PathLike], voxels: np.ndarray) -> dict:
    """The subject PCAs as sequences that read one run's file when indexed.

    Parameters
    ----------
    paths : sequence of path-like
        Subject-PCA files (checked by :func:`subject_pca_grid` first).
    voxels : ndarray of shape (n_voxels,)
        The group mask's voxels: ``reduced`` is restricted to them.

    Returns
    -------
    dict
        ``reduced``, ``whitening``, ``dewhitening`` (:class:`LazySequence`) and
        ``n_voxels``, the input of :func:`pipeline.ica.multiscale.fit_multiscale`;
        memory does not grow with the number of runs.
    """
    paths = [str(p) for p in paths]
    n = len(paths)
    return {"reduced": LazySequence(n, partial(_read_reduced, paths, voxels)),
            "whitening": LazySequence(n, partial(_read_array, paths, "whitening")),
            "dewhitening": LazySequence(n, partial(_read_array, paths, "dewhitening")),
            "n_voxels": int(np.asarray(voxels).size)}


def _model_arrays(result: MultiscaleResult) -> Iterator[tuple[str, np.ndarray]]:
    """The model file's arrays, one at a time (per-run blocks are computed as written)."""
    grid = result.group_mask
    yield "format_version", np.asarray(MODEL_VERSION)
    yield "voxels", grid.voxels
    yield "shape", np.asarray(grid.shape)
    yield "affine", grid.affine
    yield "model_orders", np.asarray(result.model_orders)
    for order in result.model_orders:
        est = result.estimators[order]
        yield f"kept_{order}", result.kept(order)
        yield f"unmixing_{order}", est.unmixing_
        for i in range(len(est.group_whitening_)):
            yield f"gw_{order}_{i}", est.group_whitening_[i]
            yield f"gd_{order}_{i}", est.group_dewhitening_[i]


def save_group_model(path: str | os.PathLike, result: MultiscaleResult) -> None:
    """Write the group model of a multi-scale group ICA (the layout in the module docstring).

    Arrays are written one at a time (``np.savez``'s format, uncompressed), so
    the per-run blocks of a large cohort are never all in memory.

    Parameters
    ----------
    path : path-like
    result : MultiscaleResult
        With its ``group_mask`` (from
        :func:`pipeline.ica.multiscale.fit_multiscale_subject_pcas`).

    Raises
    ------
    ValueError
        If ``result`` has no group mask.
    """
    if result.group_mask is None:
        raise ValueError("'result' must carry its group mask (fit_multiscale_subject_pcas).")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in _model_arrays(result):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def load_run_model(path: str | os.PathLike, order: int, run_index: int) -> RunModel:
    """Read what the back-reconstruction of run ``run_index`` at ``order`` needs.

    Raises
    ------
    InputDataError
        If the file is unreadable or of another format version, or has no such
        order or run.
    """
    path = Path(path)
    with _archive(path, "group ICA model", MODEL_VERSION, _MODEL_FIX) as npz:
        try:
            return RunModel(
                group_mask=GroupMask(npz["voxels"], tuple(int(n) for n in npz["shape"]),
                                     npz["affine"]),
                kept=npz[f"kept_{order}"], unmixing=npz[f"unmixing_{order}"],
                group_whitening=npz[f"gw_{order}_{run_index}"],
                group_dewhitening=npz[f"gd_{order}_{run_index}"])
        except KeyError as exc:
            raise InputDataError(
                f"{path} has no model order {order} or run {run_index} "
                f"(orders: {npz['model_orders'].tolist()}); {_MODEL_FIX} with these runs and "
                "--model-orders."
            ) from exc
