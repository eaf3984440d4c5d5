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
from pipeline.classify.search import (
    FastSearchClassifier,
    inner_splits,
    resolve_inner_split,
)

from .conftest import make_cohort


def test_same_choice_and_scores_as_gridsearchcv():
    cohort = make_cohort(n_subjects=80)
    X = cohort.features.to_numpy()
    y = cohort.participants["diagnosis"].to_numpy()
    ks, cs = [2, 5, 20, 45], [0.01, 0.1, 1.0]
    fast = FastSearchClassifier(k_grid=ks, param_grids={"logistic_l2": {"C": cs}}, inner_cv=4,
                                choice="best", calibration="none", random_state=0).fit(X, y)
    split_seed, model_seed = check_random_state(0).randint(2**31 - 1, size=2)
    assert fast.settings_["split_seed"] == split_seed  # the seeds are recorded
    assert fast.settings_["model_seed"] == model_seed
    pipe = Pipeline([("scale", StandardScaler()), ("select", SelectKBest(f_classif)),
                     ("model", make_model("logistic_l2", random_state=model_seed))])
    ref = GridSearchCV(pipe, {"select__k": ks, "model__C": cs}, scoring="roc_auc",
                       cv=inner_splits(4, y, None, split_seed)).fit(X, y)
    assert fast.best_params_["k"] == ref.best_params_["select__k"]
    assert fast.best_params_["C"] == ref.best_params_["model__C"]
    assert fast.best_score_ == pytest.approx(ref.best_score_, abs=1e-10)
    ref_scores = {(p["select__k"], p["model__C"]): s for p, s in
                  zip(ref.cv_results_["params"], ref.cv_results_["mean_test_score"], strict=True)}
    for row in pd.DataFrame(fast.cv_results_).itertuples():
        assert row.mean_score == pytest.approx(ref_scores[(row.k, row.param_C)], abs=1e-10)
    np.testing.assert_array_equal(fast.predict(X), ref.predict(X))


def test_repeated_inner_folds_score_like_gridsearchcv_over_every_repeat():
    cohort = make_cohort(n_subjects=80)
    X = cohort.features.to_numpy()
    y = cohort.participants["diagnosis"].to_numpy()
    ks, cs = [2, 20, 45], [0.01, 0.1, 1.0]
    grid = {"k_grid": ks, "param_grids": {"logistic_l2": {"C": cs}}, "inner_cv": 4,
            "choice": "best", "random_state": 0}
    fast = FastSearchClassifier(inner_repeats=3, **grid).fit(X, y)
    once = FastSearchClassifier(**grid).fit(X, y)
    split_seed, model_seed = (fast.settings_[k] for k in ("split_seed", "model_seed"))
    assert fast.settings_["inner_repeats"] == 3 and once.settings_["inner_repeats"] == 1
    seeds = [split_seed, *check_random_state(split_seed).randint(2**31 - 1, size=2)]
    folds = [fold for seed in seeds for fold in inner_splits(4, y, None, seed)]
    assert len({tuple(valid[:5]) for _, valid in folds}) == 12  # three different shuffles
    pipe = Pipeline([("scale", StandardScaler()), ("select", SelectKBest(f_classif)),
                     ("model", make_model("logistic_l2", random_state=model_seed))])
    ref = GridSearchCV(pipe, {"select__k": ks, "model__C": cs}, scoring="roc_auc",
                       cv=folds).fit(X, y)
    ref_scores = {(p["select__k"], p["model__C"]): s for p, s in
                  zip(ref.cv_results_["params"], ref.cv_results_["mean_test_score"], strict=True)}
    scores = pd.DataFrame(fast.cv_results_)
    for row in scores.itertuples():
        assert row.mean_score == pytest.approx(ref_scores[(row.k, row.param_C)], abs=1e-10)
    assert fast.best_score_ == pytest.approx(ref.best_score_, abs=1e-10)
    assert not np.allclose(scores["mean_score"], once.cv_results_["mean_score"])


