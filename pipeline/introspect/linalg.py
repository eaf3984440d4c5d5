"""Spectra of a batch gradient ``G = Dᵀ A`` without forming ``G``.

A layer's batch gradient is a sum of outer products: with ``A`` the layer's
input rows (activations, shape ``(n_rows, n)``) and ``D`` the matching rows of
the backpropagated deltas (shape ``(n_rows, m)``), the weight gradient is
``G = Dᵀ A`` of shape ``(m, n)``. A row is one sample for a dense layer, one
(sample, position) pair for a convolution and one (sample, time step) pair for
a recurrent cell. This module holds only the linear algebra; which rows a
layer produces is decided in :mod:`pipeline.introspect.derivatives`.

Three exact routes are offered, all returning the same numbers up to rounding:

``"qr"``
    Reduced QR factorisations ``Dᵀ = Q_D R_D`` and ``Aᵀ = Q_A R_A`` give
    ``G = Q_D (R_D R_Aᵀ) Q_Aᵀ``; ``Q_D`` and ``Q_A`` have orthonormal columns,
    so ``svdvals(G) = svdvals(R_D R_Aᵀ)``, a ``min(m, n_rows) x min(n, n_rows)``
    core. Cost ``O(n_rows² (m + n))``. Accurate to the working precision.
``"gram"``
    The squared singular values are the non-zero eigenvalues of
    ``K_A K_D`` with ``K_A = A Aᵀ`` and ``K_D = D Dᵀ`` (``n_rows x n_rows``),
    computed from the symmetric form ``W_Aᵀ K_D W_A`` where
    ``K_A = W_A W_Aᵀ``. Every group's spectrum comes from the group's
    sub-blocks of the same two Gram matrices, as one batched ``eigh``. Squaring
    doubles the condition number: small singular values lose half the digits
    (use float64 when they matter).
``"direct"``
    Form ``D_gᵀ A_g`` for each group and take its singular values. Cheaper
    than the other two when rows outnumber the layer's width, which is the
    case for convolutions with many positions.

``"auto"`` picks the cheapest of ``"qr"`` and ``"direct"`` from a flop count.

Note on the algebra: the factorisation must be of ``Dᵀ`` and ``Aᵀ`` (columns =
rows of the batch), not of ``D`` and ``A``. With ``D = Q R`` the expression
``Rᵀ Qᵀ Q_A R_A`` is still ``m x n`` and nothing is saved.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, check_int, check_random_state
from pipeline.exceptions import ConvergenceWarning

__all__ = [
    "METHODS",
    "TopSingularValues",
    "batch_and_group_svdvals",
    "choose_method",
    "effective_rank",
    "gradient_svdvals",
    "group_gradient_svdvals",
    "numerical_rank",
    "top_singular_values",
]

METHODS = ("auto", "qr", "gram", "direct")


def _check_factors(D: torch.Tensor, A: torch.Tensor) -> None:
    if D.ndim != 2 or A.ndim != 2:
        raise ValueError(
            f"'D' and 'A' must be 2-D (n_rows, width). Got shapes {tuple(D.shape)} and "
            f"{tuple(A.shape)}."
        )
    if D.shape[0] != A.shape[0]:
        raise ValueError(
            f"'D' and 'A' must have the same number of rows (one per sample, position or "
            f"time step). Got {D.shape[0]} and {A.shape[0]}."
        )


def choose_method(method: str, n_rows: int, m: int, n: int, n_groups: int = 1) -> str:
    """Resolve ``method="auto"`` to ``"qr"`` or ``"direct"`` by a flop count.

    Parameters
    ----------
    method : {"auto", "qr", "gram", "direct"}
        Anything but ``"auto"`` is returned as is.
    n_rows, m, n : int
        Rows of ``D`` / ``A`` and their widths.
    n_groups : int, default=1
        Number of spectra wanted (whole batch plus groups).

    Returns
    -------
    str

    Examples
    --------
    >>> choose_method("auto", n_rows=64, m=256, n=5001)
    'qr'
    >>> choose_method("auto", n_rows=6400, m=16, n=41)
    'direct'
    """
    check_in_allowed("method", method, METHODS)
    if method != "auto":
        return method
    s = max(1, math.ceil(n_rows / max(1, n_groups)))
    k1, k2 = min(m, s), min(n, s)
    qr_cost = n_groups * (2.0 * (m + n) * s * s + 2.0 * k1 * k2 * s + 4.0 * min(k1, k2) ** 2 * max(k1, k2))
    direct_cost = 2.0 * n_rows * m * n + n_groups * 4.0 * min(m, n) ** 2 * max(m, n)
    return "direct" if direct_cost < qr_cost else "qr"


def _pad_groups(
    X: torch.Tensor, index_lists: list[torch.Tensor], size: int
) -> torch.Tensor:
    """Stack the row subsets of ``X`` into ``(n_groups, size, width)``, zero padded."""
    out = X.new_zeros((len(index_lists), size, X.shape[1]))
    for g, idx in enumerate(index_lists):
        out[g, : idx.numel()] = X.index_select(0, idx)
    return out


def _batched_svdvals(D: torch.Tensor, A: torch.Tensor, method: str) -> torch.Tensor:
    """Singular values of ``D[g]ᵀ A[g]`` for a batch ``(n_groups, rows, ·)``.

    Returns ``(n_groups, min(rows, m, n))``, descending.
    """
    rows, m, n = D.shape[-2], D.shape[-1], A.shape[-1]
    k = min(rows, m, n)
    if method == "direct":
        G = D.transpose(-2, -1) @ A
        return torch.linalg.svdvals(G)[..., :k]
    if method == "qr":
        R_D = torch.linalg.qr(D.transpose(-2, -1), mode="r")[1]  # (g, min(m, rows), rows)
        R_A = torch.linalg.qr(A.transpose(-2, -1), mode="r")[1]  # (g, min(n, rows), rows)
        core = R_D @ R_A.transpose(-2, -1)
        return torch.linalg.svdvals(core)[..., :k]
    K_A = A @ A.transpose(-2, -1)  # "gram"
    K_D = D @ D.transpose(-2, -1)
    return _gram_svdvals(K_A, K_D)[..., :k]


def _gram_svdvals(K_A: torch.Tensor, K_D: torch.Tensor) -> torch.Tensor:
    """``sqrt(eig(K_A K_D))`` from the symmetric form, descending, batched."""
    lam, V = torch.linalg.eigh(K_A)
    W = V * lam.clamp_min(0).sqrt().unsqueeze(-2)
    M = W.transpose(-2, -1) @ K_D @ W
    M = 0.5 * (M + M.transpose(-2, -1))
    ev = torch.linalg.eigvalsh(M).clamp_min(0).sqrt()
    return ev.flip(-1)


def gradient_svdvals(D: torch.Tensor, A: torch.Tensor, *, method: str = "auto") -> torch.Tensor:
    """Singular values of ``Dᵀ A`` without forming it (unless cheaper).

    Parameters
    ----------
    D : Tensor of shape (n_rows, m)
        Backpropagated deltas, one row per sample (or sample x position).
    A : Tensor of shape (n_rows, n)
        Layer inputs, matching rows of ``D``.
    method : {"auto", "qr", "gram", "direct"}, default="auto"
        See the module docstring.

    Returns
    -------
    Tensor of shape (min(n_rows, m, n),)
        Singular values in descending order. The remaining
        ``min(m, n) - min(n_rows, m, n)`` singular values of ``Dᵀ A`` are zero.

    Raises
    ------
    ValueError
        If the shapes disagree or ``method`` is unknown.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> D, A = torch.randn(4, 6, generator=g), torch.randn(4, 9, generator=g)
    >>> s = gradient_svdvals(D, A, method="qr")
    >>> bool(torch.allclose(s, torch.linalg.svdvals(D.T @ A)[:4], atol=1e-5))
    True
    """
    _check_factors(D, A)
    meth = choose_method(method, D.shape[0], D.shape[1], A.shape[1], 1)
    return _batched_svdvals(D.unsqueeze(0), A.unsqueeze(0), meth)[0]


def group_gradient_svdvals(
    D: torch.Tensor,
    A: torch.Tensor,
    row_groups: torch.Tensor,
    n_groups: int,
    *,
    method: str = "auto",
) -> list[torch.Tensor]:
    """Spectrum of each group's share ``D_gᵀ A_g`` of the batch gradient.

    The shares add up to the whole gradient: ``Σ_g D_gᵀ A_g = Dᵀ A``.

    Parameters
    ----------
    D : Tensor of shape (n_rows, m)
    A : Tensor of shape (n_rows, n)
    row_groups : LongTensor of shape (n_rows,)
        Group code in ``[0, n_groups)`` of each row.
    n_groups : int
        Number of groups.
    method : {"auto", "qr", "gram", "direct"}, default="auto"
        See :func:`batch_and_group_svdvals`.

    Returns
    -------
    list of Tensor
        Entry ``g`` has shape ``(min(n_rows_g, m, n),)``, descending; empty
        for a group without rows.
    """
    return batch_and_group_svdvals(D, A, row_groups, n_groups, method=method)[1]


def batch_and_group_svdvals(
    D: torch.Tensor,
    A: torch.Tensor,
    row_groups: torch.Tensor | None,
    n_groups: int,
    *,
    method: str = "auto",
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Spectra of the whole batch gradient and of each group's share, sharing work.

    ``"qr"``: one pair of reduced QR factorisations of the whole batch,
    ``Dᵀ = Q_D R_D`` and ``Aᵀ = Q_A R_A``. A group's rows are a subset ``S``
    of the columns, so ``D_Sᵀ A_S = Q_D (R_D[:, S] R_A[:, S]ᵀ) Q_Aᵀ`` and its
    singular values are those of the small core ``R_D[:, S] R_A[:, S]ᵀ``
    (``min(m, n_rows) x min(n, n_rows)``), shrunk to at most
    ``n_rows_S x n_rows_S`` by a second, small QR of each factor; the cores of
    all groups are one batched SVD. ``"gram"``: ``K_A = A Aᵀ`` and ``K_D = D Dᵀ`` once; each
    group's spectrum from its diagonal sub-blocks, one batched ``eigh``.
    ``"direct"``: each share formed and decomposed (batched).

    Parameters
    ----------
    D : Tensor of shape (n_rows, m)
    A : Tensor of shape (n_rows, n)
    row_groups : LongTensor of shape (n_rows,) or None
        Group code in ``[0, n_groups)`` of each row; ``None`` for no groups.
    n_groups : int
    method : {"auto", "qr", "gram", "direct"}, default="auto"

    Returns
    -------
    whole : Tensor of shape (min(n_rows, m, n),)
    groups : list of Tensor
        Entry ``g`` of shape ``(min(n_rows_g, m, n),)``; empty list without groups.
    """
    _check_factors(D, A)
    n_rows, m, n = D.shape[0], D.shape[1], A.shape[1]
    if row_groups is None:
        n_groups = 0
    elif row_groups.shape != (n_rows,):
        raise ValueError(
            f"'row_groups' must have one entry per row ({n_rows}). "
            f"Got shape {tuple(row_groups.shape)}."
        )
    elif n_rows and (int(row_groups.min()) < 0 or int(row_groups.max()) >= n_groups):
        raise ValueError(
            f"'row_groups' must hold codes in [0, n_groups={n_groups}). Got values in "
            f"[{int(row_groups.min())}, {int(row_groups.max())}]."
        )
    idx = [torch.nonzero(row_groups == g).flatten() for g in range(n_groups)]
    sizes = [int(i.numel()) for i in idx]
    present = [g for g in range(n_groups) if sizes[g] > 0]
    groups_out = [D.new_zeros(0) for _ in range(n_groups)]
    meth = choose_method(method, n_rows, m, n, 1 + len(present))
    s = max(sizes, default=0)
    k = min(n_rows, m, n)
    sub = [idx[g] for g in present]
    if meth == "direct":
        if present:  # the shares add up to the whole gradient: one batched SVD for all
            # one GEMM for all shares: rows of D spread over group blocks, A not copied
            onehot = torch.nn.functional.one_hot(row_groups, n_groups).to(D.dtype)
            D_blocks = (onehot.unsqueeze(2) * D.unsqueeze(1)).reshape(n_rows, n_groups * m)
            shares = (D_blocks.T @ A).reshape(n_groups, m, n)[present]
            allv = torch.linalg.svdvals(torch.cat([shares.sum(0, keepdim=True), shares]))
            whole, vals = allv[0, :k], allv[1:]
        else:
            whole = torch.linalg.svdvals(D.T @ A)[:k]
    elif meth == "qr":
        R_D = torch.linalg.qr(D.T, mode="r")[1]  # (min(m, n_rows), n_rows)
        R_A = torch.linalg.qr(A.T, mode="r")[1]  # (min(n, n_rows), n_rows)
        whole = torch.linalg.svdvals(R_D @ R_A.T)[:k]
        if present:
            X = _pad_groups(R_D.T, sub, s).transpose(1, 2)  # (groups, k1, s): R_D[:, S]
            Y = _pad_groups(R_A.T, sub, s).transpose(1, 2)  # (groups, k2, s): R_A[:, S]
            # X Yᵀ = Q_X (R_X R_Yᵀ) Q_Yᵀ: shrink each group's core to at most s x s
            if s < X.shape[1]:
                X = torch.linalg.qr(X, mode="r")[1]
            if s < Y.shape[1]:
                Y = torch.linalg.qr(Y, mode="r")[1]
            vals = torch.linalg.svdvals(X @ Y.transpose(1, 2))
    else:  # gram
        K_A = A @ A.T
        K_D = D @ D.T
        whole = _gram_svdvals(K_A, K_D)[:k]
        if present:
            KA = K_A.new_zeros((len(present), s, s))
            KD = K_D.new_zeros((len(present), s, s))
            for j, g in enumerate(present):
                i = idx[g]
                KA[j, : sizes[g], : sizes[g]] = K_A[i][:, i]
                KD[j, : sizes[g], : sizes[g]] = K_D[i][:, i]
            vals = _gram_svdvals(KA, KD)
    for j, g in enumerate(present):
        groups_out[g] = vals[j, : min(sizes[g], m, n)]
    return whole, groups_out


