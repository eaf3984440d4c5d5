"""Tests for pipeline.classify.confounds (against an explicit least-squares fit)."""

import numpy as np
import pandas as pd
import pytest

from pipeline.classify.confounds import ConfoundRegressor, encode_confounds
from pipeline.exceptions import InputDataError

RANDOM_STATE = 42


def test_removes_planted_confound_with_training_weights_only():
    rng = np.random.RandomState(RANDOM_STATE)
    age = rng.uniform(20, 60, (100, 1))
    feats = 0.1 * age + rng.randn(100, 3)
    X = np.hstack([age, feats])
    train, test = np.arange(70), np.arange(70, 100)
    reg = ConfoundRegressor(n_confounds=1).fit(X[train])
    # reference: explicit OLS with intercept on the training rows
    design = np.hstack([np.ones((70, 1)), age[train]])
    beta = np.linalg.lstsq(design, feats[train], rcond=None)[0]
    np.testing.assert_allclose(reg.coef_[0], beta[1], rtol=1e-10)
    out = reg.transform(X[test])
    expected = feats[test] - (age[test] - age[train].mean()) * beta[1]
    np.testing.assert_allclose(out, expected, rtol=1e-10)
    assert out.shape == (30, 3)
    assert abs(np.corrcoef(age[train, 0], reg.transform(X[train])[:, 0])[0, 1]) < 1e-10


def test_zero_confounds_passthrough_and_names():
    X = np.random.RandomState(0).randn(10, 4)
    reg = ConfoundRegressor(n_confounds=0).fit(X)
    np.testing.assert_array_equal(reg.transform(X), X)
    reg2 = ConfoundRegressor(n_confounds=2).fit(X)
    assert list(reg2.get_feature_names_out(["a", "b", "c", "d"])) == ["c", "d"]


def test_n_confounds_error():
    with pytest.raises(ValueError, match="'n_confounds' must be an int in"):
        ConfoundRegressor(n_confounds=3).fit(np.zeros((5, 3)))


def test_encode_confounds_one_hot_and_unseen_site():
    p = pd.DataFrame({"age": [20.0, 30.0, 40.0], "site": ["A", "B", "A"], "sex": ["F", "M", "M"]})
    design, cats = encode_confounds(p, ["age", "site", "sex"])
    assert list(design.columns) == ["age", "site[A]", "site[B]", "sex[F]", "sex[M]"]
    assert cats == {"site": ["A", "B"], "sex": ["F", "M"]}
    new = pd.DataFrame({"age": [25.0], "site": ["C"], "sex": ["F"]})
    d2, _ = encode_confounds(new, ["age", "site", "sex"], categories=cats)
    assert d2.loc[0, ["site[A]", "site[B]"]].sum() == 0  # unseen site: no adjustment


def test_encode_errors():
    p = pd.DataFrame({"age": [20.0, np.nan]})
    with pytest.raises(ValueError, match="confound 'fd' is not a column"):
        encode_confounds(p, ["fd"])
    with pytest.raises(InputDataError, match="confound 'age' is missing for 1"):
        encode_confounds(p, ["age"])
