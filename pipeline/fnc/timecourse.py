"""Post-processing of network time courses, as GIFT does it before FNC.

The steps and their order follow GIFT's ``icatb_postprocess_timecourses`` and
``icatb_compute_dfnc``: detrend (``icatb_detrend``), regress motion covariates
(``regress_cov`` in ``icatb_loadComp``), despike (``icatb_despike_tc``) and
low-pass filter (``icatb_filt_data``). Every step is re-implemented on arrays of
shape ``(n_volumes, n_networks)`` and vectorised over networks. The GIFT
fixture ``test_icatb_despike_filter`` is reproduced to ~1e-14 (see
``tests/pipeline/fnc/test_timecourse.py``).

The multitaper spectra, dynamic range and fALFF of GIFT's post-processing
(``icatb_get_spectra`` / ``icatb_get_spec_stats``) live here as well, since
they are computed on the detrended time courses.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal
from scipy.signal.windows import dpss

from pipeline._docs import fill_doc
from pipeline._validation import check_array_2d, check_in_allowed, check_int

__all__ = [
    "despike",
    "detrend",
    "lowpass",
    "postprocess",
    "regress_motion",
    "spectra",
    "spectral_stats",
]

LOGGER = logging.getLogger("msica.fnc")

#: fMRIPrep names of the six rigid-body motion parameters.
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
_FILTER_ORDER_DEFAULT = 5


def _check_timecourses(timecourses: Any, min_rows: int = 2) -> np.ndarray:
    arr = np.asarray(timecourses, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    return check_array_2d("timecourses", arr, min_rows=min_rows)


def _check_t_r(t_r: Any) -> float:
    if isinstance(t_r, bool) or not np.isscalar(t_r) or not np.isfinite(t_r) or t_r <= 0:
        raise ValueError(f"'t_r' must be a positive number of seconds. Got {t_r!r}.")
    return float(t_r)


def _lstsq_residuals(design: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Residuals of the least-squares fit of every column of ``data`` on ``design``."""
    beta = np.linalg.lstsq(design, data, rcond=None)[0]
    return data - design @ beta


def _detrend_design(n_volumes: int, order: int) -> np.ndarray:
    """GIFT's ``icatb_detrend`` regressors (sin/cos, centred ramp, constant)."""
    columns = []
    if order >= 3:
        phase4 = np.linspace(0.0, 4.0 * np.pi, n_volumes)
        columns += [np.sin(phase4), np.cos(phase4)]
    if order >= 2:
        phase2 = np.linspace(0.0, 2.0 * np.pi, n_volumes)
        columns += [np.sin(phase2), np.cos(phase2)]
    if order >= 1:
        columns.append(np.arange(1.0, n_volumes + 1.0))
    design = np.column_stack(columns) if columns else np.empty((n_volumes, 0))
    design = design - design.mean(axis=0)  # GIFT: detrend(., 0) of each regressor
    return np.column_stack([design, np.ones(n_volumes)])


@fill_doc
def detrend(timecourses: Any, order: int = 3) -> np.ndarray:
    """Remove GIFT's slow trends (``icatb_detrend``) from every network.

    Parameters
    ----------
    %(timecourses)s
    order : {0, 1, 2, 3}, default=3
        0 removes the mean; 1 also a linear trend; 2 also sine and cosine of
        one cycle over the run; 3 also sine and cosine of two cycles
        (GIFT's ``DETRENDNUMBER``).

    Returns
    -------
    ndarray of shape (n_volumes, n_networks)
        Residuals of the least-squares fit.

    Raises
    ------
    ValueError
        If ``order`` is not 0-3 or the time courses are not a finite 2-D array.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(20.0)[:, None]
    >>> bool(np.allclose(detrend(3.0 + 0.5 * t, order=1), 0.0))
    True
    """
    check_in_allowed("order", order, [0, 1, 2, 3])
    tcs = _check_timecourses(timecourses)
    return _lstsq_residuals(_detrend_design(tcs.shape[0], order), tcs)


