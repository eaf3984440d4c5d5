"""Spatially constrained ICA (MOO-ICAR / GIG-ICA) for per-participant back-reconstruction.

MOO-ICAR (Du & Fan, 2013) estimates, for one participant, one independent
component per template network. On the participant's whitened data ``Y``
each network ``k`` maximises, over unit vectors ``w``,

.. math::

    f_k(w) = a \\frac{2}{\\pi} \\arctan\\big(c_k J(w^T Y)\\big) + b\\, E[(w^T Y) r_k],
    \\qquad J(y) = \\big(E[\\log\\cosh y] - \\nu\\big)^2,

with ``a = b = 0.5``, ``r_k`` the standardised template map, ``nu`` the
expectation of ``log cosh`` under a standard Gaussian (GIFT's constant
0.3745672075) and ``c_k`` fixed at the start so that both terms weigh the same
(``c_k = tan(pi E[y0 r_k] / 2) / J(y0)``).

Two modes share this objective:

* ``gift_compatible=True`` reproduces GIFT's ``icatb_gigicar.m`` step for step
  (see Notes of :func:`moo_icar`), quirks included, so that maps and time
  courses can be compared with GIFT's.
* the default mode keeps GIFT's objective, initial point and output
  formulas (whitening keeps the numerical rank instead of every eigenvalue
  above ``eps``) but optimises properly: Riemannian gradient ascent on the
  unit sphere (the gradient projected on the tangent space) with
  Barzilai-Borwein step sizes and a non-monotone Armijo line search,
  returning the best *accepted* point. GIFT's normalised Euclidean gradient
  is ~99% radial (it mostly changes the norm of ``w``, which the
  renormalisation undoes), so GIFT's line search halves its step down to
  ~1e-15 after one to three moves and stalls; the default mode keeps
  climbing. On the 40 COINSTAC runs it ends higher than GIFT on all 2120
  networks.

All networks are updated together (one batched tensor operation per pass,
per-network step sizes and convergence masks), in float64, on CPU or CUDA.
Memory: besides the caller's array, the run is held once, as a float64 copy
centred and whitened in place (8 bytes per voxel and volume; with
``copy=False`` the caller's float64 array itself); the iterations
read it one block of voxels at a time (no array of networks x voxels but
the templates and the maps).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from pipeline._docs import fill_doc
from pipeline._validation import check_int, check_type, resolve_device
from pipeline.exceptions import ConvergenceWarning, InputDataError
from pipeline.ica.backrecon import check_maps_fit_data

__all__ = ["SpatiallyConstrainedICA", "moo_icar", "zscore_maps"]

LOGGER = logging.getLogger("msica.ica")

#: E[log cosh(v)] for v ~ N(0, 1), the constant GIFT uses in its negentropy.
GAUSS_LOGCOSH = 0.3745672075
_A = 0.5  # weight of the independence term (GIFT: a)
_B = 1.0 - _A  # weight of the closeness-to-template term (GIFT: b)
_GIFT_ARMIJO = 0.02  # GIFT's ftol
_GIFT_TOL = 1e-5  # GIFT stops when ||w_new - w||^2 < 1e-5
_DEFAULT_TOL = 1e-8
_ARMIJO = 1e-4  # sufficient-increase constant of the default mode
_MEMORY = 10  # length of the non-monotone line-search memory (default mode)
_GIFT_RETRY_THRESHOLD = 0.02  # second eigenvalue threshold tried by GIFT
_GIFT_STD_TOLERANCE = 1e-2  # GIFT re-runs when ||1 - std(maps)|| exceeds this
_BLOCK_ELEMENTS = 2**20  # whitening and iterations by blocks of voxels of 8 MiB of float64


@dataclass
class _Solution:
    maps: torch.Tensor  # (K, V), GIFT scale (unit variance)
    timecourses: torch.Tensor  # (T, K)
    objective: torch.Tensor
    initial_objective: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    final_change: torch.Tensor
    n_whitened: int
    threshold: float


def _count_non_finite(arr: np.ndarray, block: int = 4096) -> int:
    """Number of NaN/inf in a 2-D array, by column blocks (no array-sized temporary)."""
    return sum(int(arr[:, j:j + block].size - np.count_nonzero(np.isfinite(arr[:, j:j + block])))
               for j in range(0, arr.shape[1], block))


def _check_inputs(data: Any, template: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check the inputs; ``data`` keeps its floating dtype (no copy), ``template`` is float64."""
    arrays = []
    for name, arr in (("data", data), ("template", template)):
        arr = np.asarray(arr)
        if name == "template" or not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        if arr.ndim != 2:
            raise ValueError(
                f"'{name}' must be a 2-D array ({'n_volumes' if name == 'data' else 'n_networks'}, "
                f"n_voxels). Got an array of shape {arr.shape}; mask the images first."
            )
        n_bad = _count_non_finite(arr)
        if n_bad:
            raise InputDataError(
                f"'{name}' contains {n_bad} NaN or infinite values: exclude those voxels "
                "from the mask (or fix the input image) before back-reconstruction."
            )
        arrays.append(arr)
    data, template = arrays
    check_maps_fit_data(data, template, "template", "MOO-ICAR")
    if data.shape[1] < 2:
        raise ValueError(f"'data' must have at least 2 voxels. Got {data.shape[1]}.")
    flat = np.flatnonzero(np.ptp(template, axis=1) == 0)
    if flat.size:
        raise InputDataError(
            f"template networks {flat.tolist()} (0-based) are constant over the mask: "
            "check that the template and the mask overlap."
        )
    return data, template


