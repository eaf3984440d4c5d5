"""Single-process checks of the exchange algebra, byte formulas and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.distributed import (
    expected_bytes,
    low_rank_factors,
    run_from_env,
    run_local,
    train_site,
)
from pipeline.distributed.modes import choose_rank
from pipeline.introspect.models import FNCMLP

from distributed_testing import RANDOM_STATE


def _factors(rank: int, m=7, n=9, rows=12):
    g = torch.Generator().manual_seed(RANDOM_STATE)
    L = torch.randn(rows, rank, generator=g, dtype=torch.float64)
    D = L @ torch.randn(rank, m, generator=g, dtype=torch.float64)
    A = torch.randn(rows, n, generator=g, dtype=torch.float64)
    return D, A


def test_low_rank_factors_exact_at_rank_of_share():
    D, A = _factors(rank=3)
    g = torch.Generator().manual_seed(0)
    P, Q = low_rank_factors(D, A, 3, n_iter=1, generator=g)
    assert P.shape == (7, 3) and Q.shape == (9, 3)
    torch.testing.assert_close(P @ Q.T, D.T @ A, atol=1e-10, rtol=0)
    torch.testing.assert_close(P.T @ P, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_low_rank_factors_approach_best_rank_r_error():
    D, A = _factors(rank=7)
    G = D.T @ A
    s = torch.linalg.svdvals(G)
    P, Q = low_rank_factors(D, A, 2, n_iter=30, generator=torch.Generator().manual_seed(1))
    err = torch.linalg.norm(G - P @ Q.T)
    best = s[2:].pow(2).sum().sqrt()  # Eckart-Young
    assert float(err) == pytest.approx(float(best), rel=1e-6)


def test_choose_rank_matches_explicit_energy():
    D, A = _factors(rank=7)
    s2 = torch.linalg.svdvals(D.T @ A) ** 2
    cum = torch.cumsum(s2, 0) / s2.sum()
    for energy in (0.5, 0.9, 0.999, 1.0):
        expected = int((cum < energy - 1e-12).sum()) + 1
        assert choose_rank(D, A, energy) == expected


def test_expected_bytes_formulas():
    net = FNCMLP(10, 3, hidden=(6,), random_state=0)  # layers 10->6, 6->3
    assert expected_bytes(net, "dsgd", 4) == 4 * (6 * 11 + 3 * 7)
    assert expected_bytes(net, "dad", 4, itemsize=8) == 8 * 4 * ((11 + 6) + (7 + 3))
    # r capped by min(B, m, n + 1) per layer
    assert expected_bytes(net, "rankdad", 4, rank_r=5) == 4 * (4 * (6 + 11) + 3 * (3 + 7))
    assert expected_bytes(net, "rankdad", 16, rank_r=2) == 4 * (2 * (6 + 11) + 2 * (3 + 7))


def test_train_site_rejects_bad_arguments():
    X, y = np.zeros((4, 3)), np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match="mode"):
        train_site(0, 1, X, y, mode="allreduce")
    with pytest.raises(ValueError, match="'batch_size' must be an int >= 1"):
        train_site(0, 1, X, y, batch_size=0)
    with pytest.raises(ValueError, match="'rank_r' must be an int >= 1"):
        train_site(0, 1, X, y, mode="rankdad", rank_r=0)
    with pytest.raises(ValueError, match="'energy' must be in"):
        train_site(0, 1, X, y, mode="rankdad", energy=1.5)
    with pytest.raises(ValueError, match="'X_site' must be 2-D"):
        train_site(0, 1, np.zeros(4), y)


def test_run_local_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'n_sites' must be an int >= 1"):
        run_local(0, [], [])
    with pytest.raises(ValueError, match="one array per site"):
        run_local(2, [np.zeros((2, 2))], [np.zeros(2)])


def test_run_from_env_needs_rendezvous_variables(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="must be set for env:// rendezvous"):
        run_from_env(np.zeros((2, 2)), np.zeros(2))
