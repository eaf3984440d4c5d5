"""Temporal side of the simulator: state sequences and HRF-convolved time courses."""

from __future__ import annotations

import numpy as np

__all__ = ["hrf_kernel", "neural_to_bold", "sample_latent", "state_sequence"]


def state_sequence(n_volumes: int, n_states: int, rng: np.random.RandomState,
                   dwell: tuple[int, int] = (40, 60)) -> np.ndarray:
    """Blocks of connectivity states with dwell times drawn in ``dwell`` (TRs).

    States are visited in cycles, each a random permutation of all states, and
    dwell times are capped at ``ceil(n_volumes / n_states)``, so that every run
    visits every state for about the same time (a participant's static FNC then
    hardly depends on its state sequence). Consecutive blocks always change
    state (when ``n_states > 1``).

    Returns
    -------
    ndarray of shape (n_volumes,), dtype int
    """
    cap = -(-n_volumes // n_states)
    dwell = (min(dwell[0], cap), min(dwell[1], cap))
    states = np.empty(n_volumes, dtype=int)
    t, previous = 0, -1
    while t < n_volumes:
        order = rng.permutation(n_states)
        if order[0] == previous and n_states > 1:
            order = np.roll(order, -1)
        for current in order:
            length = int(rng.randint(dwell[0], dwell[1] + 1))
            states[t:t + length] = current
            t += length
            if t >= n_volumes:
                break
        previous = int(current)
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