def _logcosh_sum(y: torch.Tensor, gift: bool) -> torch.Tensor:
    """Row sums of log(cosh(y)); GIFT's direct formula or an overflow-free one."""
    if gift:
        return torch.log(torch.cosh(y)).sum(dim=1)
    a = y.abs()
    # log cosh(y) = |y| + log1p(exp(-2|y|)) - log 2, with one temporary besides |y|
    return torch.exp(-2.0 * a).log1p_().add_(a).sum(dim=1) - y.shape[1] * math.log(2.0)


def _moments(
    w: torch.Tensor, Y: torch.Tensor, rn: torch.Tensor, gift: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Means over voxels of log cosh(y), y r (GIFT mode; else None) and tanh(y) Y^T, y = w Y.

    Evaluated one block of voxels at a time, so that no (n_networks, n_voxels)
    array is made: the iterations hold the whitened run and little else.
    """
    n_net, (p, m) = w.shape[0], Y.shape
    lcm = w.new_zeros(n_net)
    eyr = w.new_zeros(n_net) if gift else None
    eygy = w.new_zeros((n_net, p))
    width = max(1, _BLOCK_ELEMENTS // max(n_net, p))
    for start in range(0, m, width):
        block = Y[:, start:start + width]
        y = w @ block
        lcm += _logcosh_sum(y, gift)
        if gift:
            eyr += (y * rn[:, start:start + width]).sum(dim=1)
        eygy += torch.tanh_(y) @ block.T
    if gift and not bool(torch.isfinite(lcm).all()):
        raise InputDataError(
            "log(cosh(y)) overflowed in gift_compatible mode (more than ~5e5 voxels); "
            "use gift_compatible=False, which evaluates it without overflow."
        )
    return lcm / m, None if eyr is None else eyr / m, eygy / m


def _objective(lcm: torch.Tensor, eyr: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return _A * (2.0 / math.pi) * torch.atan(c * (lcm - GAUSS_LOGCOSH) ** 2) + _B * eyr


def _gradient(
    eygy: torch.Tensor, lcm: torch.Tensor, c: torch.Tensor, yr: torch.Tensor
) -> torch.Tensor:
    """Euclidean gradient of the objective w.r.t. w (rows), GIFT's formula."""
    neg = lcm - GAUSS_LOGCOSH
    kd = (2.0 / math.pi) * c / (1.0 + (c * neg**2) ** 2)
    return (_A * kd * 2.0 * neg)[:, None] * eygy + _B * yr


def _eigen(x: torch.Tensor, gift: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Covariance ``C = x x^T / V`` of x (T, V), centred per row, and its eigenpairs.

    The eigenvalues ``d`` are in descending order with the eigenvectors ``e``
    (columns) in the same order; GIFT mode drops the negative ones first.
    """
    cov = x @ x.T / x.shape[1]
    d, e = torch.linalg.eigh(cov)
    if gift:
        keep = ~(torch.sign(d) == -1)
        d, e = d[keep].abs(), e[:, keep]
        d, order = torch.sort(d, descending=True, stable=True)
        return cov, d, e[:, order]
    return cov, torch.flip(d, [0]), torch.flip(e, [1])


def _n_kept(d: torch.Tensor, n: int, gift: bool, threshold: float) -> int:
    """Whitened dimensions kept: GIFT's eigenvalue threshold, else a relative rank tolerance."""
    if gift:
        n_kept = int((d > threshold).sum())
    else:
        tol = float(d[0]) * n * torch.finfo(d.dtype).eps
        n_kept = int((d > max(tol, 0.0)).sum()) if float(d[0]) > 0 else 0
    if n_kept == 0:
        raise InputDataError(
            "'data' has no variance left after removing the mean of each volume: "
            "check the mask and the input run."
        )
    return n_kept


def _whitening(d: torch.Tensor, e: torch.Tensor, n_kept: int) -> torch.Tensor:
    """The whitening matrix ``A`` (n_kept, T) of the leading eigenpairs."""
    return e[:, :n_kept].T / torch.sqrt(d[:n_kept])[:, None]


def _whiten_(
    x: torch.Tensor, white: torch.Tensor, rescale: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Whiten x (T, V), centred per row, *in place*: Y (n_kept, V) with Y @ Y.T / V = I.

    ``Y = A @ x`` overwrites the first rows of ``x`` (one block of voxels at a
    time: each column of Y depends on the same column of x only), so the run is
    held once. The time courses ``x @ maps.T / V`` are then ``C @ A.T @ W.T``
    for maps ``W @ Y``, without ``x``. ``rescale`` (GIFT, eigenvalue threshold
    ``eps`` with dimensions dropped) divides each row of Y by its standard
    deviation. Returns ``Y`` (a view of ``x``), ``A`` (rescaled likewise) and
    the row scales (None without ``rescale``).
    """
    n_kept, (n, m) = white.shape[0], x.shape
    width = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, m, width):
        cols = slice(start, start + width)
        x[:n_kept, cols] = white @ x[:, cols]
    Y = x[:n_kept]
    if not rescale:
        return Y, white, None
    scale = Y.std(dim=1, correction=1, keepdim=True)
    Y /= scale
    return Y, white / scale, scale


def _solve(
    Y: torch.Tensor,
    cov: torch.Tensor,
    white: torch.Tensor,
    rn: torch.Tensor,
    *,
    gift: bool,
    threshold: float,
    max_iter: int,
    tol: float,
) -> _Solution:
    """One MOO-ICAR run on whitened data Y = A x (n_kept, V) and standardised templates rn (K, V).

    ``cov`` and ``white`` (``A``) are as :func:`_whiten_` describes.
    """
    m = Y.shape[1]
    n_net = rn.shape[0]
    yr = rn @ Y.T / m  # (K, p): GIFT's YR transposed, E[Y r_k]
    if gift:
        # GIFT: (r pinv(Y))'. Y has full row rank (whitened), so pinv(Y) = Y'(YY')^-1;
        # the solve avoids an SVD of the (n_kept, V) matrix and differs only by rounding.
        w = torch.linalg.solve(Y @ Y.T, Y @ rn.T)
        w = (w / torch.sqrt((w**2).sum(dim=0))).T.contiguous()
    else:
        w = yr / torch.linalg.vector_norm(yr, dim=1, keepdim=True)
    lcm, eyr, eygy = _moments(w, Y, rn, gift)
    if not gift:
        eyr = (w * yr).sum(dim=1)
    c = torch.tan(eyr * math.pi / 2.0) / (lcm - GAUSS_LOGCOSH) ** 2
    F = _objective(lcm, eyr, c)
    F0 = F.clone()

    dev = Y.device
    lam = torch.ones(n_net, dtype=Y.dtype, device=dev)
    active = torch.ones(n_net, dtype=torch.bool, device=dev)
    converged = torch.zeros(n_net, dtype=torch.bool, device=dev)
    n_iter = torch.zeros(n_net, dtype=torch.long, device=dev)
    accepted = torch.ones(n_net, dtype=torch.long, device=dev)  # GIFT's itertime
    change = torch.full((n_net,), float("nan"), dtype=Y.dtype, device=dev)
    grad = _gradient(eygy, lcm, c, yr)
    if not gift:
        grad = grad - (grad * w).sum(dim=1, keepdim=True) * w
        # first trial: a step of 0.1 along the tangent gradient; BB scales the next ones
        lam = 0.1 / torch.linalg.vector_norm(grad, dim=1).clamp_min(1e-300)
        history = F[:, None].repeat(1, _MEMORY)
        best_f, best_w = F.clone(), w.clone()
    trial_w = w.clone()  # GIFT returns the last trial point of each network

    for _ in range(max_iter):
        idx = torch.nonzero(active).squeeze(1)
        if idx.numel() == 0:
            break
        g, wi, li = grad[idx], w[idx], lam[idx]
        if gift:
            direction = g / torch.sqrt((g * g).sum(dim=1, keepdim=True))
            slope = (g * direction).sum(dim=1)
        else:
            direction = g
            slope = (g * g).sum(dim=1)
        wx = wi + li[:, None] * direction
        wx = wx / torch.linalg.vector_norm(wx, dim=1, keepdim=True)
        lcm3, eyr3, eygy3 = _moments(wx, Y, rn[idx], gift)
        if not gift:
            eyr3 = (wx * yr[idx]).sum(dim=1)
        F3 = _objective(lcm3, eyr3, c[idx])
        n_iter[idx] += 1
        trial_w[idx] = wx
        step = ((wi - wx) ** 2).sum(dim=1)
        change[idx] = step
        armijo = (_GIFT_ARMIJO if gift else _ARMIJO) * li * slope
        if gift:
            ok = (F3 - F[idx]) >= armijo
        else:  # non-monotone (Grippo-Lampariello-Lucidi) test against recent values
            ok = (F3 - history[idx].min(dim=1).values) >= armijo
        rej = idx[~ok]
        lam[rej] = lam[rej] / 2.0
        if not gift:  # no ascent at the resolution of tol: stationary point
            stalled = rej[step[~ok] < tol]
            converged[stalled] = True
            active[stalled] = False
        acc = idx[ok]
        done = step[ok] < tol
        converged[acc[done]] = True
        if gift:  # GIFT moves only when it goes on
            stop = done | (accepted[acc] == max_iter)
            keep = ~stop
            upd = acc[keep]
            w_new, eygy_new, f_new = wx[ok][keep], eygy3[ok][keep], F3[ok][keep]
            lcm_new = lcm3[ok][keep]
        else:
            stop = done
            keep = ~stop
            upd = acc
            w_new, eygy_new, f_new, lcm_new = wx[ok], eygy3[ok], F3[ok], lcm3[ok]
            history[acc] = torch.cat([history[acc, 1:], f_new[:, None]], dim=1)
            better = f_new > best_f[acc]
            best_f[acc[better]] = f_new[better]
            best_w[acc[better]] = w_new[better]
        active[acc[stop]] = False
        if upd.numel():
            # gradients only where the iteration goes on
            go = torch.ones(upd.numel(), dtype=torch.bool, device=dev) if gift else keep
            gi = upd[go]
            g_new = _gradient(eygy_new[go], lcm_new[go], c[gi], yr[gi])
            if not gift:
                w_go = w_new[go]
                g_new = g_new - (g_new * w_go).sum(dim=1, keepdim=True) * w_go
                s = w_go - w[gi]
                sy = (s * (grad[gi] - g_new)).sum(dim=1)
                bb = (s * s).sum(dim=1) / sy.clamp_min(1e-300)
                lam[gi] = torch.where(sy > 0, bb, 2.0 * lam[gi]).clamp(1e-10, 1e4)
            grad[gi] = g_new
            w[upd], F[upd] = w_new, f_new
            accepted[upd] += 1
    if gift:
        # GIFT returns the last trial point; a network whose step size fell below
        # sqrt(tol) can only take steps that meet GIFT's stopping rule: count it as done.
        converged |= lam**2 < tol
        w_out = trial_w
        lcm_out, eyr_out, _ = _moments(w_out, Y, rn, gift)
        F_out = _objective(lcm_out, eyr_out, c)
    else:
        w_out, F_out = best_w, best_f
    maps = w_out @ Y
    return _Solution(
        maps=maps,
        timecourses=cov @ white.T @ w_out.T,  # = x @ maps.T / m, x being overwritten
        objective=F_out,
        initial_objective=F0,
        n_iter=n_iter,
        converged=converged,
        final_change=change,
        n_whitened=Y.shape[0],
        threshold=threshold,
    )


def _centred(data: np.ndarray, gift: bool, dev: torch.device, copy: bool) -> torch.Tensor:
    """The data as float64 on ``dev``, each volume's mean over voxels removed in place.

    A copy, unless ``copy`` is False and ``data`` can be used as it is (a
    writeable, C-contiguous float64 array, computed on the CPU): then it is
    centred (and later whitened) in place.
    """
    in_place = (not copy and dev.type == "cpu" and data.dtype == np.float64
                and data.flags.c_contiguous and data.flags.writeable)
    x = torch.from_numpy(data) if in_place else torch.tensor(data, dtype=torch.float64,
                                                              device=dev)
    x -= x.mean(dim=1, keepdim=True)
    if gift:  # icatb_preproc_data('remove mean per timepoint'), then icatb_remove_mean
        x -= x.mean(dim=1, keepdim=True)
        x -= x.mean(dim=1, keepdim=True)  # gig_icar's own centring
    return x


def _run(
    data: np.ndarray,
    template: np.ndarray,
    *,
    gift: bool,
    max_iter: int,
    tol: float,
    device: Any,
    copy: bool,
) -> _Solution:
    dev = resolve_device(device)
    r = torch.as_tensor(template, dtype=torch.float64, device=dev)
    r = r - r.mean(dim=1, keepdim=True)
    rn = r / r.std(dim=1, correction=1, keepdim=True)
    x = _centred(data, gift, dev, copy)
    n = x.shape[0]
    cov, d, e = _eigen(x, gift)
    if not gift:
        Y, white, _ = _whiten_(x, _whitening(d, e, _n_kept(d, n, False, 0.0)), rescale=False)
        return _solve(Y, cov, white, rn, gift=False, threshold=0.0, max_iter=max_iter, tol=tol)
    threshold = float(torch.finfo(torch.float64).eps)
    n_kept = _n_kept(d, n, True, threshold)
    Y, white, scale = _whiten_(x, _whitening(d, e, n_kept), rescale=n_kept < n)
    while True:
        sol = _solve(Y, cov, white, rn, gift=True, threshold=threshold, max_iter=max_iter,
                     tol=tol)
        err = float(torch.linalg.vector_norm(1.0 - sol.maps.std(dim=1, correction=1)))
        if err <= _GIFT_STD_TOLERANCE:
            return sol
        LOGGER.info(
            "MOO-ICAR (GIFT mode): map standard deviations are not unitary (||1 - std|| = %.3g) "
            "with eigenvalue threshold %.3g.",
            err,
            threshold,
        )
        if threshold == _GIFT_RETRY_THRESHOLD:
            return sol
        # GIFT whitens the run again with threshold 0.02: the same eigenpairs, fewer of them,
        # so the new Y is the leading rows of this one (unscaled) and the run is not needed.
        threshold = _GIFT_RETRY_THRESHOLD
        n_kept = _n_kept(d, n, True, threshold)
        Y = Y[:n_kept]
        if scale is not None:
            Y *= scale[:n_kept]
        white, scale = _whitening(d, e, n_kept), None


def zscore_maps(maps: Any) -> tuple[np.ndarray, np.ndarray]:
    """Z-score component maps as GIFT's calibration does (scaleType 2).

    Each map has its mean removed, then is divided by ``eps + ||v|| / sqrt(n - 1)``
    where ``v`` are its non-zero voxels (GIFT's ``icatb_convertImageToZScores``
    after ``icatb_remove_mean``).

    Parameters
    ----------
    maps : array-like of shape (n_networks, n_voxels)

    Returns
    -------
    zmaps : ndarray of shape (n_networks, n_voxels)
    scale : ndarray of shape (n_networks,)
        The divisor used for each map (1 where a map is constant).

    Examples
    --------
    >>> import numpy as np
    >>> z, s = zscore_maps(np.array([[1.0, 2.0, 4.0]]))
    >>> bool(np.isclose(z.std(ddof=1), 1.0)), bool(np.isclose(s[0], np.std([1, 2, 4], ddof=1)))
    (True, True)
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 2:
        raise ValueError(
            f"'maps' must be a 2-D array (n_networks, n_voxels). Got shape {maps.shape}."
        )
    centred = maps - maps.mean(axis=1, keepdims=True)
    scale = np.ones(maps.shape[0])
    for k, v in enumerate(centred):
        nz = v[v != 0]
        std = np.linalg.norm(nz) / math.sqrt(max(nz.size - 1, 1))
        if std != 0:
            scale[k] = np.finfo(np.float64).eps + std
    return centred / scale[:, None], scale


@fill_doc
class SpatiallyConstrainedICA(TransformerMixin, BaseEstimator):
    """MOO-ICAR spatially constrained ICA of one participant, guided by a template.

    Parameters
    ----------
    template : array-like of shape (n_networks, n_voxels)
        Template (reference) maps on the same voxels as the data, e.g. the
        NeuroMark networks masked with the participant's mask.
    gift_compatible : bool, default=False
        Reproduce GIFT's ``icatb_gigicar.m`` step for step (normalised
        Euclidean gradient steps, Armijo halving that never resets, the last
        trial point returned even when rejected, eigenvalue threshold
        ``eps`` then 0.02). The default mode optimises the same objective from
        the same start with Riemannian Barzilai-Borwein steps and returns
        the best accepted point.
    max_iter : int, default=100
        Maximal number of passes (trial points) per network, GIFT's 100.
    tol : float or None, default=None
        Stop a network when a step changes ``w`` by less than ``tol`` in
        squared norm. ``None`` means GIFT's 1e-5 in GIFT mode and 1e-8 in the
        default mode (which converges in fewer passes and needs the tighter
        rule to beat GIFT's objective on every network).
    zscore : bool, default=True
        Z-score the output maps as GIFT's calibration step (scaleType 2)
        does; see :func:`zscore_maps`. Time courses keep GIFT's scale.
    %(device)s
    copy : bool, default=True
        If False and ``X`` is a writeable, C-contiguous float64 array and the
        computation runs on the CPU, ``fit`` centres and whitens ``X`` in
        place (it is overwritten), so the run is held once: 8 bytes per voxel
        and volume instead of 8 more than the caller's array. Otherwise ``X``
        is copied.

    Attributes
    ----------
    components_ : ndarray of shape (n_networks, n_voxels)
        Participant maps (z-scored when ``zscore``).
    timecourses_ : ndarray of shape (n_volumes, n_networks)
        Time courses ``X_c @ S.T / n_voxels`` with ``X_c`` the data centred per
        volume and ``S`` the unscaled maps (GIFT's ``TCMax``).
    map_scale_ : ndarray of shape (n_networks,)
        Divisor applied to each map by the z-scoring (ones without it).
    objective_ : ndarray of shape (n_networks,)
        Final MOO-ICAR objective of each network (at the returned map).
    initial_objective_ : ndarray of shape (n_networks,)
        Objective at the starting point (equal to ``E[y0 r]``).
    n_iter_ : ndarray of shape (n_networks,)
        Passes used per network.
    converged_ : ndarray of shape (n_networks,)
        Whether each network met the stopping rule.
    final_change_ : ndarray of shape (n_networks,)
        Squared length ``||w_trial - w||^2`` of the last step tried by each network.
    n_whitened_ : int
        Number of whitened dimensions kept.
    whitening_threshold_ : float
        Eigenvalue threshold used (GIFT mode: ``eps`` or 0.02; 0 otherwise,
        where a relative rank tolerance is used).
    device_ : str
        Device the computation ran on.

    References
    ----------
    .. [1] Du, Y. & Fan, Y. (2013). Group information guided ICA for fMRI data
       analysis. NeuroImage 69, 157-197.
    .. [2] Du, Y. et al. (2020). NeuroMark: an automated and adaptive ICA based
       pipeline. NeuroImage: Clinical 28, 102375.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> maps = rng.laplace(size=(3, 500))
    >>> data = rng.randn(40, 3) @ maps + 0.1 * rng.randn(40, 500)
    >>> est = SpatiallyConstrainedICA(maps, device="cpu").fit(data)
    >>> est.components_.shape, est.timecourses_.shape
    ((3, 500), (40, 3))
    """

    def __init__(
        self,
        template: Any = None,
        *,
        gift_compatible: bool = False,
        max_iter: int = 100,
        tol: float | None = None,
        zscore: bool = True,
        device: Any = "auto",
        copy: bool = True,
    ) -> None:
        self.template = template
        self.gift_compatible = gift_compatible
        self.max_iter = max_iter
        self.tol = tol
        self.zscore = zscore
        self.device = device
        self.copy = copy

    def fit(self, X: Any, y: Any = None) -> SpatiallyConstrainedICA:
        """Estimate the participant's maps and time courses.

        Parameters
        ----------
        X : array-like of shape (n_volumes, n_voxels)
            The participant's masked run.
        y : None
            Ignored.

        Returns
        -------
        self : SpatiallyConstrainedICA

        Raises
        ------
        InputDataError
            NaNs, template and data on different voxels, constant networks,
            data without variance.
        ValueError
            More networks than volumes, bad parameters.
        """
        if self.template is None:
            raise ValueError(
                "'template' is required: pass the template maps (n_networks, n_voxels)."
            )
        check_type("gift_compatible", self.gift_compatible, bool)
        check_type("zscore", self.zscore, bool)
        check_type("copy", self.copy, bool)
        check_int("max_iter", self.max_iter, 1)
        tol = self.tol
        if tol is None:
            tol = _GIFT_TOL if self.gift_compatible else _DEFAULT_TOL
        check_type("tol", tol, (int, float))
        if not tol > 0:
            raise ValueError(f"'tol' must be a float > 0. Got {tol}.")
        data, template = _check_inputs(X, self.template)
        sol = _run(
            data,
            template,
            gift=self.gift_compatible,
            max_iter=self.max_iter,
            tol=float(tol),
            device=self.device,
            copy=self.copy,
        )
        maps = sol.maps.cpu().numpy()
        if self.zscore:
            maps, scale = zscore_maps(maps)
        else:
            scale = np.ones(maps.shape[0])
        self.components_ = maps
        self.map_scale_ = scale
        self.timecourses_ = sol.timecourses.cpu().numpy()
        self.objective_ = sol.objective.cpu().numpy()
        self.initial_objective_ = sol.initial_objective.cpu().numpy()
        self.n_iter_ = sol.n_iter.cpu().numpy()
        self.converged_ = sol.converged.cpu().numpy()
        self.final_change_ = sol.final_change.cpu().numpy()
        self.n_whitened_ = sol.n_whitened
        self.whitening_threshold_ = sol.threshold if self.gift_compatible else 0.0
        self.device_ = str(sol.maps.device)
        self._warn_convergence(float(tol))
        return self

    def _warn_convergence(self, tol: float) -> None:
        bad = np.flatnonzero(~self.converged_)
        if bad.size == 0:
            return
        advice = (
            "GIFT mode keeps GIFT's 100-pass limit; use gift_compatible=False for a solver that "
            "converges"
            if self.gift_compatible
            else "increase max_iter"
        )
        warnings.warn(
            f"MOO-ICAR did not converge for {bad.size} of {self.converged_.size} networks "
            f"(0-based {bad[:10].tolist()}{'...' if bad.size > 10 else ''}) after "
            f"{int(self.n_iter_[bad].max())} passes; largest final squared step "
            f"{self.final_change_[bad].max():.3g} (tol={tol:g}). Their maps are the last "
            f"iterates; {advice}.",
            ConvergenceWarning,
            stacklevel=3,
        )

    def transform(self, X: Any) -> np.ndarray:
        """Time courses of new data from the same participant (GIFT's projection).

        Parameters
        ----------
        X : array-like of shape (n_volumes, n_voxels)

        Returns
        -------
        ndarray of shape (n_volumes, n_networks)
            ``X_c @ S.T / n_voxels`` with ``X_c`` centred per volume and ``S``
            the unscaled maps.
        """
        check_is_fitted(self, "components_")
        data, _ = _check_inputs(X, self.components_[:1])
        data = data.astype(np.float64)
        data -= data.mean(axis=1, keepdims=True)
        maps = self.components_ * self.map_scale_[:, None]
        return data @ maps.T / data.shape[1]


@fill_doc
def moo_icar(
    data: Any,
    template: Any,
    *,
    gift_compatible: bool = False,
    max_iter: int = 100,
    tol: float | None = None,
    zscore: bool = False,
    device: Any = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Back-reconstruct one participant with MOO-ICAR (spatially constrained ICA).

    Parameters
    ----------
    data : array-like of shape (n_volumes, n_voxels)
        The participant's run, already masked (float64 is used internally).
    template : array-like of shape (n_networks, n_voxels)
        Template maps on the same voxels.
    gift_compatible : bool, default=False
        Reproduce GIFT's ``icatb_gigicar.m`` exactly (see Notes).
    max_iter : int, default=100
        Maximal number of passes per network.
    tol : float or None, default=None
        Squared-step stopping rule; ``None``: 1e-5 (GIFT mode) or 1e-8.
    zscore : bool, default=False
        Z-score the maps (GIFT's calibration); off here so that the raw maps
        compare with ``icatb_gigicar``'s output.
    %(device)s

    Returns
    -------
    maps : ndarray of shape (n_networks, n_voxels)
    timecourses : ndarray of shape (n_volumes, n_networks)

    Raises
    ------
    InputDataError
        If the data contain NaNs, template and data have different numbers
        of voxels, a template network is constant or the data have no variance.
    ValueError
        If there are more networks than volumes.

    Warns
    -----
    ConvergenceWarning
        Once, naming the networks that did not meet the stopping rule.

    Notes
    -----
    GIFT's scICA path (``icatb_calculateICA`` with MOO-ICAR) reads the masked
    data, applies ``icatb_preproc_data(..., 'remove mean per timepoint')``
    and ``icatb_remove_mean``, and calls ``icatb_gigicar(data', template)``.
    With ``gift_compatible=True`` this function does the same:

    1. remove the mean over voxels of each volume (three times, as GIFT);
    2. eigendecompose ``X X^T / V``; drop negative eigenvalues, sort the rest
       in descending order and keep those above ``eps``; whiten
       ``Y = diag(d)^-1/2 E^T X``; when fewer than ``n_volumes`` dimensions
       remain, scale each row of ``Y`` to unit standard deviation;
    3. standardise each template map (mean 0, std 1 with ``n - 1``); start
       from ``w0 = (r pinv(Y))^T / ||.||``; set ``c`` so that both terms of the
       objective start equal;
    4. per network, up to 100 passes: normalised gradient ``d = g / ||g||``,
       trial ``w + lambda d`` renormalised, Armijo test
       ``f(trial) - f(w) >= 0.02 lambda g.d``; on failure halve ``lambda``
       (never reset); on success stop when ``||w_new - w||^2 < 1e-5``;
    5. maps ``S = W^T Y`` from the *last trial* of each network; time
       courses ``X S^T / V``;
    6. if ``||1 - std(S)|| > 0.01`` redo everything with eigenvalue
       threshold 0.02.

    GIFT then z-scores maps and time courses in its calibration step
    (``zscore=True`` does the map part).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> maps = rng.laplace(size=(2, 400))
    >>> data = rng.randn(30, 2) @ maps + 0.1 * rng.randn(30, 400)
    >>> s, tc = moo_icar(data, maps, device="cpu")
    >>> bool(np.corrcoef(s[0], maps[0])[0, 1] > 0.9)
    True
    """
    est = SpatiallyConstrainedICA(
        template,
        gift_compatible=gift_compatible,
        max_iter=max_iter,
        tol=tol,
        zscore=zscore,
        device=device,
    ).fit(data)
    return est.components_, est.timecourses_
