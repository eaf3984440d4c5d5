"""Ground-truth connectivity of the simulator: latent factors, states and planted effects.

Every network at every scale owns one latent signal (a *factor*). The neural
signal of a finest-scale network is a weighted sum of its own factor and of the
factors of all its ancestors, so siblings share a common (parent) time course.
A network at a coarser scale has the mean signal of its finest descendants.
Connectivity states and group effects are written as changes of the latent
correlation matrix: every state adds its own pattern of domain couplings
(between the own factors of finest networks, grouped by coarsest ancestor) to
a weak baseline shared by all states; the expected correlation of every pair
of nodes (any scale) then follows exactly from linear algebra
(:func:`node_correlation`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "HierarchyModel",
    "apply_effects",
    "build_hierarchy",
    "node_correlation",
    "shared_latent_correlation",
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


def _sign_patterns(n: int, n_states: int, rng: np.random.RandomState,
                   n_candidates: int = 64) -> np.ndarray:
    """``n_states`` sign vectors whose coupling patterns ``u u^T`` differ most.

    Starts from a balanced split (two modules of equal size), then adds, among
    random candidates, the vector whose upper-triangle pattern has the smallest
    largest correlation with the patterns already chosen.
    """
    iu = np.triu_indices(n, 1)
    cands = np.where(rng.rand(n_candidates, n) < 0.5, -1.0, 1.0)
    cands[0] = np.where(rng.permutation(n) < n // 2, -1.0, 1.0)
    pats = (cands[:, :, None] * cands[:, None, :])[:, iu[0], iu[1]]
    chosen = [0]
    for _ in range(1, n_states):
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(pats)[:, chosen] if pats.shape[1] > 1 else np.ones((n_candidates, 1))
        worst = np.nan_to_num(r, nan=1.0).max(axis=1)
        worst[chosen] = np.inf
        chosen.append(int(np.argmin(worst)))
    return cands[chosen]


def shared_latent_correlation(model: HierarchyModel, rng: np.random.RandomState,
                              strengths: tuple[float, float] = (0.3, 0.2)) -> np.ndarray:
    """Weak latent coupling shared by all states and participants.

    Block diagonal over scales: random correlations of strength ``strengths[0]``
    between the coarsest factors and ``strengths[1]`` between finer ones;
    siblings' own factors are uncorrelated (what they share is the parent).

    Returns
    -------
    ndarray of shape (n_latent, n_latent)
    """
    out = np.zeros((model.n_latent, model.n_latent))
    for j, n in enumerate(model.scales):
        a, b = model.offsets[j], model.offsets[j + 1]
        block = _random_correlation(n, strengths[0] if j == 0 else strengths[1], rng)
        if j > 0:
            parent = model.ancestors[j - 1][_first_descendant(model, j)]
            block[parent[:, None] == parent[None, :]] = 0.0
            np.fill_diagonal(block, 1.0)
            while np.linalg.eigvalsh(block).min() < 0.3:
                block = 0.9 * block + 0.1 * np.eye(n)
        out[a:b, a:b] = block
    return out


def state_latent_correlations(shared: np.ndarray, factors, groups, n_states: int,
                             rng: np.random.RandomState,
                             state_variance: float = 2.0) -> np.ndarray:
    """Latent correlation of each connectivity state: ``shared`` plus a domain pattern.

    In state ``s`` a state driver of variance ``state_variance`` loads the
    latent ``factors`` with signs ``u_s`` that are equal within a group
    (domain): the domains split into two anti-correlated modules, a different
    split per state (:func:`_sign_patterns`). The driven factors are then
    rescaled to unit variance. The driver term is positive semi-definite and
    the rescaling a congruence, so every state is as definite as ``shared``,
    also with planted changes on entries outside ``factors``. Factors of one
    domain are coupled positively in every state; factors of different domains
    positively or negatively, depending on the state.

    Parameters
    ----------
    shared : ndarray of shape (n_latent, n_latent)
    factors : sequence of int
        Latent indices the states act on.
    groups : sequence
        Domain of each factor (e.g. its coarsest ancestor).
    n_states : int
    rng : numpy.random.RandomState
    state_variance : float, default=2.0

    Returns
    -------
    ndarray of shape (n_states, n_latent, n_latent)
    """
    out = np.repeat(shared[None], n_states, axis=0)
    factors = np.asarray(factors, dtype=int)
    _, domain = np.unique(np.asarray(groups), return_inverse=True)
    if n_states > 1 and domain.size and domain.max() >= 1:
        scale = np.ones(shared.shape[0])
        scale[factors] = 1.0 / np.sqrt(1.0 + state_variance)
        for s, u in enumerate(_sign_patterns(domain.max() + 1, n_states, rng)[:, domain]):
            out[s][np.ix_(factors, factors)] += state_variance * np.outer(u, u)
            out[s] *= np.outer(scale, scale)
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
