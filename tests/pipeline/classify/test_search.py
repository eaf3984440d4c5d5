"""FastSearchClassifier against the slow reference: GridSearchCV over the same pipeline."""

import numpy as np
import pandas as pd
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
    for row in pd.DataFrame(fast.cv_results_).itertuples():
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


def _covariance_design():
    from pipeline.classify.analysis import design_matrix

    from .conftest import make_timeseries_cohort

    features, participants = make_timeseries_cohort()
    table = participants.set_index("participant_id")
    design = design_matrix(features, table, (), protect=("age",))
    return design, table["diagnosis"].to_numpy(), table["site"].to_numpy()


def test_kinds_harmonization_and_stacking_transfer_to_left_out_sites():
    from pipeline.classify.validation import nested_cross_validate

    design, y, sites = _covariance_design()
    est = FastSearchClassifier(kinds=("tangent", "correlation"), harmonize="combat",
                               n_protect=design.n_protect, stack=True, k_grid=(3, "all"),
                               param_grids={"logistic_l2": {"C": [0.1, 1.0]}},
                               random_state=0, device="cpu")
    res = nested_cross_validate(est, design.X, y, groups=sites, n_bootstrap=0, random_state=0,
                                return_estimators=True)
    assert len(res.folds) == 3 and res.balanced_accuracy > 0.75
    fitted = res.estimators[0]
    results = pd.DataFrame(fitted.cv_results_)
    assert set(results["kind"]) == {"tangent", "correlation", "stack"}
    assert fitted.best_params_["kind"] in {"tangent", "correlation", "stack"}
    for member in fitted.members_:  # harmonized on the two training sites only
        assert list(member["preprocessor"].harmonizer_.sites_) == sorted(set(sites) - {"site1"})
    proba = fitted.predict_proba(design.X[sites == "site1"], groups=sites[sites == "site1"])
    assert proba.shape == (int(np.sum(sites == "site1")), 2)


def test_nothing_of_the_test_site_reaches_training():
    """Changing the test site's labels and features leaves every fitted part of its fold alone."""
    from pipeline.classify.validation import nested_cross_validate

    design, y, sites = _covariance_design()
    est = FastSearchClassifier(kinds=("tangent",), harmonize="combat", n_protect=design.n_protect,
                               models=("logistic_l2", "linear_svm"), k_grid=(3, "all"),
                               random_state=0, device="cpu")
    runs = []
    for changed in (False, True):
        X, labels = design.X.copy(), y.copy()
        test = sites == "site1"  # the test site of the first outer fold
        if changed:
            labels[test] = np.random.RandomState(1).permutation(labels[test])
            X[test, design.n_protect:] *= 1.7  # other features at the test site
        runs.append(nested_cross_validate(est, X, labels, groups=sites, n_bootstrap=0,
                                          random_state=0, return_estimators=True))
    before, after = (run.estimators[0] for run in runs)
    assert before.best_params_ == after.best_params_
    assert before.cv_results_ == after.cv_results_
    for a, b in zip(before.members_, after.members_, strict=True):
        np.testing.assert_array_equal(a["columns"], b["columns"])
        np.testing.assert_array_equal(a["model"].coef_, b["model"].coef_)
        pre_a, pre_b = a["preprocessor"], b["preprocessor"]
        np.testing.assert_array_equal(pre_a.connectivity_.mean_, pre_b.connectivity_.mean_)
        np.testing.assert_array_equal(pre_a.harmonizer_.gamma_star_, pre_b.harmonizer_.gamma_star_)
        np.testing.assert_array_equal(pre_a.scaler_.mean_, pre_b.scaler_.mean_)
    # the test site's own (unlabeled) features do enter its harmonization, and so its scores
    changed = runs[1].predictions.query("fold == 0")["score"].to_numpy()
    assert not np.allclose(runs[0].predictions.query("fold == 0")["score"], changed)
