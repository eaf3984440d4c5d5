"""An independent reference for MOO-ICAR: GIFT's ``icatb_gigicar.m`` in plain NumPy.

Written from the MATLAB source, one network at a time, with no batching and no
caching: the oracle of ``test_scica.py`` and the timing peer of
``benchmarks/backrecon.py``.
"""

from __future__ import annotations

import math

import numpy as np

#: GIFT's constant E[G(nu)] for G = log cosh and nu standard normal.
NU = 0.3745672075


def negentropy(x: np.ndarray) -> float:
    """GIFT's negentropy approximation of a standardized source."""
    return (np.mean(np.log(np.cosh(x))) - NU) ** 2


def gig_icar(fmri: np.ndarray, ref: np.ndarray,
             thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GIFT's ``icatb_gigicar`` with PCA threshold ``thr``: maps, time courses, objectives."""
    n, m = fmri.shape
    mean_dat = fmri.mean(axis=1, keepdims=True)
    fmri = fmri - mean_dat
    d, e = np.linalg.eigh(fmri @ fmri.T / m)
    keep = np.sign(d) != -1
    d, e = np.abs(d[keep]), e[:, keep]
    order = np.argsort(-d, kind="stable")
    d, e = d[order], e[:, order]
    numpc = int(np.sum(d > thr))
    white = np.linalg.solve(np.diag(np.sqrt(d[:numpc])), e[:, :numpc].T)
    y_mat = white @ fmri
    if thr < 1e-10 and numpc < n:
        y_mat = y_mat / y_mat.std(axis=1, ddof=1, keepdims=True)
    rc = ref - ref.mean(axis=1, keepdims=True)
    rn = rc / rc.std(axis=1, ddof=1, keepdims=True)
    yr = (1 / m) * y_mat @ rn.T
    ref_s = (rn @ np.linalg.pinv(y_mat)).T
    ref_s = ref_s / np.sqrt((ref_s**2).sum(axis=0))
    a, b, er = 0.5, 0.5, 2 / np.pi
    wx_all = np.zeros((y_mat.shape[0], ref.shape[0]))
    objectives = np.zeros(ref.shape[0])
    for k in range(ref.shape[0]):
        r = rn[k]
        wc = ref_s[:, k]
        y1 = wc @ y_mat
        eyr0 = (1 / m) * y1 @ r
        c = np.tan(eyr0 * np.pi / 2) / negentropy(y1)
        ini = a * er * np.arctan(c * negentropy(y1)) + b * eyr0
        itertime, lam = 1, 1.0
        for _ in range(100):
            egy = np.mean(np.log(np.cosh(y1)))
            negama = egy - NU
            eygy = y_mat @ np.tanh(y1) / m
            kd = er * c * (1 / (1 + (c * negama**2) ** 2))
            g = a * kd * 2 * negama * eygy + b * yr[:, k]
            dvec = g / math.sqrt(g @ g)
            wx = wc + lam * dvec
            wx = wx / np.linalg.norm(wx)
            y3 = wx @ y_mat
            pre = a * er * np.arctan(c * negentropy(y3)) + b * (1 / m) * y3 @ r
            if pre - ini < lam * 0.02 * (g @ dvec):
                lam /= 2
                continue
            if (wc - wx) @ (wc - wx) < 1e-5 or itertime == 100:
                break
            ini, y1, wc, itertime = pre, y3, wx, itertime + 1
        wx_all[:, k] = wx
        y_final = wx @ y_mat
        objectives[k] = a * er * np.arctan(c * negentropy(y_final)) + b * (1 / m) * y_final @ r
    maps = wx_all.T @ y_mat
    tcs = (1 / m) * (fmri + mean_dat) @ maps.T
    return maps, tcs, objectives


def gigicar(fmri: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GIFT's retry: threshold eps, then 0.02 when the maps' standard deviations are off 1."""
    for thr in (np.finfo(np.float64).eps, 0.02):
        maps, tcs, obj = gig_icar(fmri, ref, thr)
        if np.linalg.norm(1 - maps.std(axis=1, ddof=1)) <= 1e-2:
            break
    return maps, tcs, obj


def gift_preproc(data: np.ndarray) -> np.ndarray:
    """icatb_preproc_data('remove mean per timepoint') then icatb_remove_mean."""
    x = data - data.mean(axis=1, keepdims=True)
    return x - x.mean(axis=1, keepdims=True)
