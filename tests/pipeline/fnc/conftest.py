"""Fixtures for the FNC tests: GIFT reference outputs and planted-signal generators."""

from __future__ import annotations

import numpy as np
import pytest

RANDOM_STATE = 42
N_VOLUMES = 200
T_R = 2.0
GIFT_DIR = "gift_fixtures/reference/test_icatb_despike_filter"


def correlated_signals(corr: np.ndarray, n_volumes: int, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian signals whose population correlation is ``corr``."""
    chol = np.linalg.cholesky(corr)
    return rng.standard_normal((n_volumes, corr.shape[0])) @ chol.T


def random_corr(n: int, rng: np.random.Generator, strength: float = 0.7) -> np.ndarray:
    """A well-conditioned random correlation matrix with strong off-diagonals."""
    loadings = rng.standard_normal((n, 2)) * strength
    cov = loadings @ loadings.T + np.eye(n) * (1 - strength**2)
    scale = np.sqrt(np.diag(cov))
    return cov / np.outer(scale, scale)


def state_timecourses(
    state_corrs: np.ndarray,
    n_subjects: int,
    n_segments: int,
    segment: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-subject time courses that switch between planted connectivity states.

    Returns the time courses and the true state of every volume.
    """
    tcs, truth = [], []
    k = state_corrs.shape[0]
    for _ in range(n_subjects):
        order = rng.permutation(np.resize(np.arange(k), n_segments))
        tcs.append(np.vstack([correlated_signals(state_corrs[s], segment, rng) for s in order]))
        truth.append(np.repeat(order, segment))
    return tcs, truth


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(RANDOM_STATE)


@pytest.fixture(scope="session")
def gift_despike_filter(shared_data):
    """GIFT's test_icatb_despike_filter input time courses and expected outputs."""
    h5py = pytest.importorskip("h5py")
    from scipy.io import loadmat

    root = shared_data / GIFT_DIR
    with h5py.File(root / "nostat_ica_c1-1.mat", "r") as handle:
        tc = np.array(handle["tc"]).T  # v7.3: h5py reverses MATLAB's 50 x 20
    expected = loadmat(
        root / "nostat_postprocess_results" / "nostat_post_process_sub_001_match.mat"
    )
    return {
        "tc": tc,
        "t_r": 1.0,  # sesInfo.TR of this GIFT test
        "fnc": expected["fnc_corrs"][0],
        "spectra": expected["spectra_tc"][0],
        "falff": expected["fALFF"][0],
        "dynamic_range": expected["dynamic_range"][0],
    }