def test_folds_that_leave_sites_out_run_once_and_repeats_combine_kinds():
    design, y, sites = _covariance_design()
    grid = {"kinds": ("tangent", "correlation"), "n_protect": design.n_protect,
            "param_grids": {"logistic_l2": {"C": [0.1, 1.0]}}, "random_state": 0,
            "device": "cpu"}
    once = FastSearchClassifier(**grid).fit(design.X, y, groups=sites)
    loso = FastSearchClassifier(inner_repeats=3, **grid).fit(design.X, y, groups=sites)
    assert loso.settings_["inner_split"] == "sites" and loso.settings_["inner_repeats"] == 1
    pd.testing.assert_frame_equal(pd.DataFrame(loso.cv_results_),  # the same folds, once
                                  pd.DataFrame(once.cv_results_))
    for combine in ("mean", "stack"):
        est = FastSearchClassifier(inner_repeats=2, inner_split="stratified", combine=combine,
                                   **grid).fit(design.X, y, groups=sites)
        assert est.settings_["inner_repeats"] == 2
        combined = pd.DataFrame(est.cv_results_).set_index("kind").loc[combine]
        assert 0.5 < combined["mean_score"] <= 1.0  # every repeat's out-of-fold scores filled


def test_one_standard_error_rule_picks_the_simplest_candidate_close_to_the_best():
    cohort = make_cohort(n_subjects=80)
    X = cohort.features.to_numpy()
    y = cohort.participants["diagnosis"].to_numpy()
    grid = {"k_grid": [2, 5, 20, 45], "param_grids": {"logistic_l2": {"C": [1e-3, 0.01, 0.1, 1.0]}},
            "inner_cv": 4, "random_state": 0}
    best = FastSearchClassifier(choice="best", **grid).fit(X, y)
    simple = FastSearchClassifier(choice="one_se", **grid).fit(X, y)
    table = pd.DataFrame(simple.cv_results_)
    top = table.loc[table["mean_score"].idxmax()]
    assert (best.best_params_["k"], best.best_params_["C"]) == (top["k"], top["param_C"])
    close = table[table["mean_score"] >= top["mean_score"] - top["std_score"] / np.sqrt(4)]
    simplest = min(zip(close["k"], close["param_C"], strict=True))
    assert (simple.best_params_["k"], simple.best_params_["C"]) == simplest
    assert simplest != (top["k"], top["param_C"])  # this cohort has a simpler, close candidate
    assert simple.best_score_ == pytest.approx(
        table.set_index(["k", "param_C"]).loc[simplest, "mean_score"])


def test_calibration_improves_held_out_probabilities():
    """Platt scaling of a strongly penalized model: its squeezed probabilities spread out."""
    from sklearn.metrics import log_loss

    cohort = make_cohort(n_subjects=160)
    X = cohort.features.to_numpy()
    y = cohort.participants["diagnosis"].to_numpy()
    train, test = np.arange(0, 160, 2), np.arange(1, 160, 2)
    fits = {method: FastSearchClassifier(param_grids={"logistic_l2": {"C": [1e-3]}},
                                         calibration=method, random_state=0).fit(X[train],
                                                                                 y[train])
            for method in ("none", "sigmoid")}
    model = fits["sigmoid"].members_[0]["model"]
    assert type(model).__name__ == "CalibratedClassifierCV" and model.method == "sigmoid"
    loss = {m: log_loss(y[test], est.predict_proba(X[test])) for m, est in fits.items()}
    assert loss["sigmoid"] < loss["none"] - 0.05


def test_inner_split_auto_leaves_sites_out_from_three_sites_else_stratifies():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 120)
    three, two = np.repeat(["a", "b", "c"], 40), np.repeat(["a", "b"], 60)
    assert resolve_inner_split("auto", three) == "sites"
    assert resolve_inner_split("auto", two) == "stratified"
    assert resolve_inner_split("auto", None) == "stratified"
    assert resolve_inner_split("sites", two) == "sites"
    assert resolve_inner_split("sites", None) == "stratified"  # no sites to leave out
    assert resolve_inner_split("stratified", three) == "stratified"
    for train, valid in inner_splits(5, y, three, 0, split="auto"):
        assert len(set(three[valid])) == 1 and three[valid][0] not in three[train]
    splits = inner_splits(5, y, two, 0, split="auto")
    assert len(splits) == 5
    cells = pd.crosstab(two, y)
    for _, valid in splits:  # every fold holds each site x class cell in proportion
        counts = pd.crosstab(two[valid], y[valid]).reindex_like(cells).fillna(0)
        assert (np.abs(counts - cells / 5) <= 1).all().all()
    with pytest.raises(ValueError, match="'inner_split' must be one of"):
        resolve_inner_split("random", two)


