"""Subject-level PCA and memory-light group PCA (GIFT-style data reduction).

Spatial group ICA reduces the data twice before the ICA (Calhoun et al. 2001):

1. each subject's ``(n_volumes, n_voxels)`` data are reduced in the *time*
   dimension to ``n_subject_components`` whitened principal components
   (:func:`subject_pca`);
2. the reduced subjects are stacked in time (``(sum p_i, n_voxels)``) and
   reduced again to ``n_components`` (:func:`group_pca`).

:func:`group_pca` never forms the stacked matrix: it runs subspace (power)
iterations on the spatial Gram operator ``Y.T @ Y`` and reads one subject block
at a time, as GIFT's multi power iteration (MPOWIT, Rachakonda et al. 2016).
Blocks may be arrays or zero-argument callables that load them, so only one
subject and an ``(n_voxels, l)`` basis are held in memory: memory does not grow
with the number of subjects, apart from each subject's ``(p_i, k)`` group
dewhitening block (the group whitening is derived from it on access).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import pairwise
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import torch
from scipy import signal

from pipeline._docs import fill_doc
from pipeline._threads import torch_threads
from pipeline._validation import (
    check_array_2d,
    check_in_allowed,
    check_int,
    check_random_state,
    check_type,
    resolve_device,
)
from pipeline.ica._lazy import LazySequence

__all__ = [
    "GroupPCAResult",
    "SubjectPCAResult",
    "group_pca",
    "preprocess_subject",
    "subject_pca",
    "total_variance",
]

LOGGER = logging.getLogger("msica.ica")

PREPROCESS_METHODS = ("variance_norm", "remove_mean", "none")


class SubjectPCAResult(NamedTuple):
    """Output of :func:`subject_pca`.

    Attributes
    ----------
    reduced : ndarray of shape (n_components, n_voxels)
        Whitened temporal principal components (each row has unit variance
        across voxels): ``reduced = whitening @ data_centered``.
    whitening : ndarray of shape (n_components, n_volumes)
        ``Lambda**-1/2 @ V.T``.
    dewhitening : ndarray of shape (n_volumes, n_components)
        ``V @ Lambda**1/2``; ``data_centered ~= dewhitening @ reduced``.
    eigenvalues : ndarray of shape (n_components,)
        Eigenvalues of the ``(n_volumes, n_volumes)`` covariance, descending.
    """

    reduced: np.ndarray
    whitening: np.ndarray
    dewhitening: np.ndarray
    eigenvalues: np.ndarray


class GroupPCAResult(NamedTuple):
    """Output of :func:`group_pca`.

    Attributes
    ----------
    reduced : ndarray of shape (n_components, n_voxels)
        Whitened group principal components (unit variance rows, mutually
        uncorrelated): the input of the group ICA.
    eigenvalues : ndarray of shape (n_components,)
        Top eigenvalues of ``Y @ Y.T / (n_voxels - 1)``, descending, for the
        stacked blocks ``Y``.
    whitening : sequence of ndarray of shape (n_components, p_i)
        Per-block part of the group whitening: ``reduced = sum_i whitening[i] @ Y_i``
        (``dewhitening[i].T / eigenvalues``, computed on access).
    dewhitening : sequence of ndarray of shape (p_i, n_components)
        Per-block part of the group dewhitening: ``Y_i ~= dewhitening[i] @ reduced``
        (float32 for float32 blocks on the iterative path).
    n_iter : int
        Number of subspace iterations (1 for the exact path).
    converged : bool
        Whether the eigenvalues met ``tol`` (always True for ``"randomized"``).
    n_passes : int
        Number of times every block was read: once to start and once per
        iteration (``n_iter + 1``; 1 for the exact path).
    change : float
        Relative change of the top eigenvalues at the last iteration
        (0 for the exact path; NaN after a single iteration).
    """

    reduced: np.ndarray
    eigenvalues: np.ndarray
    whitening: Sequence
    dewhitening: Sequence
    n_iter: int
    converged: bool
    n_passes: int = 1
    change: float = 0.0


def preprocess_subject(
    data: Any, method: str = "variance_norm", *, copy: bool = True
) -> np.ndarray:
    """Voxel-wise temporal preprocessing before subject PCA.

    Parameters
    ----------
    data : array-like of shape (n_volumes, n_voxels)
        One subject's masked BOLD data.
    method : {"variance_norm", "remove_mean", "none"}, default="variance_norm"
        ``"variance_norm"`` removes each voxel's mean and linear trend and
        divides by its standard deviation (GIFT's "variance normalization",
        as used by NeuroMark); ``"remove_mean"`` only removes each voxel's
        temporal mean; ``"none"`` returns the data unchanged.
    copy : bool, default=True
        If False and ``data`` is a writeable array of the working dtype,
        ``"remove_mean"`` removes the means from ``data`` itself (it is
        overwritten and returned), so the run is held once.

    Returns
    -------
    ndarray of shape (n_volumes, n_voxels)
        float32 for float32 input, float64 otherwise. Constant voxels stay 0
        under ``"variance_norm"``.

    Raises
    ------
    ValueError
        If ``method`` is unknown or ``data`` is not a finite 2-D array.
    """
    check_in_allowed("method", method, PREPROCESS_METHODS)
    data = check_array_2d("data", data, min_rows=2, dtype=work_dtype(data))
    if method == "none":
        return data
    if method == "remove_mean":
        mean = data.mean(axis=0, keepdims=True)
        if copy or not data.flags.writeable:
            return data - mean
        data -= mean
        return data
    out = signal.detrend(data, axis=0, type="linear")
    std = out.std(axis=0, ddof=1, keepdims=True)
    std[std == 0] = np.inf
    return out / std


def work_dtype(data: Any) -> type:
    """float32 for float32 data (computed in float32, halving time and memory), else float64.

    Examples
    --------
    >>> work_dtype(np.zeros(2, dtype=np.float32)).__name__, work_dtype([1, 2]).__name__
    ('float32', 'float64')
    """
    return np.float32 if getattr(data, "dtype", None) == np.float32 else np.float64


def _top_eigh(sym: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` eigenpairs of a small symmetric float64 matrix, descending.

    One thread on CPU: for the (n_volumes x n_volumes) and (stacked rows)^2
    matrices of the PCAs, extra BLAS threads only wait on each other (and
    on a shared machine make the call tens of times slower).
    """
    with torch_threads(1, sym.device):
        vals, vecs = torch.linalg.eigh(sym)
    return vals.flip(0)[:k], vecs.flip(1)[:, :k]


