"""Capture plumbing: spectra equal those of the layers' actual ``.grad``."""

import copy

import pytest
import torch
from introspect_testing import RTOL, generator, spectrum_error
from torch import nn

from pipeline.introspect.hooks import GradientCapture
from pipeline.introspect.linalg import gradient_svdvals, group_gradient_svdvals
from pipeline.introspect.models import init_parameters


class Unrolled(nn.Module):
    """A recurrent cell unrolled over dim 1, then a linear head."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell
        self.head = nn.Linear(cell.hidden_size, 3)

    def forward(self, x):
        h = None
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.head(h)


class SeqLinear(nn.Module):
    """A Linear applied to (batch, time, features): rows are sample x time."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.proj(x)).mean(1))


CASES = {
    "linear": (lambda: nn.Sequential(nn.Linear(7, 9), nn.ReLU(inplace=True), nn.Linear(9, 3)), (10, 7)),
    "linear_seq": (SeqLinear, (5, 6, 4)),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(3, 5, 3, stride=2, padding=1), nn.Tanh(),
                                     nn.Conv1d(5, 4, 2, dilation=2, padding="same", padding_mode="reflect"),
                                     nn.Flatten(), nn.Linear(4 * 6, 2)), (4, 3, 11)),
    "conv2d": (lambda: nn.Sequential(nn.Conv2d(2, 4, (3, 2), stride=(1, 2), padding=1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(4 * 7 * 4, 2)), (3, 2, 7, 6)),
    "grucell": (lambda: Unrolled(nn.GRUCell(4, 5)), (6, 5, 4)),
    "rnncell_tanh": (lambda: Unrolled(nn.RNNCell(4, 5)), (6, 5, 4)),
    "rnncell_relu": (lambda: Unrolled(nn.RNNCell(4, 5, nonlinearity="relu")), (6, 5, 4)),
}


def _grad_matrix(module, parameter, with_bias):
    w = getattr(module, parameter)
    G = w.grad.reshape(w.shape[0], -1)
    if with_bias:
        G = torch.cat([G, getattr(module, parameter.replace("weight", "bias")).grad[:, None]], 1)
    return G


def _run(case, dtype, device, include_bias=True, seed=0):
    build, shape = CASES[case]
    net = init_parameters(build(), seed).to(device=device, dtype=dtype)
    x = torch.randn(*shape, generator=generator(seed), dtype=torch.float64).to(device, dtype)
    cap = GradientCapture(net, include_bias=include_bias)
    target = torch.randn(shape[0], 3 if case in ("grucell", "rnncell_tanh", "rnncell_relu", "linear") else 2,
                         generator=generator(seed + 1), dtype=torch.float64).to(device, dtype)
    loss = (net(x) - target).square().mean()
    loss.backward()
    factors = cap.collect()
    cap.remove()
    return net, factors


@pytest.mark.parametrize("include_bias", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_spectra_equal_svdvals_of_grad(case, include_bias, dtype, device):
    net, factors = _run(case, dtype, device, include_bias)
    modules = dict(net.named_modules())
    n_checked = 0
    for layer, flist in factors.items():
        for f in flist:
            G = _grad_matrix(modules[layer], f.parameter, include_bias)
            assert f.includes_bias == include_bias
            assert f.shape == tuple(G.shape)
            # the captured rows reproduce the gradient itself
            torch.testing.assert_close(f.D.T @ f.A, G, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * float(G.abs().max()))
            ref = torch.linalg.svdvals(G.double())
            for method in ("qr", "direct", "auto"):
                assert spectrum_error(gradient_svdvals(f.D, f.A, method=method), ref) < RTOL[dtype]
            n_checked += 1
    n_weights = sum(1 for m in net.modules() for p in m.parameters(recurse=False) if p.ndim > 1)
    assert n_checked == n_weights


@pytest.mark.parametrize("case", ["linear", "conv1d", "grucell"])
def test_group_shares_sum_to_grad(case, device):
    dtype = torch.float64
    net, factors = _run(case, dtype, device)
    modules = dict(net.named_modules())
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 0], device=device)
    for layer, flist in factors.items():
        for f in flist:
            codes = labels[: f.n_samples][f.sample]
            shares = [f.D[codes == g].T @ f.A[codes == g] for g in (0, 1)]
            G = _grad_matrix(modules[layer], f.parameter, True)
            torch.testing.assert_close(shares[0] + shares[1], G, rtol=1e-10, atol=1e-12)
            vals = group_gradient_svdvals(f.D, f.A, codes, 2)
            for g in (0, 1):
                assert spectrum_error(vals[g], torch.linalg.svdvals(shares[g])) < RTOL[dtype]


