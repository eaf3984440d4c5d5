"""Dynamic FNC: tapered sliding windows (optionally graphical lasso) per participant.

Re-implements GIFT's dFNC windows (``icatb_compute_dfnc``: window construction,
circular shifts, window count, ``icatb_r_to_z``) on numpy arrays. Group states
and their metrics are in :mod:`pipeline.fnc.states`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline._docs import fill_doc
from pipeline._validation import check_array_2d, check_in_allowed, check_int
from pipeline.exceptions import ConvergenceWarning
from pipeline.fnc.static import fisher_z

__all__ = [
    "sliding_window_fnc",
    "tapered_window",
    "vec_to_sym",
]

#: GIFT's default grid of L1 penalties (``initial_lambdas = 0.1:0.03:0.40``).
GIFT_GLASSO_ALPHAS = tuple(np.round(np.arange(0.10, 0.40 + 1e-9, 0.03), 2))


def _mround(x: float) -> int:
    """MATLAB ``round``: halves away from zero."""
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def _check_window(n_volumes: int, window: Any, sigma: Any) -> None:
    check_int("window", window, 2, fix="The window is counted in TRs.")
    if window >= n_volumes:
        raise ValueError(
            f"'window' ({window} TRs) must be shorter than the run (n_volumes={n_volumes}): "
            f"GIFT makes n_volumes - window windows. Use window < {n_volumes} or a longer run."
        )
    if isinstance(sigma, bool) or not np.isscalar(sigma) or not sigma > 0:
        raise ValueError(f"'sigma' must be a positive number of TRs. Got {sigma!r}.")


def tapered_window(n_volumes: int, window: int = 30, sigma: float = 3.0) -> np.ndarray:
    """GIFT's tapered window centred in the run (``compute_sliding_window``).

    A rectangle of ``2 * round(window / 2)`` ones convolved with a Gaussian of
    standard deviation ``sigma`` (TRs), scaled to a maximum of 1.

    Parameters
    ----------
    n_volumes : int
    window : int, default=30
    sigma : float, default=3.0

    Returns
    -------
    ndarray of shape (n_volumes,)
    """
    _check_window(n_volumes, window, sigma)
    n_even = n_volumes + (n_volumes % 2)
    mid = n_even // 2
    half = _mround(window / 2)
    gauss = np.exp(-((np.arange(n_even) - mid) ** 2) / (2.0 * sigma * sigma))
    box = np.zeros(n_even)
    box[max(mid - half, 0) : mid + half] = 1.0
    conv = np.convolve(gauss, box)
    conv = conv / conv.max()
    return conv[mid : 2 * n_even - mid][:n_volumes]


def _windows(tcs: np.ndarray, window: int, sigma: float, mask_windows: bool) -> list[np.ndarray]:
    n = tcs.shape[0]
    base = tapered_window(n, window, sigma)
    n_win = n - window
    out = []
    for step in range(1, n_win + 1):
        shifted = np.roll(base, _mround(-n / 2) + _mround(window / 2) + step)
        if mask_windows:  # icatb_window_mask with DFNC_DEFAULTS.mask_windows = 1
            reach = _mround((sigma / 2) * window)
            keep = np.zeros(n, dtype=bool)
            keep[max(1, step - reach) - 1 : min(n, step + reach)] = True
            keep &= shifted > 1e-4
            out.append(tcs[keep] * shifted[keep, None])
        else:
            out.append(tcs * shifted[:, None])
    return out


def _batched_corr(win: np.ndarray) -> np.ndarray:
    xc = win - win.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.sum(xc**2, axis=1, keepdims=True))
    if np.any(norms == 0):
        raise ValueError(
            "A window contains a constant network (undefined correlation). "
            "Remove flat (e.g. all-zero) networks before dFNC."
        )
    xc = xc / norms
    return xc.transpose(0, 2, 1) @ xc  # batched BLAS (einsum here does not use BLAS)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)


def _glasso_windows(
    wins: list[np.ndarray], alpha: float | None, alphas: Sequence[float]
) -> tuple[np.ndarray, float]:
    """GIFT's L1 option: graphical lasso per z-scored window (5-fold CV picks alpha)."""
    from sklearn.covariance import GraphicalLassoCV, graphical_lasso
    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

    n_unconverged = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SklearnConvergenceWarning)
        if alpha is None:
            pooled = np.vstack([_zscore(w) for w in wins])
            cv = GraphicalLassoCV(alphas=list(alphas), cv=5, max_iter=1000).fit(pooled)
            alpha = float(cv.alpha_)
        corrs = []
        for w in wins:
            emp = np.cov(_zscore(w), rowvar=False)
            cov = graphical_lasso(emp, alpha=alpha, max_iter=1000)[0]
            d = np.sqrt(np.diag(cov))
            corrs.append(cov / np.outer(d, d))
    for item in caught:
        if issubclass(item.category, SklearnConvergenceWarning):
            n_unconverged += 1
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if n_unconverged:
        warnings.warn(
            f"graphical lasso did not converge for {n_unconverged} fit(s) (of {len(wins)} "
            f"windows) at alpha={alpha:g}. Results may be inexact; a larger alpha or a "
            "longer window helps.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return np.stack(corrs), alpha


@fill_doc
def sliding_window_fnc(
    timecourses: Any,
    *,
    window: int = 30,
    sigma: float = 3.0,
    method: str = "correlation",
    alpha: float | None = None,
    alphas: Sequence[float] = GIFT_GLASSO_ALPHAS,
    mask_windows: bool = False,
    return_alpha: bool = False,
) -> np.ndarray | tuple[np.ndarray, float]:
    """Tapered sliding-window FNC of one participant, as GIFT's dFNC.

    Parameters
    ----------
    %(timecourses)s Post-processed (see
        :func:`pipeline.fnc.timecourse.postprocess`).
    window : int, default=30
        Width of the rectangle in TRs (GIFT ``wsize``).
    sigma : float, default=3.0
        Standard deviation of the Gaussian taper in TRs (GIFT ``window_alpha``).
    method : {"correlation", "graphical lasso"}, default="correlation"
        ``"graphical lasso"`` is GIFT's L1 option: each windowed, z-scored
        block gets a sparse inverse covariance, whose covariance is turned
        into correlations.
    alpha : float, optional
        L1 penalty. When None it is chosen by sklearn's ``GraphicalLassoCV``
        over ``alphas`` on the participant's pooled windows.
    alphas : sequence of float
        Candidate penalties (GIFT's 0.10:0.03:0.40 by default).
    mask_windows : bool, default=False
        Keep only volumes inside the window (GIFT ``DFNC_DEFAULTS.mask_windows``).
    return_alpha : bool, default=False
        Also return the penalty used (graphical lasso only; NaN otherwise).

    Returns
    -------
    ndarray of shape (n_volumes - window, n_networks * (n_networks - 1) / 2)
        Fisher z (``icatb_r_to_z``) of the windowed correlations, pairs in
        ``numpy.triu_indices(n_networks, 1)`` order (GIFT's ``icatb_mat2vec``
        order).

    Raises
    ------
    ValueError
        If ``window >= n_volumes``, the input has NaNs or a wrong shape.

    Notes
    -----
    Window ``i`` (1-based, ``i = 1 .. n_volumes - window``) is the centred
    taper circularly shifted by ``round(-n/2) + round(window/2) + i``
    (MATLAB rounding), so the first windows wrap around the end of the run,
    exactly as GIFT does. The tapered time courses themselves are correlated.
    GIFT selects the L1 penalty by a random one-window-vs-rest likelihood; msica
    uses 5-fold ``GraphicalLassoCV`` instead, and sklearn's ``graphical_lasso``
    does not penalise the diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sliding_window_fnc(rng.standard_normal((100, 5)), window=20).shape
    (80, 10)
    """
    check_in_allowed("method", method, ["correlation", "graphical lasso"])
    arr = np.asarray(timecourses, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"'timecourses' must be a 2-D array (n_volumes, n_networks). Got shape {arr.shape}."
        )
    tcs = check_array_2d("timecourses", arr, min_rows=3, min_cols=2)
    _check_window(tcs.shape[0], window, sigma)
    wins = _windows(tcs, int(window), float(sigma), mask_windows)
    used_alpha = float("nan")
    if method == "correlation":
        if mask_windows:
            corr = np.stack([_batched_corr(w[None])[0] for w in wins])
        else:
            corr = _batched_corr(np.stack(wins))
    else:
        _batched_corr(np.stack(wins[:1]))  # same all-zero-network check as the correlation path
        corr, used_alpha = _glasso_windows(wins, alpha, alphas)
    iu = np.triu_indices(tcs.shape[1], 1)
    out = fisher_z(corr[:, iu[0], iu[1]])
    return (out, used_alpha) if return_alpha else out


def vec_to_sym(vectors: Any, n_networks: int | None = None) -> np.ndarray:
    """Rebuild symmetric matrices (zero diagonal) from upper-triangle vectors.

    Parameters
    ----------
    vectors : array-like of shape (n_pairs,) or (n_items, n_pairs)
    n_networks : int, optional
        Inferred from ``n_pairs`` when omitted.

    Returns
    -------
    ndarray of shape (n_networks, n_networks) or (n_items, n_networks, n_networks)
    """
    v = np.asarray(vectors, dtype=np.float64)
    single = v.ndim == 1
    v = np.atleast_2d(v)
    n_pairs = v.shape[1]
    n = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2)) if n_networks is None else n_networks
    if n * (n - 1) // 2 != n_pairs:
        raise ValueError(f"{n_pairs} pairs is not n*(n-1)/2 for n_networks={n}.")
    out = np.zeros((v.shape[0], n, n))
    iu = np.triu_indices(n, 1)
    out[:, iu[0], iu[1]] = v
    out = out + out.transpose(0, 2, 1)
    return out[0] if single else out
