"""ComBat against the reference implementation (neuroCombat), and on sites unseen in training."""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.classify.harmonize import ComBat, resolve_harmonize
from pipeline.classify.preprocess import FoldPreprocessor
from pipeline.exceptions import InputDataError

RANDOM_STATE = 42


def _sites_data(n_per_site=30, n_features=40, random_state=RANDOM_STATE):
    """Three sites with additive and multiplicative effects; age effect confounded with site."""
    rng = np.random.RandomState(random_state)
    sites = np.repeat(["a", "b", "c"], n_per_site)
    age = rng.uniform(20, 60, len(sites)) + np.select([sites == "a", sites == "b"], [10, -10], 0)
    sex = rng.choice([0.0, 1.0], len(sites))
    age_effect = rng.randn(n_features)
    X = rng.randn(len(sites), n_features) + np.outer(age - 40, age_effect) / 20
    shift = {s: 2 * rng.randn(n_features) for s in "abc"}
    scale = {"a": 1.8, "b": 0.6, "c": 1.0}
    for s in "abc":
        X[sites == s] = X[sites == s] * scale[s] + shift[s]
    return X, sites, age, sex, age_effect


def test_equals_neurocombat_on_training_data():
    neurocombat = pytest.importorskip("neuroCombat")
    X, sites, age, sex, _ = _sites_data()
    covars = pd.DataFrame({"batch": sites, "age": age, "sex": sex})
    expected = neurocombat.neuroCombat(dat=X.T, covars=covars, batch_col="batch",
                                       continuous_cols=["age", "sex"])["data"].T
    got = ComBat(n_covariates=2).fit_transform(np.c_[age, sex, X], sites=sites)
    # neuroCombat builds its design in float32: agreement to its precision
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_unseen_site_is_harmonized_from_its_own_features_only():
    X, sites, age, sex, _ = _sites_data()
    Z = np.c_[age, X]
    train, test = sites != "c", sites == "c"
    est = ComBat(n_covariates=1).fit(Z[train], sites=sites[train])
    out = est.transform(Z[test], sites=sites[test])
    # the new site lands on the training sites' location and scale
    harmonized_train = est.transform(Z[train], sites=sites[train])
    assert abs(out.mean() - harmonized_train.mean()) < 0.15
    assert abs(np.log(out.std() / harmonized_train.std())) < 0.2
    # only its own rows are used: scoring it alone or beside another new site gives the same
    other = np.c_[age[:20], X[:20] + 5.0]
    both = est.transform(np.r_[Z[test], other], sites=np.r_[sites[test], ["d"] * 20])
    np.testing.assert_allclose(both[: test.sum()], out)
    # a training site keeps its learned effects, whatever rows come with it
    np.testing.assert_allclose(est.transform(Z[:10], sites=sites[:10]), harmonized_train[:10])


def test_protected_covariate_effect_is_kept():
    X, sites, age, sex, age_effect = _sites_data(n_per_site=60)
    out = ComBat(n_covariates=1).fit_transform(np.c_[age, X], sites=sites)
    slopes = np.linalg.lstsq(np.c_[np.ones(len(age)), age - 40], out, rcond=None)[0][1]
    assert np.corrcoef(slopes, age_effect)[0, 1] > 0.9  # age effect survives
    unprotected = ComBat().fit_transform(X, sites=sites)
    site_means = pd.DataFrame(unprotected).groupby(sites).mean()
    assert site_means.std().mean() < 0.05  # site locations removed


def test_errors():
    X, sites, *_ = _sites_data()
    with pytest.raises(InputDataError, match=r"at least 10 participants per site in training; "
                                             r"got \{'b': 5\}"):
        ComBat().fit(np.r_[X[sites == "a"], X[sites == "b"][:5]],
                     sites=np.r_[sites[sites == "a"], ["b"] * 5])
    est = ComBat().fit(X, sites=sites)
    with pytest.raises(InputDataError, match="unseen in training; got \\{'new': 3\\}"):
        est.transform(X[:3], sites=["new"] * 3)
    with pytest.raises(ValueError, match="'sites' must have one entry per row"):
        est.transform(X[:3], sites=["a"])
    with pytest.raises(ValueError, match="'n_covariates' must be an int"):
        ComBat(n_covariates=X.shape[1]).fit(X, sites=sites)


def test_protected_columns_are_dropped_without_harmonization():
    X, sites, *_ = _sites_data()
    out = FoldPreprocessor(n_protect=1).fit_transform(X, sites=sites)
    np.testing.assert_allclose(out, FoldPreprocessor().fit_transform(X[:, 1:]))


@pytest.mark.parametrize(("counts", "expected"), [
    ({"a": 20, "b": 20}, "combat"),
    ({"a": 20, "b": 20, "c": 60}, "combat"),
    ({"a": 20, "b": 19}, "none"),          # one site below 20 participants
    ({"a": 20, "b": 20, "c": 5}, "none"),  # a small site would break ComBat
    ({"a": 100}, "none"),                  # one site: nothing to harmonize
])
def test_harmonize_auto_picks_combat_only_with_two_sites_of_twenty(counts, expected):
    sites = np.concatenate([[site] * n for site, n in counts.items()])
    assert resolve_harmonize("auto", sites) == expected
    assert resolve_harmonize("auto", None) == "none"
    assert resolve_harmonize("none", sites) == "none"  # explicit choices are kept as given
    assert resolve_harmonize("combat", sites) == "combat"
    with pytest.raises(ValueError, match="'harmonize' must be one of"):
        resolve_harmonize("neuroharmonize", sites)


@parametrize_with_checks(
    [ComBat(min_site_size=2), FoldPreprocessor(), FoldPreprocessor(n_confounds=1)],
    expected_failed_checks=lambda est: {"check_fit2d_1feature": "a confound column needs at "
                                        "least one feature column beside it"}
    if getattr(est, "n_confounds", 0) else {})
def test_sklearn_compatible(estimator, check):
    check(estimator)
