"""train_with_introspection on the three models."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.exceptions import InputDataError
from pipeline.introspect import FNCMLP, TimecourseCNN, TimecourseGRU, train_with_introspection

RANDOM_STATE = 42


def _fnc_data(n=60, p=20, seed=RANDOM_STATE):
    """Planted class difference on 3 FNC edges; two sites."""
    rng = np.random.RandomState(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.randn(n, p)
    X[:, :3] += 2.0 * y[:, None]
    sites = rng.choice(["siteA", "siteB"], n)
    return X, y, sites


def _timecourse_data(n=16, t=12, k=3, seed=RANDOM_STATE):
    rng = np.random.RandomState(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.randn(n, t, k)
    X[:, :, 0] += 1.5 * y[:, None]
    return X, y, np.where(np.arange(n) % 2, "s1", "s2")


def test_mlp_learns_planted_effect_and_records_every_other_step():
    X, y, sites = _fnc_data()
    res = train_with_introspection(
        FNCMLP(20, hidden=(8,), random_state=0), X, y, sites,
        epochs=10, batch_size=30, lr=2e-2, record_every=2, device="cpu", random_state=0,
    )
    assert list(res.history.columns) == ["epoch", "n_steps", "loss", "accuracy"]
    assert res.history.loss.iloc[-1] < 0.5 * res.history.loss.iloc[0]
    assert res.history.accuracy.iloc[-1] > 0.9
    assert res.summary.step.unique().tolist() == list(range(0, 20, 2))  # 2 batches x 10 epochs
    assert set(res.summary.group) == {"all", "siteA", "siteB"}
    assert res.device == "cpu" and list(res.classes) == [0, 1]
    assert not any(m._forward_hooks for m in res.model.modules())


def test_cpu_runs_are_deterministic():
    X, y, sites = _fnc_data()
    runs = [
        train_with_introspection(
            FNCMLP(20, hidden=(8,), random_state=0), X, y, sites,
            epochs=2, batch_size=16, record_every=2, device="cpu", random_state=3,
        )
        for _ in range(2)
    ]
    pd.testing.assert_frame_equal(runs[0].spectra, runs[1].spectra)
    pd.testing.assert_frame_equal(runs[0].history, runs[1].history)
    assert runs[0].summary.step.unique().tolist() == [0, 2, 4, 6]  # 4 batches x 2 epochs


@pytest.mark.parametrize("model_cls", [TimecourseCNN, TimecourseGRU])
def test_timecourse_models(model_cls):
    X, y, groups = _timecourse_data()
    model = model_cls(3, random_state=0)
    res = train_with_introspection(model, X, y, groups, epochs=1, batch_size=8, device="cpu", random_state=0)
    layers = set(zip(res.summary.layer, res.summary.parameter))
    if model_cls is TimecourseGRU:
        assert layers == {("cell", "weight_ih"), ("cell", "weight_hh"), ("head", "weight")}
        row = res.summary.query("layer == 'cell' and parameter == 'weight_ih' and group == 'all'").iloc[0]
        assert row.n_rows == 8 * 12  # sample x time step
    else:
        assert layers == {("features.0", "weight"), ("features.2", "weight"), ("head", "weight")}
    assert (res.summary.numerical_rank <= res.summary.rank_bound).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    X, y, sites = _fnc_data()
    kw = dict(epochs=2, batch_size=16, random_state=0, dtype=torch.float64)
    cpu = train_with_introspection(FNCMLP(20, hidden=(8,), random_state=0), X, y, sites, device="cpu", **kw)
    gpu = train_with_introspection(FNCMLP(20, hidden=(8,), random_state=0), X, y, sites, device="cuda", **kw)
    np.testing.assert_allclose(gpu.spectra.singular_value, cpu.spectra.singular_value, rtol=1e-6, atol=1e-10)


def test_training_errors():
    X, y, sites = _fnc_data(n=10)
    net = FNCMLP(20, random_state=0)
    with pytest.raises(ValueError, match=r"'X' must be 2-D \(n_samples, n_features\) or 3-D"):
        train_with_introspection(net, X[0], y, device="cpu")
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputDataError, match="'X' contains 1 NaN"):
        train_with_introspection(net, bad, y, device="cpu")
    with pytest.raises(InputDataError, match="at least 2 classes"):
        train_with_introspection(net, X, np.zeros(10), device="cpu")
    with pytest.raises(ValueError, match=r"'y' must have shape \(10,\)"):
        train_with_introspection(net, X, y[:5], device="cpu")
    with pytest.raises(ValueError, match=r"'groups' must have shape \(10,\)"):
        train_with_introspection(net, X, y, sites[:3], device="cpu")
    with pytest.raises(ValueError, match="'optimizer' must be one of"):
        train_with_introspection(net, X, y, optimizer="lbfgs", device="cpu")
    with pytest.raises(ValueError, match="'epochs' must be an int >= 1. Got 0"):
        train_with_introspection(net, X, y, epochs=0, device="cpu")
    with pytest.raises(ValueError, match="'lr' must be a positive float"):
        train_with_introspection(net, X, y, lr=-1.0, device="cpu")
    with pytest.raises(TypeError, match="'model' must be of type Module"):
        train_with_introspection(lambda x: x, X, y, device="cpu")
    with pytest.raises(ValueError, match="'activation' must be one of"):
        FNCMLP(20, activation="gelu")
    with pytest.raises(ValueError, match="'hidden_size' must be an int >= 1. Got 0"):
        TimecourseGRU(3, hidden_size=0)


def test_simulated_cohort_fnc_and_timecourses():
    """End to end on the simulator: FNC features (MLP) and time courses (GRU), groups = site."""
    simulate = pytest.importorskip("pipeline.simulate")
    cohort = simulate.simulate_cohort(n_subjects=8, n_sites=2, n_volumes=30, grid_mm=12.0, random_state=0)
    fine = cohort.scales[-1]
    tcs = np.stack([s.timecourses[fine] for s in cohort.subjects])  # (subjects, volumes, networks)
    iu = np.triu_indices(fine, 1)
    fnc = np.stack([np.arctanh(np.clip(np.corrcoef(t.T)[iu], -0.999, 0.999)) for t in tcs])
    y = cohort.participants["diagnosis"].to_numpy()
    sites = cohort.participants["site"].to_numpy()
    for model, X in ((FNCMLP(fnc.shape[1], hidden=(16,), random_state=0), fnc),
                     (TimecourseGRU(fine, hidden_size=8, random_state=0), tcs)):
        res = train_with_introspection(model, X, y, sites, epochs=2, batch_size=4, device="cpu", random_state=0)
        s = res.summary
        assert set(s.group) == {"all", *np.unique(sites)}
        assert (s.numerical_rank <= s.rank_bound).all()
        # triangle inequality: the whole gradient is the sum of the site shares
        for _, g in s.groupby(["step", "layer", "parameter"]):
            whole = g[g.group == "all"].iloc[0]
            parts = g[g.group != "all"]
            assert whole.frobenius_norm <= parts.frobenius_norm.sum() * (1 + 1e-6)
            assert whole.top_singular_value <= parts.top_singular_value.sum() * (1 + 1e-6)
            assert parts.n_samples.sum() == whole.n_samples
