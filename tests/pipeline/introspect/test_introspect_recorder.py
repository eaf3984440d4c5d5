"""SpectrumRecorder tables, rank theory and plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from introspect_testing import RANDOM_STATE, generator
from matplotlib.figure import Figure
from torch import nn

from pipeline.introspect.models import FNCMLP, init_parameters
from pipeline.introspect.recorder import SpectrumRecorder, plot_spectrum_trajectories


def _step(rec, net, x, target, step, groups=None, loss="mse"):
    with rec.record(step, epoch=0, groups=groups):
        out = net(x)
        if loss == "mse":
            val = (out - target).square().mean()
        else:
            val = nn.functional.cross_entropy(out, target)
        val.backward()


def _summary_row(rec, layer, group="all", parameter="weight"):
    s = rec.summary
    row = s[(s.layer == layer) & (s.group == group) & (s.parameter == parameter)]
    assert len(row) == 1
    return row.iloc[0]


def test_tables_and_trajectories():
    net = FNCMLP(6, n_classes=3, hidden=(5,), random_state=RANDOM_STATE)
    rec = SpectrumRecorder(net, record_every=2)
    groups = np.array(["site1", "site2"] * 4)
    for step in range(5):
        x = torch.randn(8, 6, generator=generator(step))
        _step(rec, net, x, torch.arange(8) % 3, step, groups=groups, loss="ce")
        net.zero_grad()
    assert rec.n_recorded_ == 3
    sp, su = rec.spectra, rec.summary
    assert list(sp.columns) == ["step", "epoch", "layer", "parameter", "group", "index", "singular_value"]
    assert sorted(sp.step.unique()) == [0, 2, 4]
    assert set(su.group) == {"all", "site1", "site2"}
    assert set(su.layer) == {"net.0", "net.2"}
    # spectra sorted, non-negative, consistent with the summary
    for (step, layer, group), g in sp.groupby(["step", "layer", "group"]):
        v = g.sort_values("index").singular_value.to_numpy()
        assert np.all(np.diff(v) <= 1e-12) and np.all(v >= 0)
        row = su[(su.step == step) & (su.layer == layer) & (su.group == group)].iloc[0]
        assert row.top_singular_value == pytest.approx(v[0])
        assert row.frobenius_norm == pytest.approx(np.sqrt((v**2).sum()))
        assert row.numerical_rank <= row.rank_bound
    traj = rec.summary_trajectories("numerical_rank")
    assert traj.shape == (3, 6)
    assert traj.columns.names == ["layer", "parameter", "group"]
    fig = plot_spectrum_trajectories(su)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    rec.remove()


def test_rank_reaches_bound_on_random_data():
    torch_gen = generator()
    # n_rows < widths: bound = batch
    lin = init_parameters(nn.Sequential(nn.Linear(10, 6)), 0).double()
    rec = SpectrumRecorder(lin)
    x = torch.randn(4, 10, generator=torch_gen, dtype=torch.float64)
    _step(rec, lin, x, torch.randn(4, 6, generator=torch_gen, dtype=torch.float64), 0)
    row = _summary_row(rec, "0")
    assert row.rank_bound == 4 and row.numerical_rank == 4
    # n_rows > widths: bound = min(m, n + 1)
    rec2 = SpectrumRecorder(lin)
    x = torch.randn(30, 10, generator=torch_gen, dtype=torch.float64)
    _step(rec2, lin, x, torch.randn(30, 6, generator=torch_gen, dtype=torch.float64), 0)
    row = _summary_row(rec2, "0")
    assert row.rank_bound == 6 and row.numerical_rank == 6


@pytest.mark.parametrize(("activation", "expected"), [("identity", 4), ("relu", 8)])
def test_bottleneck_lowers_rank_with_linear_activation(activation, expected):
    # 12 -> 3 (bottleneck) -> 10 -> 8: the last layer's inputs span an affine
    # space of dim 3 when activations are linear, so rank <= 3 + 1 (bias)
    net = FNCMLP(12, n_classes=8, hidden=(3, 10), activation=activation, random_state=1).double()
    rec = SpectrumRecorder(net)
    g = generator(5)
    x = torch.randn(32, 12, generator=g, dtype=torch.float64)
    _step(rec, net, x, torch.randn(32, 8, generator=g, dtype=torch.float64), 0)
    row = _summary_row(rec, "net.4")
    assert row.rank_bound == 8  # structural bound min(32, 8, 11) does not see the bottleneck
    assert row.numerical_rank == expected


def test_cross_entropy_output_layer_rank_is_classes_minus_one():
    # softmax - onehot rows sum to zero: rank(D) <= n_classes - 1
    net = FNCMLP(9, n_classes=4, hidden=(12,), random_state=2).double()
    rec = SpectrumRecorder(net)
    x = torch.randn(20, 9, generator=generator(), dtype=torch.float64)
    _step(rec, net, x, torch.arange(20) % 4, 0, loss="ce")
    row = _summary_row(rec, "net.2")
    assert row.rank_bound == 4
    assert row.numerical_rank == 3


@pytest.mark.parametrize(("stride", "bound"), [(1, 6), (3, 2)])
def test_conv_rank_bound_positions_and_stride(stride, bound):
    # one sample, 3 channels x kernel 3 (+bias) = 10 columns, 8 filters
    conv = init_parameters(nn.Sequential(nn.Conv1d(3, 8, 3, stride=stride), nn.Flatten()), 0).double()
    rec = SpectrumRecorder(conv)
    x = torch.randn(1, 3, 8, generator=generator(), dtype=torch.float64)
    n_out = 8 * ((8 - 3) // stride + 1)
    _step(rec, conv, x, torch.randn(1, n_out, generator=generator(1), dtype=torch.float64), 0)
    row = _summary_row(rec, "0")
    assert row.n_rows == (8 - 3) // stride + 1
    assert row.rank_bound == bound and row.numerical_rank == bound


@pytest.mark.parametrize(("n_steps", "bound"), [(3, 3), (20, 11)])
def test_recurrent_rank_bound_is_batch_times_steps(n_steps, bound):
    cell = init_parameters(nn.GRUCell(10, 12), 0).double()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cell

        def forward(self, x):
            h, out = None, 0
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
                out = out + h
            return out

    net = Net()
    rec = SpectrumRecorder(net)
    x = torch.randn(1, n_steps, 10, generator=generator(), dtype=torch.float64)
    _step(rec, net, x, torch.randn(1, 12, generator=generator(1), dtype=torch.float64), 0)
    row = _summary_row(rec, "cell", parameter="weight_ih")
    assert row.rank_bound == bound and row.numerical_rank == bound


def test_top_k_matches_exact_spectrum():
    net = FNCMLP(30, n_classes=2, hidden=(16,), random_state=0).double()
    x = torch.randn(24, 30, generator=generator(), dtype=torch.float64)
    y = torch.arange(24) % 2
    groups = ["a"] * 10 + ["b"] * 14
    exact, power = SpectrumRecorder(net), SpectrumRecorder(net, top_k=3, random_state=0)
    for rec in (exact, power):
        _step(rec, net, x, y, 0, groups=groups, loss="ce")
        net.zero_grad()
    e = exact.spectra
    p = power.spectra
    assert p.groupby(["layer", "group"]).size().max() == 3
    merged = p.merge(e, on=["step", "layer", "parameter", "group", "index"], suffixes=("_p", "_e"))
    assert len(merged) == len(p)
    big = merged.singular_value_e > 1e-6 * merged.singular_value_e.max()
    np.testing.assert_allclose(merged.singular_value_p[big], merged.singular_value_e[big], rtol=1e-5)
    assert set(power.summary.method) == {"power"}
    assert set(exact.summary.query("layer == 'net.0'").method) == {"qr"}  # 24 rows, 16 x 31
    assert set(exact.summary.query("layer == 'net.2'").method) == {"direct"}  # 2 x 17


def test_recorder_errors():
    net = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="'record_every' must be an int >= 1. Got 0"):
        SpectrumRecorder(net, record_every=0)
    with pytest.raises(TypeError, match="'record_every' must be of type int"):
        SpectrumRecorder(net, record_every=2.0)
    with pytest.raises(ValueError, match="'top_k' must be None or an int >= 1"):
        SpectrumRecorder(net, top_k=0)
    with pytest.raises(ValueError, match="'rtol' must be None or a float in"):
        SpectrumRecorder(net, rtol=2.0)
    with pytest.raises(ValueError, match="'method' must be one of"):
        SpectrumRecorder(net, method="svd")
    rec = SpectrumRecorder(net)
    x = torch.randn(4, 3, generator=generator())
    with pytest.raises(ValueError, match="reserved for the whole batch"):
        rec.begin(0, groups=["all", "a", "a", "b"])
    with pytest.raises(ValueError, match=r"one label per sample of the batch \(4 for layer '0'\). Got 3"):
        _step(rec, net, x, torch.zeros(4, 2), 0, groups=["a", "b", "a"])
    with pytest.raises(ValueError, match="'value' must be one of"):
        rec.summary_trajectories("layer")
    with pytest.raises(ValueError, match="'value' must be a column of 'summary'"):
        plot_spectrum_trajectories(rec.summary, value="nope")
    assert isinstance(rec.summary, pd.DataFrame)
    rec.remove()
