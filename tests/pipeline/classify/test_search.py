"""FastSearchClassifier against the slow reference: GridSearchCV over the same pipeline."""

import numpy as np
import pytest
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline._validation import check_random_state
from pipeline.classify.models import make_model
from pipeline.classify.search import FastSearchClassifier, inner_splitter

from .conftest import make_cohort


def test_same_choice_and_scores_as_gridsearchcv():
    cohort = make_cohort(n_subjects=80)
    X = cohort.features.to_numpy()
    y = cohort.participants["diagnosis"].to_numpy()
    ks, cs = [2, 5, 20, 45], [0.01, 0.1, 1.0]
    fast = FastSearchClassifier(k_grid=ks, param_grids={"logistic_l2": {"C": cs}}, inner_cv=4,
                                random_state=0).fit(X, y)
    split_seed, model_seed = check_random_state(0).randint(2**31 - 1, size=2)
    splitter, _ = inner_splitter(4, y, None, split_seed)
    pipe = Pipeline([("scale", StandardScaler()), ("select", SelectKBest(f_classif)),
                     ("model", make_model("logistic_l2", random_state=model_seed))])
    ref = GridSearchCV(pipe, {"select__k": ks, "model__C": cs}, scoring="roc_auc",
                       cv=list(splitter.split(X, y))).fit(X, y)
    assert fast.best_params_["k"] == ref.best_params_["select__k"]
    assert fast.best_params_["C"] == ref.best_params_["model__C"]
    assert fast.best_score_ == pytest.approx(ref.best_score_, abs=1e-10)
    ref_scores = {(p["select__k"], p["model__C"]): s for p, s in
                  zip(ref.cv_results_["params"], ref.cv_results_["mean_test_score"], strict=True)}
    for row in fast.cv_results_.itertuples():
        assert row.mean_score == pytest.approx(ref_scores[(row.k, row.param_C)], abs=1e-10)
    np.testing.assert_array_equal(fast.predict(X), ref.predict(X))


def test_search_errors():
    X, y = np.random.RandomState(0).randn(20, 4), np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="'models' must be a non-empty sequence"):
        FastSearchClassifier(models="logistic_l2").fit(X, y)
    with pytest.raises(ValueError, match="'models' must be one of"):
        FastSearchClassifier(models=("boosted",)).fit(X, y)
    with pytest.raises(ValueError, match="'scoring' must be one of"):
        FastSearchClassifier(scoring="f1").fit(X, y)
