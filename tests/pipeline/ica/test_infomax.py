"""Torch Infomax and FastICA against scikit-learn's FastICA and planted sources."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import FastICA
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.exceptions import ConvergenceWarning, InputDataError
from pipeline.ica._matching import match_components
from pipeline.ica.fastica import TorchFastICA, fastica
from pipeline.ica.infomax import Infomax, default_block, default_lrate, infomax

RANDOM_STATE = 42  # same as conftest.RANDOM_STATE (tests are not a package)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(scope="module")
def whitened(planted_sources):
    X, S, _ = planted_sources
    Xc = X - X.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov(Xc.T))
    return Xc @ (evecs / np.sqrt(evals)), S


@pytest.fixture(scope="module")
def sklearn_sources(whitened):
    Xw, _ = whitened
    return FastICA(whiten=False, random_state=RANDOM_STATE, max_iter=400).fit_transform(Xw)


@pytest.mark.parametrize("device", DEVICES)
def test_infomax_agrees_with_sklearn_and_truth(whitened, sklearn_sources, device):
    Xw, S = whitened
    ours = Infomax(random_state=RANDOM_STATE, device=device).fit_transform(Xw)
    assert match_components(ours.T, sklearn_sources.T)[2].min() > 0.95
    assert match_components(ours.T, S.T)[2].min() > 0.95


@pytest.mark.parametrize("device", DEVICES)
def test_fastica_agrees_with_sklearn(whitened, sklearn_sources, device):
    Xw, S = whitened
    est = TorchFastICA(whiten=False, random_state=RANDOM_STATE, device=device)
    ours = est.fit_transform(Xw)
    assert match_components(ours.T, sklearn_sources.T)[2].min() > 0.99
    assert match_components(ours.T, S.T)[2].min() > 0.95
    np.testing.assert_allclose(est.transform(Xw), ours, atol=1e-10)


def test_fastica_same_fixed_point_as_sklearn(whitened):
    Xw, _ = whitened
    w_init = np.random.RandomState(0).randn(4, 4)
    sk = FastICA(whiten=False, w_init=w_init, tol=1e-10, max_iter=1000).fit(Xw)
    ours = TorchFastICA(whiten=False, w_init=w_init, tol=1e-10, max_iter=1000, device="cpu").fit(Xw)
    np.testing.assert_allclose(ours.components_, sk.components_, atol=1e-6)


def test_fastica_whitening_and_function(planted_sources):
    X, S, _ = planted_sources
    W, sources, n_iter = fastica(X, 3, random_state=0, device="cpu", return_n_iter=True)
    assert W.shape == (3, 4) and sources.shape == (X.shape[0], 3) and n_iter >= 1
    np.testing.assert_allclose(np.cov(sources.T), np.eye(3), atol=1e-8)


def test_extended_infomax_separates_sub_and_super_gaussian():
    rng = np.random.RandomState(RANDOM_STATE)
    S = np.column_stack([rng.uniform(-1, 1, 3000), rng.laplace(size=3000), rng.laplace(size=3000)])
    X = S @ rng.randn(3, 3).T
    est = Infomax(extended=True, random_state=RANDOM_STATE, device="cpu")
    ours = est.fit_transform(X)
    assert match_components(ours.T, S.T)[2].min() > 0.95
    assert sorted(est.signs_.tolist()) == [-1.0, 1.0, 1.0]
    W, _ = infomax(X, extended=True, random_state=RANDOM_STATE, device="cpu")
    np.testing.assert_allclose(W, est.components_)


def test_gift_defaults():
    # GIFT's fixture test_icatb_backReconstruct records block 40 (4848 voxels) and
    # lrate 0.0050071 (20 components).
    assert default_block(4848) == 40
    assert round(default_lrate(20), 7) == 0.0050071


def test_infomax_restarts_after_blowup(planted_sources):
    X, S, _ = planted_sources
    est = Infomax(lrate=0.5, random_state=RANDOM_STATE, device="cpu").fit(X)
    assert est.n_restarts_ >= 1 and est.lrate_ < 0.5
    assert match_components(est.transform(X).T, S.T)[2].min() > 0.9


def test_convergence_warnings(planted_sources):
    X, _, _ = planted_sources
    with pytest.warns(ConvergenceWarning, match=r"Infomax did not converge in max_iter=2 steps"):
        infomax = Infomax(max_iter=2, random_state=0, device="cpu").fit(X)
    with pytest.warns(ConvergenceWarning, match=r"FastICA did not converge in max_iter=2"):
        fastica = TorchFastICA(max_iter=2, random_state=0, device="cpu").fit(X)
    assert not infomax.converged_ and not fastica.converged_
    assert Infomax(random_state=0, device="cpu").fit(X).converged_
    assert TorchFastICA(random_state=0, device="cpu").fit(X).converged_


def test_errors(planted_sources):
    X, _, _ = planted_sources
    with pytest.raises(ValueError, match=r"'block' must be an int in \[1, n_samples = 4000\]"):
        Infomax(block=5000, device="cpu").fit(X)
    with pytest.raises(ValueError, match="'lrate' must be > 0"):
        Infomax(lrate=-1.0, device="cpu").fit(X)
    with pytest.raises(ValueError, match="'max_iter' must be an int >= 1"):
        Infomax(max_iter=0, device="cpu").fit(X)
    with pytest.raises(ValueError, match=r"'anneal_step' must be in \(0, 1\]"):
        Infomax(anneal_step=2.0, device="cpu").fit(X)
    with pytest.raises(ValueError, match="'w_init' must have shape"):
        Infomax(w_init=np.eye(2), device="cpu").fit(X)
    rank_def = np.column_stack([X[:, :2], X[:, 0] + X[:, 1]])
    with pytest.raises(InputDataError, match="must have full rank"):
        Infomax(device="cpu").fit(rank_def)
    with pytest.raises(InputDataError, match="blew up"):
        Infomax(lrate=1e3, min_lrate=1e2, sphering=False, device="cpu").fit(X * 1e3)
    with pytest.raises(ValueError, match=r"'n_components' must be an int in \[1, min"):
        TorchFastICA(n_components=9, device="cpu").fit(X)
    with pytest.raises(ValueError, match="must equal n_features=4 when whiten=False"):
        TorchFastICA(n_components=2, whiten=False, device="cpu").fit(X)
    with pytest.raises(ValueError, match=r"'alpha' must be in \[1, 2\]"):
        TorchFastICA(alpha=3.0, device="cpu").fit(X)
    with pytest.raises(ValueError, match="'max_iter' must be an int >= 1"):
        TorchFastICA(max_iter=0, device="cpu").fit(X)
    with pytest.raises(ValueError, match="'w_init' must have shape"):
        TorchFastICA(w_init=np.eye(2), device="cpu").fit(X)
    with pytest.raises(InputDataError, match="non-zero variance directions"):
        TorchFastICA(device="cpu").fit(rank_def)


@parametrize_with_checks([Infomax(max_iter=5, random_state=0, device="cpu"),
                          TorchFastICA(max_iter=5, random_state=0, device="cpu")])
def test_sklearn_estimator_contract(estimator, check):
    with warnings.catch_warnings():
        # 5 iterations keep the common checks fast; convergence is tested above.
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("extended", [False, True])
def test_batched_runs_equal_separate_fits(planted_sources, extended):
    from scipy.stats import ortho_group

    from pipeline.ica.infomax import fit_runs

    X, S, _ = planted_sources
    rng = np.random.RandomState(RANDOM_STATE)
    boot = X[rng.randint(0, len(X), len(X))]
    inits = [ortho_group.rvs(X.shape[1], random_state=s) for s in range(3)]
    datasets = [X, X, boot]  # two runs share their data, one is a bootstrap sample
    kw = {"extended": extended, "device": "cpu"}
    alone = [Infomax(w_init=w, random_state=s, **kw).fit(d)
             for s, (w, d) in enumerate(zip(inits, datasets))]
    batch = [Infomax(w_init=w, random_state=s, **kw) for s, w in enumerate(inits)]
    assert fit_runs(batch, datasets) == [True, True, True]
    for a, b in zip(alone, batch):
        assert a.n_iter_ == b.n_iter_ and a.n_restarts_ == b.n_restarts_
        np.testing.assert_allclose(b.components_, a.components_, atol=1e-12)
    assert match_components(batch[0].transform(X).T, S.T)[2].min() > 0.95
    with pytest.raises(ValueError, match="must share every parameter"):
        fit_runs([Infomax(device="cpu"), Infomax(lrate=0.01, device="cpu")], [X, X])
