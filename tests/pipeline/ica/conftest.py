"""Small planted-signal fixtures shared by the ICA tests (group ICA and back-reconstruction)."""

from __future__ import annotations

import numpy as np
import pytest

RANDOM_STATE = 42
N_SOURCES = 4
N_SAMPLES = 4000
N_SUBJECTS = 6
N_VOLUMES = 60
N_VOXELS = 1500
NOISE = 0.3


def corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _sparse_maps(rng: np.random.RandomState, n_maps: int, n_voxels: int, n_active: int):
    """Non-negative sparse maps with disjoint supports (gamma-distributed weights)."""
    maps = np.zeros((n_maps, n_voxels))
    support = rng.permutation(n_voxels)
    for j in range(n_maps):
        idx = support[j * n_active:(j + 1) * n_active]
        maps[j, idx] = rng.gamma(2.0, 1.0, n_active) + 0.5
    return maps


@pytest.fixture(scope="session")
def planted_sources():
    """Super-Gaussian (Laplace) sources mixed linearly.

    Returns ``(X, S, A)``: ``X = S @ A.T`` of shape (N_SAMPLES, N_SOURCES),
    sources ``S`` (N_SAMPLES, N_SOURCES) and mixing ``A``.
    """
    rng = np.random.RandomState(RANDOM_STATE)
    sources = rng.laplace(size=(N_SAMPLES, N_SOURCES))
    mixing = rng.randn(N_SOURCES, N_SOURCES)
    return sources @ mixing.T, sources, mixing


@pytest.fixture(scope="session")
def planted_subjects():
    """Subjects made of sparse spatial maps with random time courses plus noise.

    Returns ``(subjects, maps, timecourses)``: a list of N_SUBJECTS arrays of
    shape (N_VOLUMES, N_VOXELS), the true maps (N_SOURCES, N_VOXELS) and the
    list of true time courses (N_VOLUMES, N_SOURCES).
    """
    rng = np.random.RandomState(RANDOM_STATE)
    maps = _sparse_maps(rng, N_SOURCES, N_VOXELS, 120)
    subjects, tcs = [], []
    for _ in range(N_SUBJECTS):
        tc = rng.randn(N_VOLUMES, N_SOURCES)
        tcs.append(tc)
        subjects.append(100.0 + tc @ maps + NOISE * rng.randn(N_VOLUMES, N_VOXELS))
    return subjects, maps, tcs
