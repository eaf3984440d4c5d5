"""Tests for pipeline.classify.models and sklearn compatibility of msica's estimators."""

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from pipeline.classify.confounds import ConfoundRegressor
from pipeline.classify.models import MODEL_NAMES, TorchMLPClassifier, default_param_grid, make_model
from pipeline.classify.search import FastSearchClassifier
from pipeline.classify.selection import RankedSelector, StabilitySelector

RANDOM_STATE = 42
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _expected_failures(estimator):
    """Checks that cannot apply, with the reason (none so far)."""
    return {}


@parametrize_with_checks(
    [
        RankedSelector(k="all"),
        StabilitySelector(n_resamples=3, random_state=0),
        ConfoundRegressor(n_confounds=0),
        TorchMLPClassifier(max_epochs=60, random_state=0, device="cpu"),
        FastSearchClassifier(k_grid=("all",), inner_cv=2,
                             param_grids={"logistic_l2": {"C": [1.0]}}, random_state=0),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _planted(n=80, p=20, shift=1.5):
    rng = np.random.RandomState(RANDOM_STATE)
    X = rng.randn(n, p)
    y = np.repeat(["a", "b"], n // 2)
    X[y == "b", :3] += shift
    return X, y


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_learns_planted_signal(name):
    X, y = _planted()
    model = make_model(name, random_state=0, device="cpu")
    model.set_params(**{k: v[-1] for k, v in default_param_grid(name).items()})
    # scoped to this test: OpenMP threads fight on a busy 2-core machine
    with threadpool_limits(limits=1):
        model.fit(X[::2], y[::2])
    assert model.score(X[1::2], y[1::2]) > 0.75


def test_make_model_errors_and_multiclass_solver():
    with pytest.raises(ValueError, match="'model' must be one of"):
        make_model("xgboost")
    assert make_model("logistic_l2", n_classes=3).solver == "lbfgs"


@pytest.mark.parametrize("device", DEVICES)
def test_mlp_reproducible_and_multiclass(device):
    rng = np.random.RandomState(RANDOM_STATE)
    X = rng.randn(90, 5)
    y = np.arange(90) % 3
    X[np.arange(90), y] += 3.0
    a = TorchMLPClassifier(random_state=0, device=device).fit(X, y)
    b = TorchMLPClassifier(random_state=0, device=device).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X))
    assert a.predict_proba(X).shape == (90, 3) and a.score(X, y) > 0.9
    assert a.device_.startswith(device)
    assert a.decision_function(X).shape == (90, 3)


def test_mlp_errors():
    X, y = _planted(20, 3)
    with pytest.raises(ValueError, match="'hidden_layer_sizes' must be a tuple of positive"):
        TorchMLPClassifier(hidden_layer_sizes=(0,), device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="'class_weight' must be 'balanced', None or a dict"):
        TorchMLPClassifier(class_weight="auto", device="cpu").fit(X, y)