@fill_doc
def subject_pca(
    data: Any,
    n_components: int,
    *,
    remove_mean: bool = True,
    device: Any = "auto",
    copy: bool = True,
) -> SubjectPCAResult:
    """Temporal PCA of one subject with whitening (GIFT ``icatb_calculate_pca``).

    Parameters
    ----------
    data : array-like of shape (n_volumes, n_voxels)
        One subject's (preprocessed) masked data.
    n_components : int
        Number of principal components to keep, in ``[1, n_volumes - 1]``.
    remove_mean : bool, default=True
        Remove each volume's spatial mean first (GIFT's "remove mean per
        timepoint"), so that the reduced rows are zero-mean across voxels.
    %(device)s
    copy : bool, default=True
        If False and ``data`` is a writeable array of the working dtype,
        the means are removed from ``data`` itself on the CPU (it is
        overwritten), so the run is held once.

    Returns
    -------
    SubjectPCAResult
        Named tuple ``(reduced, whitening, dewhitening, eigenvalues)``; see
        :class:`SubjectPCAResult` for shapes.

    Raises
    ------
    ValueError
        If ``n_components`` is out of range, or the data have fewer
        non-zero eigenvalues than requested.

    Notes
    -----
    The ``(n_volumes, n_volumes)`` covariance ``X @ X.T / (n_voxels - 1)`` is
    diagonalised (``V``, ``Lambda``, top ``n_components``). Then
    ``whitening = Lambda**-1/2 V.T``, ``dewhitening = V Lambda**1/2`` and
    ``reduced = whitening @ X``, whose rows have unit variance across voxels.
    Time courses of the group ICA are brought back to a subject's time axis
    with ``dewhitening`` (GICA back-projection). float32 data are reduced in
    float32 (``reduced`` is float32; the eigendecomposition and the
    whitening matrices are float64), other data in float64.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).randn(30, 200)
    >>> res = subject_pca(X, 5)
    >>> res.reduced.shape, res.dewhitening.shape
    ((5, 200), (30, 5))
    """
    data = check_array_2d("data", data, min_rows=2, min_cols=2, dtype=work_dtype(data))
    n_volumes, n_voxels = data.shape
    check_int("n_components", n_components, 1, n_volumes - 1, bound="n_volumes - 1",
              fix="Keep fewer subject components or supply longer runs.")
    dev = resolve_device(device)
    x = torch.as_tensor(data, device=dev)  # shares a CPU array's memory
    if remove_mean:
        mean = x.mean(dim=1, keepdim=True)
        in_place = x.device.type != "cpu" or (not copy and data.flags.writeable)
        x = x.sub_(mean) if in_place else x - mean
    cov = (x @ x.T).double() / (n_voxels - 1)
    eigvals, eigvecs = _top_eigh(cov, n_components)
    tiny = max(float(eigvals[0]), 0.0) * 1e-12
    if float(eigvals[-1]) <= tiny:
        n_ok = int((eigvals > tiny).sum())
        raise ValueError(
            f"'n_components' must not exceed the rank of the data ({n_ok} non-zero "
            f"eigenvalues). Got {n_components}. Keep at most {n_ok} subject components."
        )
    sqrt_l = torch.sqrt(eigvals)
    whitening = eigvecs.T / sqrt_l[:, None]
    dewhitening = eigvecs * sqrt_l[None, :]
    reduced = whitening.to(x.dtype) @ x
    return SubjectPCAResult(*(t.cpu().numpy() for t in (reduced, whitening, dewhitening, eigvals)))


