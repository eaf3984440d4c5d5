"""Tests for pipeline.classify.selection (against sklearn's f_classif / SelectKBest)."""

import numpy as np
import pytest
from sklearn.feature_selection import SelectKBest, f_classif

from pipeline.classify.selection import RankedSelector, StabilitySelector, anova_f_scores, resolve_k

from .conftest import RANDOM_STATE


@pytest.mark.parametrize("n_classes", [2, 3])
def test_f_scores_match_sklearn(n_classes):
    rng = np.random.RandomState(RANDOM_STATE)
    X = rng.randn(90, 40)
    y = np.arange(90) % n_classes
    X[y == 1, 5] += 1.0
    np.testing.assert_allclose(anova_f_scores(X, y), f_classif(X, y)[0], rtol=1e-10)


def test_f_scores_constant_columns():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    f = anova_f_scores(X, [0, 0, 1, 1])
    assert f[0] == 0 and np.isinf(f[1])
    with pytest.raises(ValueError, match="at least 2 classes and more samples"):
        anova_f_scores(X, [0, 0, 0, 0])


def test_ranked_selector_matches_selectkbest():
    rng = np.random.RandomState(RANDOM_STATE)
    X = rng.randn(80, 50)
    y = np.repeat([0, 1], 40)
    X[y == 1, :4] += np.array([2.0, 1.5, 1.0, 0.8])
    sel = RankedSelector(k=7).fit(X, y)
    ref = SelectKBest(f_classif, k=7).fit(X, y)
    assert set(sel.get_support(indices=True)) == set(ref.get_support(indices=True))
    assert list(sel.ranking_[:4]) == [0, 1, 2, 3]
    assert list(sel.top(2)) == [0, 1]
    assert sel.transform(X).shape == (80, 7)
    assert RankedSelector(k=0.1).fit(X, y).k_ == 5


def test_resolve_k_errors():
    assert resolve_k("all", 5) == 5
    with pytest.raises(ValueError, match=r"'k' must be in \[1, n_features=5\]"):
        resolve_k(6, 5)
    with pytest.raises(ValueError, match=r"as a fraction must be in \(0, 1\]"):
        resolve_k(1.5, 5)
    with pytest.raises(ValueError, match="'k' must be an int"):
        resolve_k("some", 5)


def test_stability_selector_recovers_planted():
    rng = np.random.RandomState(RANDOM_STATE)
    X = rng.randn(100, 60)
    y = np.repeat([0, 1], 50)
    X[y == 1, 10] += 1.5
    X[y == 1, 20] -= 1.5
    sel = StabilitySelector(C=0.1, n_resamples=20, threshold=0.7, random_state=0).fit(X, y)
    assert set(sel.get_support(indices=True)) == {10, 20}
    again = StabilitySelector(C=0.1, n_resamples=20, threshold=0.7, random_state=0).fit(X, y)
    np.testing.assert_array_equal(sel.selection_frequency_, again.selection_frequency_)
    pre = StabilitySelector(C=0.05, n_resamples=20, prescreen=10, random_state=0).fit(X, y)
    assert np.count_nonzero(pre.selection_frequency_) <= 10
    strict = StabilitySelector(C=1e-4, n_resamples=5, min_features=2, random_state=0).fit(X, y)
    assert strict.get_support().sum() == 2


def test_stability_selector_errors():
    X, y = np.random.RandomState(0).randn(20, 3), np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="'sample_fraction' must be in"):
        StabilitySelector(sample_fraction=1.0).fit(X, y)
    with pytest.raises(ValueError, match="'threshold' must be in"):
        StabilitySelector(threshold=0).fit(X, y)