def _motion_design(motion: Any, n_volumes: int) -> np.ndarray:
    if isinstance(motion, pd.DataFrame):
        missing = [c for c in MOTION_COLUMNS if c not in motion.columns]
        if missing:
            raise ValueError(
                f"'motion' DataFrame must contain the fMRIPrep columns "
                f"{list(MOTION_COLUMNS)}. Missing {missing}. Pass the "
                "desc-confounds_timeseries.tsv table or an array."
            )
        deriv = [f"{c}_derivative1" for c in MOTION_COLUMNS]
        base = motion.loc[:, list(MOTION_COLUMNS)].to_numpy(dtype=np.float64)
        if all(c in motion.columns for c in deriv):
            # fMRIPrep leaves the first derivative value empty (n/a): it is 0 here.
            der = motion.loc[:, deriv].to_numpy(dtype=np.float64)
            der = np.where(np.isnan(der), 0.0, der)
        else:
            der = np.vstack([np.zeros((1, 6)), np.diff(base, axis=0)])
        design = np.column_stack([base, der])
    else:
        design = np.asarray(motion, dtype=np.float64)
        if design.ndim != 2 or design.shape[1] not in (6, 12):
            raise ValueError(
                "'motion' must be an array of shape (n_volumes, 6) or (n_volumes, 12) "
                "(6 parameters, optionally followed by their derivatives). "
                f"Got shape {design.shape}."
            )
        if design.shape[1] == 6:
            deriv = np.vstack([np.zeros((1, 6)), np.diff(design, axis=0)])
            design = np.column_stack([design, deriv])
    if design.shape[0] != n_volumes:
        raise ValueError(
            f"'motion' must have one row per volume ({n_volumes}). Got {design.shape[0]} rows."
        )
    if not np.all(np.isfinite(design)):
        raise ValueError("'motion' contains NaN or infinite values (other than a first-row derivative).")
    return design


@fill_doc
def regress_motion(timecourses: Any, motion: Any) -> np.ndarray:
    """Regress head-motion parameters out of the time courses (GIFT ``regress_cov``).

    Parameters
    ----------
    %(timecourses)s
    motion : array-like of shape (n_volumes, 6) or (n_volumes, 12), or DataFrame
        The six rigid-body parameters; their backward differences (first row
        0) are appended when only six columns are given. A DataFrame is read
        as fMRIPrep confounds (``trans_x`` ... ``rot_z`` and, when present,
        their ``_derivative1`` columns).

    Returns
    -------
    ndarray of shape (n_volumes, n_networks)
        The time courses less their least-squares fit on the motion regressors.

    Raises
    ------
    ValueError
        If ``motion`` has the wrong shape or columns, or non-finite values.

    Notes
    -----
    As in GIFT, the regressors are z-scored (``ddof=1``) and the fit uses the
    pseudo-inverse, with no intercept (the time courses are detrended first).
    GIFT itself regresses the columns of the covariate file as given; msica
    adds the derivatives as the NeuroMark pipelines do. Constant regressors
    cannot be z-scored; they are dropped with a warning.
    """
    tcs = _check_timecourses(timecourses)
    design = _motion_design(motion, tcs.shape[0])
    sd = design.std(axis=0, ddof=1)
    constant = sd <= np.finfo(float).eps * np.maximum(1.0, np.abs(design).max(axis=0))
    if np.any(constant):
        warnings.warn(
            f"{int(constant.sum())} constant motion regressor(s) cannot be z-scored and were "
            "dropped. Check the confounds file if this is unexpected.",
            UserWarning,
            stacklevel=2,
        )
        design, sd = design[:, ~constant], sd[~constant]
    if design.shape[1] == 0:
        return tcs.copy()
    design = (design - design.mean(axis=0)) / sd
    return tcs - design @ (np.linalg.pinv(design) @ tcs)


def _matlab_smooth(x: np.ndarray, span: int) -> np.ndarray:
    """MATLAB ``smooth(x, span)`` (moving average) along axis 0.

    An even span is reduced by one, and the ends use the largest symmetric
    window that fits, as MATLAB does.
    """
    if span % 2 == 0:
        span -= 1
    n = x.shape[0]
    half = span // 2
    idx = np.arange(n)
    k = np.minimum(np.minimum(idx, n - 1 - idx), half)
    csum = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    return (csum[idx + k + 1] - csum[idx - k]) / (2 * k + 1)[:, None]