def _train(net, x, y, steps, capture):
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    cap = GradientCapture(net) if capture else None
    grads = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        opt.step()
        if cap is not None:
            assert cap.collect()  # something was captured
            cap.clear()
    if cap is not None:
        cap.remove()
    return grads


@pytest.mark.parametrize("case", ["linear", "conv1d", "grucell"])
def test_hooks_do_not_change_training(case):
    build, shape = CASES[case]
    net_a = init_parameters(build(), 3)
    net_b = copy.deepcopy(net_a)
    x = torch.randn(*shape, generator=generator(1))
    y = torch.randint(0, 2, (shape[0],), generator=generator(2))
    ga = _train(net_a, x, y, 3, capture=False)
    gb = _train(net_b, x, y, 3, capture=True)
    for step_a, step_b in zip(ga, gb):
        for a, b in zip(step_a, step_b):
            assert torch.equal(a, b)
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(pa, pb)
    assert all(not m._forward_hooks for m in net_b.modules())  # removed


def test_no_grad_and_unbackpropagated_passes_are_ignored():
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    cap = GradientCapture(net)
    x = torch.randn(6, 5, generator=generator())
    with torch.no_grad():
        net(torch.randn(50, 5, generator=generator(1)))
    assert all(len(c) == 0 for c in cap._calls.values())
    net(torch.randn(7, 5, generator=generator(2)))  # autograd on, never backpropagated
    net(x).sum().backward()
    f = cap.collect()["0"][0]
    assert f.A.shape[0] == 6
    torch.testing.assert_close(f.D.T @ f.A, torch.cat([net[0].weight.grad, net[0].bias.grad[:, None]], 1))
    cap.enabled = False
    net.zero_grad()
    cap.clear()
    net(x).sum().backward()
    assert cap.collect() == {}
    cap.remove()


@pytest.mark.parametrize(
    ("layer", "name"),
    [
        (nn.BatchNorm1d(4), "BatchNorm1d"),
        (nn.GRU(4, 4, batch_first=True), "GRU"),
        (nn.LSTMCell(4, 4), "LSTMCell"),
    ],
)
def test_unsupported_layer_raises_naming_it(layer, name):
    net = nn.Sequential(nn.Linear(4, 4), layer)
    with pytest.raises(NotImplementedError, match=rf"layer '1' \({name}\).*on_unsupported='warn'"):
        GradientCapture(net)
    assert not net[0]._forward_hooks  # nothing left behind


def test_grouped_conv_raises_and_warn_mode_skips():
    net = nn.Sequential(nn.Conv1d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(8, 2), nn.BatchNorm1d(2))
    with pytest.raises(NotImplementedError, match=r"layer '0' \(Conv1d with groups=2\)"):
        GradientCapture(net)
    with pytest.warns(UserWarning, match=r"2 layer\(s\).*0 \(Conv1d\), 3 \(BatchNorm1d\)"):
        cap = GradientCapture(net, on_unsupported="warn")
    assert list(cap.layers_) == ["2"]
    net(torch.randn(3, 4, 4, generator=generator())).sum().backward()
    assert list(cap.collect()) == ["2"]
    cap.remove()


def test_bad_arguments():
    with pytest.raises(ValueError, match="'on_unsupported' must be one of"):
        GradientCapture(nn.Linear(2, 2), on_unsupported="silent")
    with pytest.raises(TypeError, match="'model' must be of type Module"):
        GradientCapture("net")
    with pytest.raises(TypeError, match="'include_bias' must be of type bool"):
        GradientCapture(nn.Linear(2, 2), include_bias=1)


def test_shared_layer_and_accumulated_backward_passes():
    # a layer used twice per forward, and two backward passes before collect:
    # rows from every call add up, exactly as .grad accumulates
    lin = init_parameters(nn.Linear(5, 5), 0).double()
    cap = GradientCapture(lin)
    g = generator()
    x1 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    x2 = torch.randn(4, 5, generator=g, dtype=torch.float64)
    lin(torch.tanh(lin(x1))).square().sum().backward()
    lin(x2).sum().backward()
    f = cap.collect()["Linear"][0]
    assert f.A.shape[0] == 3 + 3 + 4
    G = torch.cat([lin.weight.grad, lin.bias.grad[:, None]], 1)
    torch.testing.assert_close(f.D.T @ f.A, G)
    assert spectrum_error(gradient_svdvals(f.D, f.A), torch.linalg.svdvals(G)) < 1e-10
    cap.remove()
