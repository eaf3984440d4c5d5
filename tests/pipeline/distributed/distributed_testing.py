"""Planted FNC-like two-class data for the distributed-training tests."""

from __future__ import annotations

import numpy as np

RANDOM_STATE = 42
N_FEATURES = 45  # upper triangle of a 10-node FNC matrix
N_EFFECT_EDGES = 6  # edges whose mean differs between classes (planted)


def planted_sites(n_sites: int, n_per_site: int, *, effect: float = 1.2, random_state=RANDOM_STATE):
    """Per-site FNC-like features with a planted class effect and a site offset.

    Each site has its own mean shift (a site effect) and half patients; the
    class effect is a shift of ``effect`` on ``N_EFFECT_EDGES`` edges.
    """
    rng = np.random.RandomState(random_state)
    mix = rng.randn(N_FEATURES, N_FEATURES) * 0.3 + np.eye(N_FEATURES)
    edges = rng.choice(N_FEATURES, N_EFFECT_EDGES, replace=False)
    Xs, ys = [], []
    for s in range(n_sites):
        y = np.arange(n_per_site) % 2
        X = rng.randn(n_per_site, N_FEATURES) @ mix * 0.5 + rng.randn(N_FEATURES) * 0.3
        X[:, edges] += effect * y[:, None]
        Xs.append(X)
        ys.append(y)
    return Xs, ys
