"""Ground-truth connectivity of the simulator: latent factors, states and planted effects.

Every network at every scale owns one latent signal (a *factor*). The neural
signal of a finest-scale network is a weighted sum of its own factor and of the
factors of all its ancestors, so siblings share a common (parent) time course.
A network at a coarser scale has the mean signal of its finest descendants.
Connectivity states and group effects are written as changes of the latent
correlation matrix; the expected correlation of every pair of nodes (any
scale) then follows exactly from linear algebra (:func:`node_correlation`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "HierarchyModel",
    "apply_effects",
    "build_hierarchy",
    "node_correlation",
    "state_latent_correlations",
]


class HierarchyModel:
    """Linear maps from latent factors to the nodes of every scale.

    Attributes
    ----------
    scales : tuple of int
    offsets : ndarray of shape (n_scales + 1,)
        ``offsets[j]:offsets[j+1]`` are the latent (and node) indices of scale ``j``.
    ancestors : ndarray of shape (n_scales, n_fine)
        ``ancestors[j, k]`` is the index at scale ``j`` of the ancestor of fine network ``k``.
    fine_loading : ndarray of shape (n_fine, n_latent)
        Neural signal of each fine network from the latent factors.
    node_loading : ndarray of shape (n_latent, n_latent)
        Signal of each node (all scales, coarse first) from the latent factors
        (rows not yet scaled to unit variance).
    """

    def __init__(self, scales, offsets, ancestors, fine_loading, node_loading):
        self.scales = scales
        self.offsets = offsets
        self.ancestors = ancestors
        self.fine_loading = fine_loading
        self.node_loading = node_loading

    @property
    def n_latent(self) -> int:
        return int(self.offsets[-1])

    def latent_index(self, scale_pos: int, network: int) -> int:
        return int(self.offsets[scale_pos] + network)


def build_hierarchy(scales: tuple[int, ...], parents: list[np.ndarray],
                    shared_variance: float) -> HierarchyModel:
    """Latent-to-node maps for nested scales.

    Parameters
    ----------
    scales : tuple of int
        Number of networks per scale, coarse to fine.
    parents : list of ndarray
        ``parents[j][i]`` is the parent (scale ``j``) of network ``i`` at scale ``j + 1``.
    shared_variance : float
        Fraction of a fine network's neural variance that comes from its
        ancestors (split equally over ancestor scales); the rest is its own.
    """
    n_scales = len(scales)
    offsets = np.concatenate([[0], np.cumsum(scales)])
    n_fine = scales[-1]
    ancestors = np.zeros((n_scales, n_fine), dtype=int)
    ancestors[-1] = np.arange(n_fine)
    for j in range(n_scales - 2, -1, -1):
        ancestors[j] = parents[j][ancestors[j + 1]]
    if n_scales == 1:
        weights = np.array([1.0])
    else:
        weights = np.full(n_scales, shared_variance / (n_scales - 1))
        weights[-1] = 1.0 - shared_variance
    fine_loading = np.zeros((n_fine, offsets[-1]))
    for j in range(n_scales):
        fine_loading[np.arange(n_fine), offsets[j] + ancestors[j]] = np.sqrt(weights[j])
    node_loading = np.zeros((offsets[-1], offsets[-1]))
    for j in range(n_scales):
        for i in range(scales[j]):
            kids = ancestors[j] == i
            node_loading[offsets[j] + i] = fine_loading[kids].mean(axis=0)
    return HierarchyModel(tuple(scales), offsets, ancestors, fine_loading, node_loading)


def _random_correlation(n: int, strength: float, rng: np.random.RandomState) -> np.ndarray:
    w = rng.normal(scale=strength, size=(n, 2))
    cov = w @ w.T + np.eye(n)
    d = np.sqrt(np.diag(cov))
    return cov / np.outer(d, d)


def _first_descendant(model: HierarchyModel, j: int) -> np.ndarray:
    """Index of one finest descendant of every network at scale ``j``."""
    return np.array([int(np.flatnonzero(model.ancestors[j] == i)[0]) for i in range(model.scales[j])])


def state_latent_correlations(model: HierarchyModel, n_states: int,
                              rng: np.random.RandomState,
                              strengths: tuple[float, float] = (0.6, 0.35)) -> np.ndarray:
    """Latent correlation matrix of each connectivity state.

    Block diagonal over scales: the coarsest factors get strong state-specific
    couplings (``strengths[0]``), finer factors weaker ones (``strengths[1]``)
    between networks of different parents; siblings' own factors are uncorrelated.

    Returns
    -------
    ndarray of shape (n_states, n_latent, n_latent)
    """
    out = np.zeros((n_states, model.n_latent, model.n_latent))
    for s in range(n_states):
        for j, n in enumerate(model.scales):
            a, b = model.offsets[j], model.offsets[j + 1]
            strength = strengths[0] if j == 0 else strengths[1]
            block = _random_correlation(n, strength, rng)
            if j > 0:
                # Siblings' own signals are uncorrelated: what they share is the parent.
                parent = model.ancestors[j - 1][_first_descendant(model, j)]
                block[parent[:, None] == parent[None, :]] = 0.0
                np.fill_diagonal(block, 1.0)
                while np.linalg.eigvalsh(block).min() < 0.3:
                    block = 0.9 * block + 0.1 * np.eye(n)
            out[s, a:b, a:b] = block
    return out


def apply_effects(latent: np.ndarray, entries: list[tuple[int, int, float]]) -> np.ndarray:
    """Add planted changes to latent correlations (symmetric), for every state.

    Parameters
    ----------
    latent : ndarray of shape (n_states, n_latent, n_latent)
    entries : list of (i, j, delta)

    Returns
    -------
    ndarray of shape (n_states, n_latent, n_latent)
    """
    out = latent.copy()
    for i, j, delta in entries:
        out[:, i, j] += delta
        out[:, j, i] += delta
    return out


def node_correlation(model: HierarchyModel, latent: np.ndarray) -> np.ndarray:
    """Expected correlation of the neural signals of all nodes (all scales).

    Parameters
    ----------
    latent : ndarray of shape (n_latent, n_latent) or (n_states, n_latent, n_latent)

    Returns
    -------
    ndarray of the same shape: node correlations, nodes ordered coarse scale first.
    """
    cov = model.node_loading @ latent @ model.node_loading.T
    d = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return cov / (d[..., :, None] * d[..., None, :])