def test_search_errors():
    X, y = np.random.RandomState(0).randn(20, 4), np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="'models' must be a non-empty sequence"):
        FastSearchClassifier(models="logistic_l2").fit(X, y)
    with pytest.raises(ValueError, match="'models' must be one of"):
        FastSearchClassifier(models=("boosted",)).fit(X, y)
    with pytest.raises(ValueError, match="'scoring' must be one of"):
        FastSearchClassifier(scoring="f1").fit(X, y)
    with pytest.raises(ValueError, match="'combine' must be one of"):
        FastSearchClassifier(combine="vote").fit(X, y)
    with pytest.raises(ValueError, match="'calibration' must be one of"):
        FastSearchClassifier(calibration="platt").fit(X, y)
    with pytest.raises(ValueError, match="'choice' must be one of"):
        FastSearchClassifier(choice="1se").fit(X, y)
    with pytest.raises(ValueError, match="'inner_repeats' must be an int >= 1"):
        FastSearchClassifier(inner_repeats=0).fit(X, y)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="'inner_repeats' must be of type int"):
            FastSearchClassifier(inner_repeats=bad).fit(X, y)


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
                               n_protect=design.n_protect, combine="stack", k_grid=(3, "all"),
                               param_grids={"logistic_l2": {"C": [0.1, 1.0]}},
                               random_state=0, device="cpu")
    res = nested_cross_validate(est, design.X, y, groups=sites, n_bootstrap=0, random_state=0,
                                return_estimators=True)
    assert len(res.folds) == 3 and res.balanced_accuracy > 0.75
    fitted = res.estimators[0]
    results = pd.DataFrame(fitted.cv_results_)
    assert set(results["kind"]) == {"tangent", "correlation", "stack"}
    assert fitted.best_params_["kind"] in {"tangent", "correlation", "stack"}
    assert fitted.settings_["harmonize"] == "combat" and fitted.settings_["combine"] == "stack"
    assert set(res.folds["combine"]) == {"stack"}  # the settings are recorded per fold
    for member in fitted.members_:  # harmonized on the two training sites only
        assert list(member["preprocessor"].harmonizer_.sites_) == sorted(set(sites) - {"site1"})
    proba = fitted.predict_proba(design.X[sites == "site1"], groups=sites[sites == "site1"])
    assert proba.shape == (int(np.sum(sites == "site1")), 2)


def test_mean_of_kinds_averages_their_calibrated_probabilities():
    design, y, sites = _covariance_design()
    est = FastSearchClassifier(kinds=("tangent", "correlation"), n_protect=design.n_protect,
                               param_grids={"logistic_l2": {"C": [0.1, 1.0]}},
                               random_state=0, device="cpu").fit(design.X, y, groups=sites)
    assert est.best_params_["kind"] == "mean" and len(est.members_) == 2
    assert "mean" in pd.DataFrame(est.cv_results_)["kind"].tolist()
    assert est.settings_["harmonize"] == "combat"  # auto: three sites of 20+ participants
    parts = [m["model"].predict_proba(est._member_inputs(m, design.X, sites))
             for m in est.members_]
    proba = est.predict_proba(design.X, groups=sites)
    np.testing.assert_allclose(proba, (parts[0] + parts[1]) / 2)
    np.testing.assert_array_equal(est.predict(design.X, groups=sites),
                                  est.classes_[np.argmax(proba, axis=1)])


def _fitted_coef(model):
    """Coefficients of a model, calibrated (CalibratedClassifierCV, ensemble=False) or not."""
    inner = getattr(model, "calibrated_classifiers_", None)
    return inner[0].estimator.coef_ if inner else model.coef_


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
        np.testing.assert_array_equal(_fitted_coef(a["model"]), _fitted_coef(b["model"]))
        pre_a, pre_b = a["preprocessor"], b["preprocessor"]
        np.testing.assert_array_equal(pre_a.connectivity_.mean_, pre_b.connectivity_.mean_)
        np.testing.assert_array_equal(pre_a.harmonizer_.gamma_star_, pre_b.harmonizer_.gamma_star_)
        np.testing.assert_array_equal(pre_a.scaler_.mean_, pre_b.scaler_.mean_)
    # the test site's own (unlabeled) features do enter its harmonization, and so its scores
    changed = runs[1].predictions.query("fold == 0")["score"].to_numpy()
    assert not np.allclose(runs[0].predictions.query("fold == 0")["score"], changed)
