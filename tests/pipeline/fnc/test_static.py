"""Tests for pipeline.fnc.static: planted correlations, nilearn/sklearn references, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from pipeline.fnc.names import network_labels
from pipeline.fnc.static import FNC_MEASURES, FNCMeasure, StaticFNC, fisher_z, static_fnc

from .conftest import correlated_signals, random_corr


def test_fisher_z_is_gift_r_to_z():
    r = np.array([-0.9, -0.2, 0.0, 0.5, 0.99])
    np.testing.assert_allclose(fisher_z(r), np.arctanh(r), atol=1e-6)
    assert np.isfinite(fisher_z(1.0))  # GIFT's 1e-8 keeps |r| = 1 finite


def test_static_fnc_recovers_planted_correlation(rng):
    corr = random_corr(6, rng)
    tcs = correlated_signals(corr, 4000, rng)
    fnc = static_fnc(tcs)
    assert np.all(np.diag(fnc) == 0)
    np.testing.assert_allclose(fnc, fnc.T)
    off = ~np.eye(6, dtype=bool)
    # sampling SD of z is 1/sqrt(n - 3) ~ 0.016
    assert np.abs(fnc[off] - np.arctanh(corr[off])).max() < 0.07
    ref = np.arctanh(np.corrcoef(tcs, rowvar=False)[off])
    np.testing.assert_allclose(fnc[off], ref, atol=1e-7)


def test_static_fnc_errors(rng):
    with pytest.raises(ValueError, match="NaN"):
        static_fnc(np.full((20, 3), np.nan))
    with pytest.raises(ValueError, match="at least 3 rows and 2 columns"):
        static_fnc(rng.standard_normal((20, 1)))
    x = rng.standard_normal((20, 3))
    x[:, 1] = 2.0
    with pytest.raises(ValueError, match="constant"):
        static_fnc(x)


def _two_scales(rng, n=300):
    coarse = rng.standard_normal((n, 2))
    fine = np.column_stack(
        [coarse[:, 0] + 0.5 * rng.standard_normal(n), coarse[:, 0], coarse[:, 1]]
    ) + 0.5 * rng.standard_normal((n, 3))
    return {2: coarse, 3: fine}


def test_static_estimator_multiscale_blocks(rng):
    tcs = _two_scales(rng)
    est = StaticFNC(labels={2: ["DMN", "VIS"]}).fit(tcs)
    assert est.labels_ == ["s2-DMN", "s2-VIS", "s3-N1", "s3-N2", "s3-N3"]
    np.testing.assert_array_equal(est.scale_of_node_, [2, 2, 3, 3, 3])
    mat = est.transform(tcs)
    np.testing.assert_allclose(mat, static_fnc(np.hstack([tcs[2], tcs[3]])))
    # the planted cross-scale coupling (coarse N1 drives fine N1, N2) is the strongest
    cross = mat[:2, 2:]
    assert cross[0, :2].min() > 0.5 and abs(cross[0, 2]) < 0.2
    group = est.transform([tcs, tcs])
    assert group.shape == (2, 5, 5)


def test_static_estimator_partial_correlation_matches_precision(rng):
    tcs = _two_scales(rng, n=500)
    mat = StaticFNC(kind="partial correlation").fit_transform(tcs)
    x = np.hstack([tcs[2], tcs[3]])
    prec = np.linalg.inv(np.cov(x, rowvar=False, bias=True))
    d = np.sqrt(np.diag(prec))
    pcorr = -prec / np.outer(d, d)
    np.fill_diagonal(pcorr, 0)
    np.testing.assert_allclose(mat, fisher_z(pcorr), atol=1e-8)


def test_static_estimator_ledoit_wolf(rng):
    tcs = {4: rng.standard_normal((40, 4)), 10: rng.standard_normal((40, 10))}
    mat = StaticFNC(shrinkage=True).fit_transform(tcs)
    x = np.hstack([tcs[4], tcs[10]])
    cov = LedoitWolf().fit(x - x.mean(0)).covariance_
    d = np.sqrt(np.diag(cov))
    corr = cov / np.outer(d, d)
    np.fill_diagonal(corr, 0)
    np.testing.assert_allclose(mat, fisher_z(corr), atol=1e-8)
    # shrinkage pulls correlations toward 0
    plain = StaticFNC().fit_transform(tcs)
    assert np.abs(mat).sum() < np.abs(plain).sum()


def test_static_estimator_errors(rng):
    tcs = _two_scales(rng)
    with pytest.raises(ValueError, match="'kind' must be one of"):
        StaticFNC(kind="covariance").fit(tcs)
    with pytest.raises(TypeError, match="'shrinkage' must be of type"):
        StaticFNC(shrinkage="yes").fit(tcs)
    with pytest.raises(TypeError, match="expects a dict"):
        StaticFNC().fit(np.zeros((10, 3)))
    est = StaticFNC().fit(tcs)
    with pytest.raises(ValueError, match="fitted scales"):
        est.transform({3: tcs[3], 2: tcs[2]})
    with pytest.raises(ValueError, match="same number of volumes"):
        est.transform({2: tcs[2], 3: tcs[3][:-5]})
    with pytest.raises(ValueError, match="networks; 5 were fitted"):
        est.transform({2: tcs[2], 3: tcs[3][:, :2]})
    with pytest.raises(ValueError, match="one entry per network"):
        network_labels(4, 4, ["a", "b"])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        StaticFNC().transform(tcs)


def test_static_estimator_batched_equals_single(rng):
    subjects = [
        {2: rng.standard_normal((40, 2)), 3: rng.standard_normal((40, 3))} for _ in range(5)
    ]
    est = StaticFNC().fit(subjects)
    batched = est.transform(subjects)
    for subject, mat in zip(subjects, batched):
        np.testing.assert_allclose(mat, static_fnc(np.hstack([subject[2], subject[3]])), atol=1e-12)
    subjects[3][3][:, 1] = 0.0
    with pytest.raises(ValueError, match="constant"):
        est.transform(subjects)


def test_registered_measure_is_a_kind(rng, monkeypatch):
    """A measure is one FNC_MEASURES entry: StaticFNC accepts and computes it."""
    def covariance(runs, shrinkage):
        return np.stack([np.cov(x, rowvar=False) for x in runs])

    with pytest.raises(ValueError, match="kind"):
        StaticFNC(kind="covariance").fit({4: rng.standard_normal((30, 4))})
    monkeypatch.setitem(FNC_MEASURES, "covariance", FNCMeasure(
        name="covariance", compute=covariance, description="covariance", summary="covariance"))
    tcs = {4: rng.standard_normal((30, 4)), 10: rng.standard_normal((30, 10))}
    stacked = np.hstack([tcs[4], tcs[10]])
    np.testing.assert_allclose(StaticFNC(kind="covariance").fit_transform(tcs),
                               np.cov(stacked, rowvar=False))