def _despike_smooth(x: np.ndarray, c1: float, span: int) -> tuple[np.ndarray, np.ndarray]:
    fit = _matlab_smooth(x, span)
    res = np.abs(x - fit)
    sd = res.std(axis=0, ddof=1)
    spikes = res > c1 * sd
    return np.where(spikes, fit, x), spikes


def _despike_afni(
    x: np.ndarray, t_r: float, c1: float, c2: float
) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    u = np.linspace(-1.0, 1.0, n)
    t = np.arange(n) * t_r
    n_sin = n // 30
    cyc = [
        np.sin(2 * np.pi * i * t / (n * t_r)) + np.cos(2 * np.pi * i * t / (n * t_r))
        for i in range(1, n_sin + 1)
    ]
    designs = [
        np.column_stack([np.ones(n), u]),  # linear
        np.column_stack([t**2, t, np.ones(n)]),  # quadratic
        np.column_stack([t, t**2, *cyc]),  # GIFT's "spline" (no intercept)
    ]
    fits = np.stack([x - _lstsq_residuals(d, x) for d in designs])  # (3, n, k)
    mse = np.mean((x[None] - fits) ** 2, axis=1)  # (3, k)
    best = np.argmin(mse, axis=0)  # first minimum, as MATLAB's min
    fit = np.take_along_axis(fits, best[None, None, :], axis=0)[0]
    res = x - fit
    mad = np.median(np.abs(res - np.median(res, axis=0)), axis=0)
    sigma = mad * np.sqrt(np.pi / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(sigma > 0, res / np.where(sigma > 0, sigma, 1.0), 0.0)
    spikes = np.abs(s) > c1
    squashed = np.sign(s) * (c1 + (c2 - c1) * np.tanh((np.abs(s) - c1) / (c2 - c1)))
    s_out = np.where(spikes, squashed, s)
    return np.where(sigma > 0, fit + s_out * sigma, x), spikes


@fill_doc
def despike(
    timecourses: Any,
    t_r: float = 2.0,
    *,
    method: str = "smooth",
    c1: float = 2.5,
    c2: float = 3.0,
    span: int = 4,
    return_spikes: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Despike time courses as GIFT's ``icatb_despike_tc``.

    Parameters
    ----------
    %(timecourses)s
    %(t_r)s Used by ``method="afni"`` only.
    method : {"smooth", "afni"}, default="smooth"
        ``"smooth"`` (GIFT's default, ``DESPIKE_OPTIONS.method = 2``): the
        reference is MATLAB's moving average ``smooth(tc, span)``; volumes whose
        absolute residual exceeds ``c1`` times the standard deviation
        (``ddof=1``) of the absolute residuals are replaced by the reference.
        ``"afni"`` (method 1, AFNI 3dDespike style): the best of a linear,
        quadratic and sine/cosine fit (least squares, lowest mean squared
        error) is the reference; residuals are scaled by
        ``sigma = MAD * sqrt(pi/2)`` and scaled values beyond ``c1`` are
        squashed to ``c1 + (c2 - c1) * tanh((|s| - c1) / (c2 - c1))``.
    c1, c2 : float, default=2.5, 3.0
        Spike threshold and upper bound of the squashed deviation.
    span : int, default=4
        Span of the moving average (``DESPIKE_OPTIONS.order``); an even span
        is reduced by one, as MATLAB's ``smooth`` does.
    return_spikes : bool, default=False
        Also return the boolean mask of replaced volumes.

    Returns
    -------
    despiked : ndarray of shape (n_volumes, n_networks)
    spikes : ndarray of bool, shape (n_volumes, n_networks)
        Only when ``return_spikes=True``.

    Raises
    ------
    ValueError
        For an unknown ``method``, ``c2 <= c1``, ``span < 1`` or bad input.

    Notes
    -----
    GIFT fits the AFNI reference curves with ``lsqcurvefit``; the models are
    linear in their parameters, so msica solves them exactly by least squares.
    As in GIFT, the quadratic fit nests the linear one, so the linear fit wins
    only on ties. The GIFT fixture ``test_icatb_despike_filter`` is reproduced
    with ``method="smooth"`` (GIFT's current default), not ``"afni"``.
    """
    check_in_allowed("method", method, ["smooth", "afni"])
    tcs = _check_timecourses(timecourses, min_rows=3)
    if not c2 > c1 > 0:
        raise ValueError(f"'c1' and 'c2' must satisfy 0 < c1 < c2. Got c1={c1!r}, c2={c2!r}.")
    if method == "smooth":
        check_int("span", span, 1)
        out, spikes = _despike_smooth(tcs, c1, int(span))
    else:
        out, spikes = _despike_afni(tcs, _check_t_r(t_r), c1, c2)
    LOGGER.debug("despike(%s): %d volumes replaced", method, int(spikes.sum()))
    return (out, spikes) if return_spikes else out


#: Module-level alias: ``postprocess`` has a parameter named ``despike``.
_despike_step = despike


@fill_doc
def lowpass(
    timecourses: Any, t_r: float, cutoff_hz: float = 0.15, *, order: int = _FILTER_ORDER_DEFAULT
) -> np.ndarray:
    """Zero-phase Butterworth low-pass filter (GIFT ``icatb_filt_data``).

    Parameters
    ----------
    %(timecourses)s
    %(t_r)s
    cutoff_hz : float, default=0.15
        High-frequency cut-off in Hz, below the Nyquist frequency ``1/(2 t_r)``.
    order : int, default=5
        Butterworth order (``butter(5, cutoff/nyquist)``).

    Returns
    -------
    ndarray of shape (n_volumes, n_networks)
        The low-passed time courses.

    Raises
    ------
    ValueError
        If the cut-off is not in (0, Nyquist) or the run is too short to pad.

    Notes
    -----
    MATLAB's ``filtfilt`` pads with ``3 * (max(len(a), len(b)) - 1)`` reflected
    samples, three fewer than scipy's default; msica passes that ``padlen``.
    """
    tcs = _check_timecourses(timecourses)
    t_r = _check_t_r(t_r)
    nyquist = 0.5 / t_r
    if not 0 < cutoff_hz < nyquist:
        raise ValueError(
            f"'lowpass_hz' must be in (0, Nyquist={nyquist:g} Hz) for t_r={t_r:g} s. "
            f"Got {cutoff_hz!r}. Use None to skip filtering."
        )
    b, a = signal.butter(int(order), cutoff_hz / nyquist)
    padlen = 3 * (max(len(a), len(b)) - 1)
    if tcs.shape[0] <= padlen:
        raise ValueError(
            f"Low-pass filtering needs more than {padlen} volumes (filter order {order}). "
            f"Got {tcs.shape[0]}. Use lowpass_hz=None for such short runs."
        )
    return signal.filtfilt(b, a, tcs, axis=0, padlen=padlen)


@fill_doc
def postprocess(
    timecourses: Any,
    t_r: float,
    *,
    detrend_order: int | None = 3,
    despike: bool | str = True,
    lowpass_hz: float | None = 0.15,
    filter_order: int = _FILTER_ORDER_DEFAULT,
    motion: Any = None,
) -> np.ndarray:
    """GIFT's time-course post-processing before FNC, in GIFT's order.

    detrend → regress motion → despike → low-pass, as in
    ``icatb_postprocess_timecourses`` (static FNC) and ``icatb_compute_dfnc``.

    Parameters
    ----------
    %(timecourses)s
    %(t_r)s
    detrend_order : {0, 1, 2, 3} or None, default=3
        See :func:`detrend`; None skips the step.
    despike : bool or {"smooth", "afni"}, default=True
        True uses GIFT's default method (``"smooth"``); False skips.
    lowpass_hz : float or None, default=0.15
        Cut-off of :func:`lowpass`; None skips.
    filter_order : int, default=5
    motion : array-like of shape (n_volumes, 6 or 12), DataFrame or None
        See :func:`regress_motion`.

    Returns
    -------
    ndarray of shape (n_volumes, n_networks)
        The time courses after the steps asked for, in GIFT's order.

    Raises
    ------
    ValueError
        For NaNs, a wrong shape or a bad option (see the individual steps).

    References
    ----------
    Calhoun lab, GIFT ``icatb_postprocess_timecourses.m``; Allen et al. 2014,
    Cereb. Cortex 24:663 (dFNC pre-processing).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> postprocess(rng.standard_normal((100, 4)), t_r=2.0).shape
    (100, 4)
    """
    tcs = _check_timecourses(timecourses, min_rows=3)
    t_r = _check_t_r(t_r)
    if despike is True:
        despike = "smooth"
    if despike is not False:
        check_in_allowed("despike", despike, [True, False, "smooth", "afni"])
    out = tcs
    if detrend_order is not None:
        out = detrend(out, detrend_order)
    if motion is not None:
        out = regress_motion(out, motion)
    if despike is not False:
        out = _despike_step(out, t_r, method=despike)
    if lowpass_hz is not None:
        out = lowpass(out, t_r, lowpass_hz, order=filter_order)
    return out


@fill_doc
def spectra(
    timecourses: Any, t_r: float, *, tapers: tuple[float, int] = (3, 5)
) -> tuple[np.ndarray, np.ndarray]:
    """Multitaper power spectra normalised to sum 1 (GIFT ``icatb_get_spectra``).

    Parameters
    ----------
    %(timecourses)s
    %(t_r)s
    tapers : (float, int), default=(3, 5)
        Time-bandwidth product and number of DPSS tapers (chronux ``[TW K]``).

    Returns
    -------
    spectra : ndarray of shape (n_frequencies, n_networks)
        Each network's spectrum divided by its sum.
    freqs : ndarray of shape (n_frequencies,)
        0 to Nyquist in Hz; the FFT length is the next power of 2.
    """
    tcs = _check_timecourses(timecourses, min_rows=4)
    t_r = _check_t_r(t_r)
    n = tcs.shape[0]
    fs = 1.0 / t_r
    nfft = max(int(2 ** np.ceil(np.log2(n))), n)
    win = dpss(n, tapers[0], int(tapers[1]))  # unit energy, like MATLAB's dpss
    proj = tcs.T[:, None, :] * win[None]  # (networks, tapers, n)
    power = np.mean(np.abs(np.fft.fft(proj, n=nfft, axis=-1)) ** 2, axis=1)
    freqs = np.arange(nfft) * fs / nfft
    keep = freqs <= fs / 2 * (1 + 1e-12)
    spec = power[:, keep]
    spec = spec / spec.sum(axis=1, keepdims=True)
    return spec.T, freqs[keep]


def spectral_stats(
    spectra_: np.ndarray, freqs: np.ndarray, freq_limits: tuple[float, float] = (0.1, 0.15)
) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic range and fALFF of spectra (GIFT ``icatb_get_spec_stats``).

    Parameters
    ----------
    spectra_ : ndarray of shape (n_frequencies, n_networks)
    freqs : ndarray of shape (n_frequencies,)
    freq_limits : (float, float), default=(0.1, 0.15)

    Returns
    -------
    dynamic_range : ndarray of shape (n_networks,)
        Peak power minus the minimum power at and above the peak frequency.
    falff : ndarray of shape (n_networks,)
        GIFT's ratio: area under the spectrum below ``min(freq_limits)`` over
        the area above ``max(freq_limits)`` (trapezoids).
    """
    s = np.asarray(spectra_, dtype=np.float64)
    f = np.asarray(freqs, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.shape[0] != f.shape[0]:
        raise ValueError(
            f"'spectra_' must have one row per frequency ({f.shape[0]}). Got shape {s.shape}."
        )
    peak = np.argmax(s, axis=0)
    after_peak = np.arange(s.shape[0])[:, None] >= peak[None, :]
    dyn = s.max(axis=0) - np.where(after_peak, s, np.inf).min(axis=0)
    lo, hi = min(freq_limits), max(freq_limits)
    low, high = f < lo, f > hi
    falff = np.trapezoid(s[low], f[low], axis=0) / np.trapezoid(s[high], f[high], axis=0)
    return dyn, falff
