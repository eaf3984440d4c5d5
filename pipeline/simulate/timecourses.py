"""Temporal side of the simulator: state sequences and HRF-convolved time courses."""

from __future__ import annotations

import numpy as np

__all__ = ["hrf_kernel", "neural_to_bold", "sample_latent", "state_sequence"]


def state_sequence(n_volumes: int, n_states: int, rng: np.random.RandomState,
                   dwell: tuple[int, int] = (20, 50)) -> np.ndarray:
    """Blocks of connectivity states with dwell times drawn in ``dwell`` (TRs).

    Consecutive blocks always change state (when ``n_states > 1``).

    Returns
    -------
    ndarray of shape (n_volumes,), dtype int
    """
    states = np.empty(n_volumes, dtype=int)
    t, current = 0, int(rng.randint(n_states))
    while t < n_volumes:
        length = int(rng.randint(dwell[0], dwell[1] + 1))
        states[t:t + length] = current
        t += length
        if n_states > 1:
            current = int((current + 1 + rng.randint(n_states - 1)) % n_states)
    return states


def sample_latent(latent_by_state: np.ndarray, states: np.ndarray,
                  rng: np.random.RandomState) -> np.ndarray:
    """Gaussian latent factors whose correlation follows the state of each volume.

    Parameters
    ----------
    latent_by_state : ndarray of shape (n_states, n_latent, n_latent)
        Correlation matrices (positive definite).
    states : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples, n_latent)
    """
    n_latent = latent_by_state.shape[1]
    eps = rng.standard_normal((len(states), n_latent))
    out = np.empty_like(eps)
    for s in np.unique(states):
        chol = np.linalg.cholesky(latent_by_state[s])
        sel = states == s
        out[sel] = eps[sel] @ chol.T
    return out


def hrf_kernel(t_r: float) -> np.ndarray:
    """SPM canonical HRF sampled at ``t_r`` and scaled to unit energy."""
    from nilearn.glm.first_level import spm_hrf

    h = spm_hrf(t_r, oversampling=1, time_length=32.0)
    return h / np.sqrt(np.sum(h**2))


def neural_to_bold(neural: np.ndarray, kernel: np.ndarray, n_burn: int) -> np.ndarray:
    """Convolve each column with the HRF and drop the first ``n_burn`` samples.

    With a unit-energy kernel, white unit-variance input gives unit-variance output
    and the correlation between columns is kept.
    """
    n = neural.shape[0]
    out = np.empty_like(neural)
    for k in range(neural.shape[1]):
        out[:, k] = np.convolve(neural[:, k], kernel)[:n]
    return out[n_burn:]
