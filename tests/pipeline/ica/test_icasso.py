"""ICASSO: real sources are more stable than noise components."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pipeline.exceptions import ConvergenceWarning
from pipeline.ica._matching import match_components
from pipeline.ica.icasso import ICASSO, cluster_stability

RANDOM_STATE = 42  # same as conftest.RANDOM_STATE (tests are not a package)


@pytest.fixture(scope="module")
def mixed_real_and_noise():
    rng = np.random.RandomState(RANDOM_STATE)
    n = 3000
    real = rng.laplace(size=(3, n))
    noise = rng.randn(3, n)
    sources = np.vstack([real, noise])
    sources /= sources.std(axis=1, keepdims=True)
    q = np.linalg.qr(rng.randn(6, 6))[0]
    return q @ sources, real


@pytest.mark.parametrize(("algorithm", "mode"), [("fastica", "bootstrap"), ("infomax", "both")])
def test_real_sources_more_stable_than_noise(mixed_real_and_noise, algorithm, mode):
    data, real = mixed_real_and_noise
    with warnings.catch_warnings():
        # FastICA does not converge inside the Gaussian (noise) subspace: expected here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        ic = ICASSO(n_runs=5, algorithm=algorithm, mode=mode, random_state=RANDOM_STATE,
                    device="cpu").fit(data)
    rows, _, r = match_components(ic.components_, real)
    assert r.min() > 0.95
    noise_rows = np.setdiff1d(np.arange(ic.components_.shape[0]), rows)
    assert ic.stability_[rows].min() > ic.stability_[noise_rows].max()
    assert ic.stability_[rows].min() > 0.8
    assert ic.run_components_.shape == (5, 6, 3000)
    assert np.all(np.diff(ic.stability_) <= 0)


def test_cluster_stability_on_identical_runs():
    rng = np.random.RandomState(0)
    maps = rng.randn(3, 200)
    labels, stab, centro, _ = cluster_stability(np.vstack([maps, -maps, 2 * maps]), 3)
    assert len(np.unique(labels)) == 3
    # identical members (|r| = 1) and near-orthogonal clusters give Iq close to 1
    expected = 1.0 - np.array([np.abs(np.corrcoef(maps)[i, [j for j in range(3) if j != i]]).mean()
                               for i in range(3)])
    np.testing.assert_allclose(np.sort(stab), np.sort(expected), atol=1e-12)


def test_errors(mixed_real_and_noise):
    data, _ = mixed_real_and_noise
    with pytest.raises(ValueError, match="'n_runs' must be an int >= 2. Got 1. ICASSO compares"):
        ICASSO(n_runs=1).fit(data)
    with pytest.raises(ValueError, match="pass the transpose"):
        ICASSO(n_runs=2, device="cpu").fit(data.T)
    with pytest.raises(ValueError, match="'mode' must be one of"):
        ICASSO(n_runs=2, mode="jackknife").fit(data)
