"""The math of pipeline.introspect.linalg against explicit references."""

import numpy as np
import pytest
import torch
from introspect_testing import RTOL, generator, spectrum_error

from pipeline.exceptions import ConvergenceWarning
from pipeline.introspect.linalg import (
    effective_rank,
    gradient_svdvals,
    group_gradient_svdvals,
    numerical_rank,
    top_singular_values,
)

SHAPES = [(6, 9, 13), (20, 5, 7), (8, 8, 8)]  # (n_rows, m, n): wide, tall, square


def _factors(n_rows, m, n, dtype, device, seed=0):
    g = generator(seed)
    D = torch.randn(n_rows, m, generator=g, dtype=torch.float64)
    A = torch.randn(n_rows, n, generator=g, dtype=torch.float64)
    return D.to(device=device, dtype=dtype), A.to(device=device, dtype=dtype)


@pytest.mark.parametrize("method", ["qr", "direct", "auto", "gram"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradient_svdvals_matches_explicit_svd(shape, method, dtype, device):
    D, A = _factors(*shape, dtype, device)
    ref = torch.linalg.svdvals((D.double().T @ A.double()))
    s = gradient_svdvals(D, A, method=method)
    assert s.shape == (min(shape),)
    assert s.dtype == dtype and s.device.type == device.type
    if method == "gram" and dtype == torch.float32:
        # squaring: compare squared values relative to the largest (documented)
        err = float(((s.double().cpu() ** 2) - ref[: s.numel()].cpu() ** 2).abs().max() / ref[0] ** 2)
    else:
        err = spectrum_error(s, ref)
    assert err < RTOL[dtype]


@pytest.mark.parametrize("method", ["qr", "direct", "gram"])
def test_group_spectra_match_explicit_group_gradients(method, dtype, device):
    D, A = _factors(15, 6, 10, dtype, device)
    codes = torch.tensor([0, 1, 2, 0, 0, 1, 2, 2, 2, 0, 1, 0, 0, 2, 1], device=device)
    vals = group_gradient_svdvals(D, A, codes, 4, method=method)  # group 3 is empty
    shares = []
    for g in range(3):
        G_g = D[codes == g].double().T @ A[codes == g].double()
        shares.append(G_g)
        ref = torch.linalg.svdvals(G_g)
        assert vals[g].numel() == min(int((codes == g).sum()), 6, 10)
        tol = 1e-3 if (method == "gram" and dtype == torch.float32) else RTOL[dtype]
        assert spectrum_error(vals[g], ref) < tol
    assert vals[3].numel() == 0
    # the shares add up to the whole batch gradient
    torch.testing.assert_close(sum(shares), D.double().T @ A.double())


def _planted(sigma, n_rows, m, n, seed=0):
    """D, A with Dᵀ A = P diag(sigma) Qᵀ exactly (known spectrum)."""
    g = generator(seed)
    r = len(sigma)
    C = torch.linalg.qr(torch.randn(n_rows, r, generator=g, dtype=torch.float64))[0]
    P = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64))[0]
    Q = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0]
    D = C @ P.T
    A = C @ torch.diag(torch.as_tensor(sigma, dtype=torch.float64)) @ Q.T
    return D, A, P, Q


def test_power_iterations_recover_planted_top_k(dtype, device):
    sigma = np.r_[10.0, 7.0, 5.0, 1.0 * 0.7 ** np.arange(27)]
    D, A, P, Q = _planted(sigma, 40, 60, 80)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    res = top_singular_values(D.to(device, dtype), A.to(device, dtype), 3, random_state=0, tol=tol, max_iter=100)
    assert res.converged and res.n_iter < 100
    assert res.values.shape == (3,)
    np.testing.assert_allclose(res.values.double().cpu().numpy(), sigma[:3], rtol=1e-4 if dtype == torch.float32 else 1e-8)
    # singular vectors: |<u_i, p_i>| = 1
    align = (res.left.double().cpu().T @ P[:, :3]).diagonal().abs()
    assert torch.all(align > 0.999)
    align = (res.right.double().cpu().T @ Q[:, :3]).diagonal().abs()
    assert torch.all(align > 0.999)


def test_power_iterations_warn_when_not_converged():
    sigma = [1.0, 0.999, 0.998, 0.997, 0.5]
    D, A, _, _ = _planted(sigma, 10, 12, 14)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = top_singular_values(D, A, 2, n_oversamples=0, max_iter=1, tol=1e-15, random_state=0)
    assert not res.converged


def test_power_iterations_reject_bad_k():
    D, A = _factors(5, 3, 4, torch.float64, "cpu")
    with pytest.raises(ValueError, match=r"'k' must be an int in \[1, min\(m, n\) = 3\]"):
        top_singular_values(D, A, 4)


def test_effective_rank_known_values():
    assert effective_rank([3.0, 3.0, 3.0, 3.0]) == pytest.approx(4.0)
    assert effective_rank([5.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert effective_rank([0.0, 0.0]) == 0.0
    p = np.array([0.5, 0.25, 0.25])
    assert effective_rank(p * 8) == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_numerical_rank_threshold():
    assert numerical_rank([1.0, 1e-3, 1e-9], rtol=1e-6) == 2
    assert numerical_rank([1.0, 1e-3, 1e-9], rtol=1e-2) == 1
    assert numerical_rank([], rtol=1e-6) == 0


def test_shape_and_method_errors():
    D, A = _factors(5, 3, 4, torch.float64, "cpu")
    with pytest.raises(ValueError, match="same number of rows"):
        gradient_svdvals(D, A[:4])
    with pytest.raises(ValueError, match="must be 2-D"):
        gradient_svdvals(D[0], A)
    with pytest.raises(ValueError, match="'method' must be one of"):
        gradient_svdvals(D, A, method="svd")
    with pytest.raises(ValueError, match="'row_groups' must have one entry per row"):
        group_gradient_svdvals(D, A, torch.zeros(4, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"codes in \[0, n_groups=2\). Got values in \[0, 2\]"):
        group_gradient_svdvals(D, A, torch.tensor([0, 1, 2, 0, 1]), 2)


def test_choose_method_by_cost():
    from pipeline.introspect.linalg import choose_method

    assert choose_method("auto", 64, 256, 5001) == "qr"  # few rows, wide layer
    assert choose_method("auto", 6400, 16, 41) == "direct"  # conv: many positions, narrow
    assert choose_method("gram", 6400, 16, 41) == "gram"
    with pytest.raises(ValueError, match="'method' must be one of"):
        choose_method("eig", 4, 4, 4)