def effective_rank(singular_values: Any) -> float:
    """Entropy-based effective rank (Roy & Vetterli, 2007).

    ``exp(H(p))`` with ``p_i = σ_i / Σ_j σ_j`` and ``H`` the Shannon entropy
    (natural log). Equals ``r`` for ``r`` equal non-zero singular values.

    Parameters
    ----------
    singular_values : array-like of shape (k,)

    Returns
    -------
    float
        ``0.0`` for an all-zero spectrum.

    References
    ----------
    .. [1] Roy, O., Vetterli, M. (2007). The effective rank: a measure of
       effective dimensionality. EUSIPCO, 606-610.

    Examples
    --------
    >>> round(effective_rank([2.0, 2.0, 2.0, 0.0]), 6)
    3.0
    """
    s = np.abs(np.asarray(singular_values, dtype=np.float64))
    total = s.sum()
    if total <= 0 or not np.isfinite(total):
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def numerical_rank(singular_values: Any, rtol: float) -> int:
    """Number of singular values above ``rtol * max(singular_values)``.

    Examples
    --------
    >>> numerical_rank([1.0, 1e-3, 1e-9], rtol=1e-6)
    2
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if s.size == 0 or s.max() <= 0:
        return 0
    return int(np.sum(s > rtol * s.max()))


@dataclass(frozen=True)
class TopSingularValues:
    """Result of :func:`top_singular_values`.

    Attributes
    ----------
    values : Tensor of shape (k,)
        Leading singular values, descending.
    left : Tensor of shape (m, k)
        Left singular vectors (columns).
    right : Tensor of shape (n, k)
        Right singular vectors (columns).
    n_iter : int
        Subspace iterations run.
    converged : bool
        Whether the relative change of ``values`` fell below ``tol``.
    """

    values: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    n_iter: int
    converged: bool


@fill_doc
def top_singular_values(
    D: torch.Tensor,
    A: torch.Tensor,
    k: int,
    *,
    n_oversamples: int = 5,
    max_iter: int = 50,
    tol: float = 1e-6,
    random_state: Any = None,
) -> TopSingularValues:
    """Top-``k`` singular triplets of ``Dᵀ A`` by structured subspace iteration.

    ``G = Dᵀ A`` is never formed: products are ``G V = Dᵀ (A V)`` and
    ``Gᵀ U = Aᵀ (D U)``, each ``O(n_rows (m + n) p)`` with ``p = k +
    n_oversamples``. After each sweep a Rayleigh-Ritz step on ``Gᵀ U`` gives
    the current estimates.

    Parameters
    ----------
    D : Tensor of shape (n_rows, m)
    A : Tensor of shape (n_rows, n)
    k : int
        Number of singular values, ``1 <= k <= min(m, n)``.
    n_oversamples : int, default=5
        Extra subspace columns (faster, more reliable convergence).
    max_iter : int, default=50
        Maximum number of sweeps.
    tol : float, default=1e-6
        Stop when ``max |Δσ| <= tol * σ_1``.
    %(random_state)s

    Returns
    -------
    TopSingularValues

    Raises
    ------
    ValueError
        If ``k`` is out of range.

    Warns
    -----
    ConvergenceWarning
        If ``tol`` was not met after ``max_iter`` sweeps.
    """
    _check_factors(D, A)
    m, n = D.shape[1], A.shape[1]
    check_int("k", k, 1, min(m, n), bound="min(m, n)")
    p = min(int(k) + max(0, int(n_oversamples)), m, n)
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    V = torch.randn(n, p, generator=gen, dtype=A.dtype).to(A.device)
    V = torch.linalg.qr(V)[0]
    prev = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        U = torch.linalg.qr(D.T @ (A @ V))[0]  # (m, p)
        W = A.T @ (D @ U)  # Gᵀ U, (n, p)
        Vw, s, Zh = torch.linalg.svd(W, full_matrices=False)  # W = Vw diag(s) Zh
        V = Vw
        if prev is not None and torch.max(torch.abs(s[:k] - prev)) <= tol * max(float(s[0]), 1e-300):
            converged = True
            break
        prev = s[:k].clone()
    if not converged:
        warnings.warn(
            f"top_singular_values did not converge in max_iter={max_iter} sweeps (tol={tol}). "
            "Increase 'max_iter' or 'n_oversamples', or use the exact spectrum (top_k=None).",
            ConvergenceWarning,
            stacklevel=2,
        )
    left = U @ Zh.T  # G V_i = σ_i u_i  ->  u = U z
    return TopSingularValues(
        values=s[:k], left=left[:, :k], right=V[:, :k], n_iter=it, converged=converged
    )

