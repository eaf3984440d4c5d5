"""Tests for pipeline.fnc.timecourse: GIFT fixture parity, planted signals, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import signal

from pipeline.fnc.static import static_fnc
from pipeline.fnc.timecourse import (
    MOTION_COLUMNS,
    despike,
    detrend,
    lowpass,
    postprocess,
    regress_motion,
    spectra,
    spectral_stats,
)

from .conftest import N_VOLUMES, T_R

# ---------------------------------------------------------------- GIFT fixture


@pytest.mark.realdata
def test_gift_fnc_matches_fixture(gift_despike_filter):
    """icatb_postprocess_timecourses: detrend 3 -> despike -> 0.15 Hz filter -> corr -> r_to_z."""
    fix = gift_despike_filter
    fnc = static_fnc(postprocess(fix["tc"], fix["t_r"]))
    np.testing.assert_allclose(fnc, fix["fnc"], rtol=1e-10, atol=1e-12)
    # GIFT's test tolerance: sum of absolute differences < 1e-10
    assert np.abs(fnc - fix["fnc"]).sum() < 1e-10


@pytest.mark.realdata
def test_gift_despike_default_is_smooth_method(gift_despike_filter):
    """The fixture was made with DESPIKE_OPTIONS.method = 2; the AFNI method differs."""
    fix = gift_despike_filter
    afni = static_fnc(postprocess(fix["tc"], fix["t_r"], despike="afni"))
    assert np.abs(afni - fix["fnc"]).max() > 1e-3


@pytest.mark.realdata
def test_gift_spectra_falff_dynamic_range(gift_despike_filter):
    fix = gift_despike_filter
    spec, freqs = spectra(detrend(fix["tc"], 3), fix["t_r"])
    assert spec.shape == fix["spectra"].shape == (33, 20)
    np.testing.assert_allclose(freqs[[0, -1]], [0.0, 0.5])
    np.testing.assert_allclose(spec, fix["spectra"], rtol=1e-10, atol=1e-14)
    dyn, falff = spectral_stats(spec, freqs)
    np.testing.assert_allclose(dyn, fix["dynamic_range"], rtol=1e-10)
    np.testing.assert_allclose(falff, fix["falff"], rtol=1e-10)


# ---------------------------------------------------------------- detrend


def test_detrend_removes_gift_regressors_exactly(rng):
    n = 120
    phase = np.linspace(0, 2 * np.pi, n)
    trend = 5 + 0.03 * np.arange(n) + 2 * np.sin(phase) - np.cos(2 * phase)
    trend += 0.5 * np.sin(2 * phase)
    noise = rng.standard_normal((n, 3))
    out = detrend(noise + trend[:, None], order=3)
    np.testing.assert_allclose(out, detrend(noise, order=3), atol=1e-10)


@pytest.mark.parametrize("order", [0, 1])
def test_detrend_low_orders_match_scipy(rng, order):
    x = rng.standard_normal((60, 4)) + np.arange(60)[:, None] * 0.1
    ref = signal.detrend(x, axis=0, type="constant" if order == 0 else "linear")
    np.testing.assert_allclose(detrend(x, order=order), ref, atol=1e-10)


def test_detrend_errors():
    with pytest.raises(ValueError, match="'order' must be one of"):
        detrend(np.zeros((10, 2)), order=4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        detrend(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="2-D array"):
        detrend(np.zeros((4, 3, 2)))


# ---------------------------------------------------------------- despike


def test_despike_smooth_replaces_planted_spike(rng):
    x = np.sin(np.linspace(0, 6 * np.pi, N_VOLUMES))[:, None]
    x = x + 0.05 * rng.standard_normal((N_VOLUMES, 1))
    spiked = x.copy()
    spiked[100] += 8.0
    out, spikes = despike(spiked, T_R, return_spikes=True)
    assert spikes[100, 0]
    # replaced by MATLAB smooth(., 3): mean of the spike and its two neighbours
    assert out[100, 0] == pytest.approx(spiked[99:102, 0].mean())
    untouched = ~spikes[:, 0]
    np.testing.assert_array_equal(out[untouched], spiked[untouched])
    assert spikes.sum() <= 5


def test_despike_afni_squashes_to_c2(rng):
    x = 0.3 * rng.standard_normal((N_VOLUMES, 2))
    x[50, 0] += 20.0
    out, spikes = despike(x, T_R, method="afni", return_spikes=True)
    assert spikes[50, 0]
    # reference: GIFT's three fits (linear, quadratic, t + t^2 + sin/cos), lowest MSE wins
    t = np.arange(N_VOLUMES) * T_R
    fits = [np.polyval(np.polyfit(t, x[:, 0], deg), t) for deg in (1, 2)]
    phase = 2 * np.pi * t / (N_VOLUMES * T_R)
    cycles = [np.sin(i * phase) + np.cos(i * phase) for i in range(1, N_VOLUMES // 30 + 1)]
    design = np.column_stack([t, t**2, *cycles])
    fits.append(design @ np.linalg.lstsq(design, x[:, 0], rcond=None)[0])
    fit = fits[int(np.argmin([np.mean((x[:, 0] - f) ** 2) for f in fits]))]
    res = x[:, 0] - fit
    sigma = np.median(np.abs(res - np.median(res))) * np.sqrt(np.pi / 2)
    dev = (out[50, 0] - fit[50]) / sigma
    assert 2.5 < dev <= 3.0
    assert dev == pytest.approx(2.5 + 0.5 * np.tanh((res[50] / sigma - 2.5) / 0.5), rel=1e-9)
    np.testing.assert_allclose(out[~spikes], x[~spikes], atol=1e-9)


def test_despike_errors():
    x = np.zeros((20, 2))
    with pytest.raises(ValueError, match="'method' must be one of"):
        despike(x, method="median")
    with pytest.raises(ValueError, match="0 < c1 < c2"):
        despike(x, c1=3.0, c2=2.0)
    with pytest.raises(ValueError, match="'span' must be an int"):
        despike(x, span=0)


# ---------------------------------------------------------------- low-pass


def test_lowpass_keeps_slow_and_removes_fast():
    t = np.arange(N_VOLUMES) * T_R
    slow = np.sin(2 * np.pi * 0.02 * t)
    fast = np.sin(2 * np.pi * 0.22 * t)
    out = lowpass(np.column_stack([slow + fast]), T_R, 0.1)[:, 0]
    core = slice(30, -30)
    assert np.abs(out[core] - slow[core]).max() < 0.05


def test_lowpass_matlab_padding_differs_from_scipy_default(rng):
    x = rng.standard_normal((80, 1))
    b, a = signal.butter(5, 0.15 / 0.25)
    ours = lowpass(x, T_R, 0.15)
    np.testing.assert_allclose(ours, signal.filtfilt(b, a, x, axis=0, padlen=15), atol=1e-12)
    assert np.abs(ours - signal.filtfilt(b, a, x, axis=0)).max() > 1e-6


def test_lowpass_errors():
    with pytest.raises(ValueError, match="Nyquist"):
        lowpass(np.zeros((50, 2)), 2.0, 0.3)
    with pytest.raises(ValueError, match="more than 15 volumes"):
        lowpass(np.zeros((12, 2)), 2.0, 0.1)
    with pytest.raises(ValueError, match="'t_r' must be a positive"):
        lowpass(np.zeros((50, 2)), -1.0, 0.1)


# ---------------------------------------------------------------- motion


def _motion(rng, n=N_VOLUMES):
    return np.cumsum(0.1 * rng.standard_normal((n, 6)), axis=0)


def test_regress_motion_removes_planted_contamination(rng):
    motion = _motion(rng)
    clean = rng.standard_normal((N_VOLUMES, 3))
    deriv = np.vstack([np.zeros((1, 6)), np.diff(motion, axis=0)])
    dirty = clean + motion @ rng.standard_normal((6, 3)) + deriv @ rng.standard_normal((6, 3))
    out = regress_motion(dirty, motion)
    design = np.column_stack([motion, deriv])
    # residuals are orthogonal to every regressor and close to the clean signal
    centred = design - design.mean(0)
    assert np.abs(centred.T @ out).max() < 1e-8
    assert np.corrcoef(out[:, 0], clean[:, 0])[0, 1] > 0.95


def test_regress_motion_dataframe_equals_array(rng):
    motion = _motion(rng)
    frame = pd.DataFrame(motion, columns=list(MOTION_COLUMNS))
    deriv = np.vstack([np.full((1, 6), np.nan), np.diff(motion, axis=0)])
    for i, col in enumerate(MOTION_COLUMNS):
        frame[f"{col}_derivative1"] = deriv[:, i]
    x = rng.standard_normal((N_VOLUMES, 2))
    np.testing.assert_allclose(regress_motion(x, frame), regress_motion(x, motion), atol=1e-10)


def test_regress_motion_errors_and_warning(rng):
    x = rng.standard_normal((N_VOLUMES, 2))
    with pytest.raises(ValueError, match="shape \\(n_volumes, 6\\)"):
        regress_motion(x, np.zeros((N_VOLUMES, 5)))
    with pytest.raises(ValueError, match="one row per volume"):
        regress_motion(x, np.ones((N_VOLUMES - 1, 6)))
    with pytest.raises(ValueError, match="Missing"):
        regress_motion(x, pd.DataFrame({"trans_x": np.zeros(N_VOLUMES)}))
    motion = _motion(rng)
    motion[:, 0] = 1.0
    with pytest.warns(UserWarning, match="constant motion regressor"):
        regress_motion(x, motion)


# ---------------------------------------------------------------- postprocess


def test_postprocess_order_and_steps(rng):
    x = rng.standard_normal((N_VOLUMES, 4)) + np.arange(N_VOLUMES)[:, None] * 0.05
    motion = _motion(rng)
    expected = lowpass(despike(regress_motion(detrend(x, 3), motion), T_R), T_R, 0.15)
    np.testing.assert_allclose(postprocess(x, T_R, motion=motion), expected, atol=1e-12)
    raw = postprocess(x, T_R, detrend_order=None, despike=False, lowpass_hz=None)
    np.testing.assert_array_equal(raw, x)


def test_postprocess_errors(rng):
    with pytest.raises(ValueError, match="NaN"):
        postprocess(np.full((50, 2), np.nan), T_R)
    with pytest.raises(ValueError, match="'despike' must be one of"):
        postprocess(rng.standard_normal((50, 2)), T_R, despike="median")
    with pytest.raises(ValueError, match="'t_r' must be a positive"):
        postprocess(rng.standard_normal((50, 2)), 0)


def test_spectral_stats_error():
    with pytest.raises(ValueError, match="one row per frequency"):
        spectral_stats(np.ones((5, 2)), np.arange(4.0))
