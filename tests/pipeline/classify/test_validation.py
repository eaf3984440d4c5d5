"""Tests for nested CV, metrics and permutation tests (planted signal vs null)."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import KFold, LeaveOneGroupOut

from pipeline.classify.analysis import design_matrix
from pipeline.classify.search import FastSearchClassifier
from pipeline.classify.validation import (
    binary_metrics,
    bootstrap_metrics,
    check_groups_disjoint,
    nested_cross_validate,
    outer_splits,
    permutation_test,
    permute_within_groups,
)

from .conftest import make_cohort


def _xy(cohort, target="diagnosis", confounds=("age", "sex", "site", "mean_fd")):
    table = cohort.participants.set_index("participant_id")
    keep = table.index[table[target] != "n/a"]
    design = design_matrix(cohort.features.loc[keep], table, confounds)
    return design.X, table.loc[keep, target].to_numpy(), table.loc[keep, "site"].to_numpy(), \
        design.n_confounds


def test_planted_signal_detected_and_sites_kept_apart(cohort, fast_grid):
    X, y, sites, n_conf = _xy(cohort)
    est = FastSearchClassifier(n_confounds=n_conf, random_state=0, **fast_grid)
    res = nested_cross_validate(est, X, y, groups=sites, n_splits=4, n_bootstrap=200,
                                pos_label="patient", random_state=0)
    assert res.balanced_accuracy > 0.8 and res.roc_auc > 0.85
    assert len(res.folds) == 4  # 4 sites -> leave one site out
    for _, part in res.predictions.groupby("fold"):
        assert part["group"].nunique() == 1
    for _, train, test in outer_splits(y, sites, n_splits=4):
        assert not set(sites[train]) & set(sites[test])
    m = res.metrics
    assert (m["ci_low"] <= m["estimate"]).all() and (m["estimate"] <= m["ci_high"]).all()
    ref = balanced_accuracy_score(res.predictions["y_true"], res.predictions["y_pred"])
    assert res.balanced_accuracy == pytest.approx(ref)
    assert set(res.per_site["site"]) == set(sites)
    assert res.calibration is not None and res.calibration["prob_pred"].between(0, 1).all()
    planted = [list(cohort.features.columns).index(p) for p in cohort.planted]
    for sel in res.selected:  # the planted edges are kept in every fold
        assert set(planted) <= set(sel["features"].tolist())
    site_ci = res.per_site  # per-site metrics carry bootstrap CIs
    assert (site_ci["roc_auc_ci_low"] <= site_ci["roc_auc"]).all()
    assert (site_ci["roc_auc"] <= site_ci["roc_auc_ci_high"]).all()


@pytest.mark.parametrize("kind", ["shuffled", "noise"])
def test_null_is_at_chance(kind, fast_grid):
    baccs = []
    for seed in range(3):
        cohort = make_cohort(n_subjects=80, effect=0.0 if kind == "noise" else 1.2,
                             random_state=seed)
        X, y, sites, n_conf = _xy(cohort)
        if kind == "shuffled":
            y = np.random.RandomState(seed).permutation(y)
        est = FastSearchClassifier(n_confounds=n_conf, random_state=seed, **fast_grid)
        res = nested_cross_validate(est, X, y, groups=sites, n_splits=4, n_bootstrap=0,
                                    random_state=seed)
        baccs.append(res.balanced_accuracy)
    assert abs(np.mean(baccs) - 0.5) < 0.08


def test_permutation_test_signal_vs_null(fast_grid):
    cohort = make_cohort(n_subjects=60)
    X, y, sites, n_conf = _xy(cohort)
    est = FastSearchClassifier(n_confounds=n_conf, k_grid=(3,), inner_cv=2,
                               param_grids={"logistic_l2": {"C": [1.0]}})
    sig = permutation_test(est, X, y, groups=sites, n_permutations=9, random_state=0, n_splits=4)
    assert sig.p_value == pytest.approx(0.1) and sig.observed > sig.null.max()
    y_null = np.random.RandomState(1).permutation(y)
    null = permutation_test(est, X, y_null, groups=sites, n_permutations=9, random_state=0,
                            n_splits=4)
    assert null.p_value > 0.1 and null.null.shape == (9,)


def test_permute_within_groups_keeps_site_counts():
    y = np.array(list("aabbab"))
    g = np.array([1, 1, 1, 2, 2, 2])
    out = permute_within_groups(y, g, np.random.RandomState(0))
    for site in (1, 2):
        assert sorted(out[g == site]) == sorted(y[g == site])


def test_repeated_stratified_without_sites(cohort, fast_grid):
    X, y, _, n_conf = _xy(cohort, confounds=())
    est = FastSearchClassifier(n_confounds=n_conf, random_state=0, **fast_grid)
    res = nested_cross_validate(est, X, y, n_splits=3, n_repeats=2, n_bootstrap=0, random_state=0)
    assert len(res.folds) == 6 and res.predictions["repeat"].nunique() == 2
    assert res.predictions.groupby("repeat")["sample"].nunique().eq(len(y)).all()


def test_multiclass_target(cohort, fast_grid):
    X, y, sites, n_conf = _xy(cohort, target="response", confounds=("age",))
    grid = {**fast_grid, "k_grid": (10,), "param_grids": {"logistic_l2": {"C": [1.0]}}}
    est = FastSearchClassifier(n_confounds=n_conf, random_state=0, **grid)
    res = nested_cross_validate(est, X, y, n_splits=3, n_bootstrap=50, random_state=0)
    assert set(res.classes) == {"good", "none", "partial"}
    assert res.balanced_accuracy > 0.6  # chance is 1/3
    assert 0.5 < res.roc_auc <= 1.0


def test_bootstrap_without_scores_gives_no_auc_interval_and_no_warning():
    """Without class scores AUC is undefined in every draw: its CI is n/a, quietly (numpy's
    'All-NaN slice' RuntimeWarning reached the logs of multi-class runs)."""
    import warnings

    y = np.array(["a", "b", "c"] * 10)
    pred = np.roll(y, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = bootstrap_metrics(y, pred, None, np.array(["a", "b", "c"]), None,
                                  n_bootstrap=50, random_state=0)
    assert np.isnan(table.loc["roc_auc"].astype(float)).all()
    low, high = table.loc["balanced_accuracy", ["ci_low", "ci_high"]]
    assert 0 <= low <= table.loc["balanced_accuracy", "estimate"] <= high <= 1


def test_binary_metrics_against_sklearn():
    y = np.array(["n", "n", "p", "p", "p"])
    pred = np.array(["n", "p", "p", "p", "n"])
    score = np.array([0.1, 0.6, 0.8, 0.7, 0.4])
    m = binary_metrics(y, pred, score, "p")
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y == "p", score))


def test_split_errors():
    y = np.repeat([0, 1], 6)
    g = np.repeat([1, 2, 3], 4)
    class Leaky:  # a splitter that ignores sites
        def split(self, X, y, groups=None):
            yield from KFold(2).split(X, y)

    with pytest.raises(ValueError, match="are in both the training and the test set"):
        outer_splits(y, g, cv=Leaky())
    with pytest.raises(ValueError, match="at least 2 sites"):
        outer_splits(y, np.ones(12))
    check_groups_disjoint(*next(LeaveOneGroupOut().split(y, y, g)), g)
    with pytest.raises(ValueError, match="'pos_label' must be one of"):
        nested_cross_validate(FastSearchClassifier(), np.zeros((12, 2)), y, pos_label=5)
    with pytest.raises(ValueError, match="'n_permutations' must be an int >= 1"):
        permutation_test(FastSearchClassifier(), np.zeros((12, 2)), y, n_permutations=0)
    with pytest.raises(ValueError, match="'metric' must be"):
        permutation_test(FastSearchClassifier(), np.zeros((12, 2)), y, metric="f1")


def test_outer_split_without_two_of_each_class_is_refused():
    from pipeline.classify.validation import outer_splits
    from pipeline.exceptions import InputDataError

    y = np.array(["a", "a", "b", "b", "a", "b"])
    groups = np.array(["s1", "s1", "s1", "s2", "s2", "s2"])
    with pytest.raises(InputDataError, match=r"Outer fold 0 \(test sites \['s1'\]\) leaves"):
        outer_splits(y, groups)