def total_variance(data: np.ndarray, block_bytes: int = 8 * 2**20) -> float:
    """Sum over volumes of each volume's variance across voxels (``ddof=1``).

    The trace of the covariance that :func:`subject_pca` diagonalises (each
    volume centred across voxels), so ``eigenvalues.sum() / total_variance(data)``
    is the share of the variance its components keep; it can be computed
    before ``subject_pca(..., copy=False)`` centres the data in place. Equal to
    ``np.var(data, axis=1, ddof=1).sum()``, computed a block of volumes at a
    time (no temporary of the size of ``data``).

    Parameters
    ----------
    data : ndarray of shape (n_volumes, n_voxels)
        One subject's (preprocessed) masked data.
    block_bytes : int, default=8 MiB
        Size of the blocks of volumes.

    Returns
    -------
    float

    Examples
    --------
    >>> X = np.arange(12.0).reshape(3, 4) ** 2
    >>> total_variance(X) == float(np.var(X, axis=1, ddof=1).sum())
    True
    """
    rows = max(1, block_bytes // max(1, data.shape[1] * data.itemsize))
    per_volume = np.concatenate([np.var(data[start:start + rows], axis=1, ddof=1)
                                 for start in range(0, data.shape[0], rows)])
    return float(per_volume.sum())


#: Up to this many voxels, "mpowit" stacks the blocks (small at this size) and
#: diagonalises the smaller of the two Gram matrices: cheaper and exact.
EXACT_MAX_VOXELS = 4096
#: Blocks given as in-memory arrays whose stack (float32 when the blocks are
#: float32, else float64) is at most this size are also decomposed exactly (they
#: are in memory already; the copy is bounded).
EXACT_MAX_BYTES = 512 * 2**20


def _check_group_order(n_components: int, n_rows: int, n_voxels: int) -> None:
    """Refuse more group components than the stacked rows or the voxels."""
    check_int("n_components", n_components, 1, min(n_rows, n_voxels),
              bound=f"min(stacked rows={n_rows}, n_voxels={n_voxels})",
              fix="Lower the model order or keep more subject components.")


def _group_pca_exact(blocks, n_components: int, n_voxels: int) -> GroupPCAResult:
    """Exact group PCA from the smaller of the two Gram matrices (blocks kept in memory).

    Products run in the blocks' dtype (float32 subject PCAs stay float32); the
    Gram matrix is diagonalised in float64.
    """
    kept = list(blocks)
    sizes = [blk.shape[0] for blk in kept]
    stacked = torch.cat(kept, dim=0)
    del kept
    n_rows = stacked.shape[0]
    _check_group_order(n_components, n_rows, n_voxels)
    temporal = n_rows <= n_voxels
    gram = (stacked @ stacked.T if temporal else stacked.T @ stacked).double()
    theta, vecs = _top_eigh(gram, n_components)
    theta = torch.clamp(theta, min=1e-300)
    scale = np.sqrt(n_voxels - 1)
    if temporal:  # Y Y.T u = theta u: spatial v = Y.T u / sqrt(theta), and Y v = u sqrt(theta)
        proj = vecs * torch.sqrt(theta)
        reduced = ((vecs / torch.sqrt(theta) * scale).T.to(stacked.dtype)) @ stacked
    else:
        proj = (stacked @ vecs.to(stacked.dtype)).double()
        reduced = (vecs.T * scale).to(stacked.dtype)
    proj = torch.split(proj, sizes)
    return GroupPCAResult(
        reduced.cpu().numpy(),
        (theta / (n_voxels - 1)).cpu().numpy(),
        [(p / theta * scale).T.cpu().numpy() for p in proj],
        [(p / scale).cpu().numpy() for p in proj],
        1,
        True,
    )


def _load_block(block: Any, index: int, n_voxels: int | None) -> np.ndarray:
    """Return one block as a 2-D array, calling it first when it is a loader."""
    if callable(block):
        block = block()
    arr = np.asarray(block)
    if arr.ndim != 2:
        raise ValueError(
            f"'blocks[{index}]' must be a 2-D array (n_rows, n_voxels). Got shape {arr.shape}."
        )
    if n_voxels is not None and arr.shape[1] != n_voxels:
        raise ValueError(
            f"'blocks[{index}]' must have {n_voxels} columns like blocks[0]. "
            f"Got {arr.shape[1]}; mask every subject with the same mask."
        )
    return arr


@fill_doc
def group_pca(
    blocks: Sequence[np.ndarray | Callable[[], np.ndarray]],
    n_components: int,
    *,
    method: str = "mpowit",
    n_iter: int | None = None,
    tol: float = 1e-6,
    subspace_size: int | None = None,
    random_state: Any = None,
    device: Any = "auto",
) -> GroupPCAResult:
    """Group PCA over stacked subject blocks without holding them all in memory.

    Parameters
    ----------
    blocks : sequence of ndarray of shape (p_i, n_voxels), or of callables
        The subject-reduced data (e.g. ``subject_pca(...).reduced``), stacked
        in time. A zero-argument callable is called each time its block is
        needed (one block in memory at a time). A sequence is required (each
        pass reads every block again), so generators are refused.
    n_components : int
        Number of group components, in ``[1, sum p_i]``.
    method : {"mpowit", "randomized"}, default="mpowit"
        ``"mpowit"``: subspace iteration with a block of
        ``subspace_size = min(2 * n_components, sum p_i)`` vectors until the
        top eigenvalues change by less than ``tol`` (MPOWIT). The block
        must exceed the cluster of large eigenvalues (the shared signal):
        ``2 * n_components`` (GIFT's subject PCs per subject) converged in
        4 iterations (5 passes) on simulated 3 mm subject PCAs of order 100,
        as fast as ``5 * n_components`` at 40%% less work per pass, while
        ``n_components + 20`` inside the cluster had not converged after 200
        (``benchmarks/scale.py``). Up to ``EXACT_MAX_VOXELS`` (4096) voxels,
        or when every block is an in-memory array (list or tuple) and their
        stack fits ``EXACT_MAX_BYTES`` (512 MiB), the blocks are stacked and
        the smaller Gram matrix is diagonalised exactly instead
        (``n_iter=1``). Loader callables and other sequences over more voxels
        always take the iterative, one-block-at-a-time path.
        ``"randomized"``: randomized range finder with ``n_components + 10``
        vectors and a fixed number of power iterations (Halko et al. 2011).
    n_iter : int or None, default=None
        Maximum (``"mpowit"``, default 200) or exact (``"randomized"``,
        default 7) number of passes.
    tol : float, default=1e-6
        ``"mpowit"`` stops when ``||lambda_new - lambda_old|| / ||lambda_new||``
        (top ``n_components`` eigenvalues) falls below this, as in GIFT.
    subspace_size : int or None, default=None
        Number of iterated vectors (at least ``n_components``).
    %(random_state)s
    %(device)s

    Returns
    -------
    GroupPCAResult
        Named tuple ``(reduced, eigenvalues, whitening, dewhitening, n_iter,
        converged, n_passes, change)``; see :class:`GroupPCAResult`.

    Raises
    ------
    TypeError
        If ``blocks`` is not a sequence.
    ValueError
        If ``n_components`` exceeds the number of stacked rows, or blocks
        have different numbers of voxels.

    Notes
    -----
    With ``Y`` the stacked blocks, the spatial basis ``Q`` (``n_voxels x l``)
    is updated by ``Q <- orth(sum_i Y_i.T (Y_i Q))``, one block at a time;
    the Rayleigh-Ritz matrix ``sum_i (Y_i Q).T (Y_i Q)`` gives the eigenvalues
    and, at the end, the rotation to the principal axes ``V``. Every block is
    read once to start and once per iteration (``n_passes`` in the result): each
    iteration writes ``Y_i Q`` (``p_i x l``) to a temporary file, from which the
    last one gives the coordinates ``Y_i V`` without another pass. Memory is
    about three ``(n_voxels, l)`` float64 arrays plus one block, and a
    ``(p_i, k)`` dewhitening block per subject (one contiguous array); the
    temporary file holds ``sum p_i x l`` values. Float32 blocks
    (subject PCAs as msica writes them) are multiplied and summed in float32,
    twice as fast as float64 (relative eigenvalue error ~1e-8 against an exact
    eigendecomposition on simulated 3 mm data), and their dewhitening blocks
    are float32; the Rayleigh-Ritz matrix and the QR are float64. The iterations are in float64; the
    exact path works in the blocks' dtype (float32 blocks: float32 products,
    float64 eigendecomposition) and returns ``reduced`` in that dtype.
    ``converged=False`` is returned (without a warning) when ``"mpowit"``
    stops at ``n_iter``; callers decide whether to warn.

    References
    ----------
    Rachakonda S, Silva RF, Liu J, Calhoun VD (2016). Memory efficient PCA
    methods for large group ICA. Front Neurosci 10:17.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> blocks = [rng.randn(10, 300) for _ in range(4)]
    >>> res = group_pca(blocks, 5, random_state=0, device="cpu")
    >>> res.reduced.shape, len(res.dewhitening), res.dewhitening[0].shape
    ((5, 300), 4, (10, 5))
    """
    if not isinstance(blocks, Sequence) or isinstance(blocks, (str, bytes)):
        raise TypeError(
            f"'blocks' must be a sequence (list or tuple) of arrays or loader callables. "
            f"Got {type(blocks).__name__}; wrap a generator with list(...) of loaders."
        )
    if len(blocks) == 0:
        raise ValueError("'blocks' must contain at least one block. Got an empty sequence.")
    check_in_allowed("method", method, ("mpowit", "randomized"))
    check_type("n_components", n_components, (int, np.integer))
    rng = check_random_state(random_state)
    dev = resolve_device(device)

    # blocks[0] is read once here (number of voxels, dtype) and handed to the first pass
    head = [_load_block(blocks[0], 0, None)]
    n_voxels, first_dtype = head[0].shape[1], work_dtype(head[0])

    def blocks_iter(dtype=torch.float64):
        for i in range(len(blocks)):  # a LazySequence reads blocks[i] when indexed
            arr = head.pop() if head else _load_block(blocks[i], i, n_voxels)
            yield torch.as_tensor(arr, dtype=dtype, device=dev)

    if method == "mpowit":
        size = subspace_size if subspace_size is not None else 2 * n_components
        max_iter = 200 if n_iter is None else n_iter
    else:
        size = subspace_size if subspace_size is not None else n_components + 10
        max_iter = 7 if n_iter is None else n_iter
    check_int("n_iter", max_iter, 1)
    size = int(min(max(size, n_components), n_voxels))

    exact_dtype = torch.float32 if first_dtype == np.float32 else torch.float64
    # arrays given in a list or tuple are in memory already; callables and other
    # sequences (e.g. a LazySequence reading files) are read one block at a time
    in_memory = isinstance(blocks, (list, tuple)) and not any(callable(b) for b in blocks)
    n_bytes = (sum(np.asarray(b).shape[0] for b in blocks) * n_voxels * exact_dtype.itemsize
               if in_memory else None)
    if method == "mpowit" and (n_voxels <= EXACT_MAX_VOXELS
                               or (in_memory and n_bytes <= EXACT_MAX_BYTES)):
        return _group_pca_exact(blocks_iter(exact_dtype), n_components, n_voxels)
    with tempfile.TemporaryFile() as spill:
        return _group_pca_iterative(blocks_iter, exact_dtype, n_voxels, n_components, size,
                                    method, max_iter, tol, rng, dev, spill)


def _group_pca_iterative(blocks_iter: Callable[[torch.dtype], Iterator[torch.Tensor]],
                         compute: torch.dtype, n_voxels: int, n_components: int, size: int,
                         method: str, max_iter: int, tol: float, rng: np.random.RandomState,
                         dev: torch.device, spill: BinaryIO) -> GroupPCAResult:
    """Subspace iteration of :func:`group_pca`, reading the blocks once per pass.

    Products and their sums run in the blocks' precision ``compute`` (float32 subject
    PCAs: twice as fast; rounding ~1e-7, far below tol); the Rayleigh-Ritz matrix and
    the QR are float64. Each iteration writes every block's ``Y_i Q`` (``p_i x l``) to
    the file ``spill``, so the last one gives the coordinates ``Y_i V = (Y_i Q) R``
    without another pass and without memory that grows with the number of blocks.
    """
    # Start (one pass, which also counts the stacked rows): Q = Y.T G, G Gaussian.
    basis = torch.zeros((n_voxels, size), dtype=compute, device=dev)
    rows = []
    for blk in blocks_iter(compute):
        gauss = torch.as_tensor(rng.standard_normal((blk.shape[0], size)), device=dev)
        basis.addmm_(blk.T, gauss.to(compute))
        rows.append(blk.shape[0])
    n_rows = sum(rows)
    _check_group_order(n_components, n_rows, n_voxels)
    size = min(size, n_rows)
    basis, _ = torch.linalg.qr(basis[:, :size].double())

    prev = None
    converged = False
    change = float("nan")
    n_done = 0
    new_basis = torch.empty((n_voxels, size), dtype=compute, device=dev)
    ritz = torch.empty((size, size), dtype=torch.float64, device=dev)
    for n_done in range(1, max_iter + 1):
        # Q_new = sum_i Y_i.T (Y_i Q), Rayleigh-Ritz matrix sum_i (Y_i Q).T (Y_i Q): one pass
        new_basis.zero_()
        ritz.zero_()
        spill.seek(0)
        right = basis.to(compute)
        for blk in blocks_iter(compute):
            proj = blk @ right
            new_basis.addmm_(blk.T, proj)
            proj.cpu().numpy().tofile(spill)
            proj = proj.double()
            ritz.addmm_(proj.T, proj)
        del right
        theta, rot = torch.linalg.eigh(ritz)
        theta, rot = theta.flip(0), rot.flip(1)
        top = theta[:n_components]
        if prev is not None:
            change = float(torch.linalg.vector_norm(top - prev) / torch.linalg.vector_norm(top))
            converged = method == "mpowit" and change < tol
        prev = top
        if converged or (method == "randomized" and n_done == max_iter):
            converged = True
            break
        if n_done < max_iter:
            del basis  # the QR below allocates the next one
            basis, _ = torch.linalg.qr(new_basis.double())
    del new_basis
    scale = np.sqrt(n_voxels - 1)
    rot = rot[:, :n_components]
    reduced = ((basis @ rot).T * scale).cpu().numpy()  # V.T sqrt(n_voxels - 1)
    del basis
    eigvals = (theta[:n_components] / (n_voxels - 1)).cpu().numpy()
    # Each block's coordinates on the principal axes, Y_i V / sqrt(n_voxels - 1), from the
    # last pass's Y_i Q, in the blocks' precision, into one (sum p_i, k) array (views per block)
    dtype = np.float32 if compute == torch.float32 else np.float64
    coords = np.empty((n_rows, n_components), dtype=dtype)
    right = (rot / scale).cpu().numpy()
    spill.seek(0)
    offsets = np.cumsum([0] + rows)
    for start, stop in pairwise(offsets):
        proj = np.fromfile(spill, dtype=dtype, count=(stop - start) * size)
        coords[start:stop] = proj.reshape(stop - start, size) @ right
    dewhitening = [coords[a:b] for a, b in pairwise(offsets)]
    if not converged:
        LOGGER.info("group_pca (mpowit) stopped at n_iter=%d before tol=%g (change %.3g).",
                    n_done, tol, change)
    return GroupPCAResult(reduced, eigvals, _whitening(dewhitening, eigvals), dewhitening,
                          n_done, converged, n_done + 1, change)


def _whitening(dewhitening: Sequence, eigenvalues: np.ndarray) -> LazySequence:
    """Per-block group whitening ``dewhitening[i].T / eigenvalues``, computed on access.

    With ``Z = V.T sqrt(n_voxels - 1)`` and ``G_i = Y_i V / sqrt(n_voxels - 1)``,
    ``sum_i (G_i.T / lambda) Y_i = Z`` since ``Y.T Y V = V diag(lambda (n_voxels - 1))``.
    """
    safe = np.maximum(eigenvalues, 1e-300)[:, None]
    return LazySequence(len(dewhitening), partial(_divided_transpose, dewhitening, safe))


def _divided_transpose(blocks: Sequence, divisor: np.ndarray, i: int) -> np.ndarray:
    return blocks[i].T / divisor
