"""Connectivity kinds against nilearn's ConnectivityMeasure (the reference), and their errors."""

import numpy as np
import pytest
from nilearn.connectome import ConnectivityMeasure
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.classify.connectivity import (
    CONNECTIVITY_KINDS,
    ConnectivityFeatures,
    covariance_table,
    covariances_to_vectors,
    geometric_mean,
    node_labels_of,
    participant_covariances,
    vectors_to_covariances,
)
from pipeline.exceptions import ConvergenceWarning, InputDataError

RANDOM_STATE = 42

#: Checks that feed matrices of arbitrary width: the input is vectorised covariances
#: (n_nodes * (n_nodes + 1) / 2 columns), so fit refuses them.
EXPECTED_FAILED = {name: "random input of arbitrary width is not vectorised covariances"
                   for name in ("check_estimators_dtypes", "check_estimators_fit_returns_self", "check_estimators_overwrite_params", "check_fit_check_is_fitted", "check_fit_idempotent", "check_n_features_in", "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit", "check_readonly_memmap_input", "check_transformer_n_iter")}


@pytest.fixture(scope="module")
def series():
    """14 participants, 9 correlated nodes, runs of different lengths."""
    rng = np.random.RandomState(RANDOM_STATE)
    mixing = np.eye(9) + 0.4 * rng.randn(9, 9)
    return [rng.randn(60 + 5 * i, 9) @ mixing * (1 + i) for i in range(14)]


@pytest.mark.parametrize("kind", list(CONNECTIVITY_KINDS))
def test_kinds_equal_nilearn_fitted_on_training_rows(series, kind):
    zscored = [(s - s.mean(axis=0)) / s.std(axis=0, ddof=1) for s in series]
    discard = CONNECTIVITY_KINDS[kind].discard_diagonal
    reference = ConnectivityMeasure(kind=kind.replace("_", " "), vectorize=True,
                                    discard_diagonal=discard)
    expected = reference.fit(zscored[:10]).transform(zscored)  # reference fitted on 10 only
    vectors = covariances_to_vectors(participant_covariances(series))
    est = ConnectivityFeatures(kind=kind, device="cpu").fit(vectors[:10])
    got = est.transform(vectors)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    if kind == "tangent":
        np.testing.assert_allclose(est.mean_, reference.mean_, rtol=1e-4,
                                   atol=1e-5 * np.abs(reference.mean_).max())
        assert est.n_iter_ > 1
    names = est.get_feature_names_out([f"N{i}" for i in range(9)])
    assert len(names) == got.shape[1] and names[0] == ("N0__N1" if discard else "N0__N0")


def test_tables_round_trip(series):
    covs = participant_covariances(series)
    table = covariance_table(covs, [f"s4-N{i}" for i in range(9)], [f"sub-{i}" for i in range(14)])
    assert node_labels_of(table.columns) == [f"s4-N{i}" for i in range(9)]
    np.testing.assert_allclose(vectors_to_covariances(table.to_numpy()), covs)
    with pytest.raises(ValueError, match="not a covariance table"):
        node_labels_of(["a__b", "a__a"])


def test_errors(series):
    constant = [series[0].copy()]
    constant[0][:, 2] = 0.0
    with pytest.raises(InputDataError, match="1 constant column"):
        participant_covariances(constant)
    with pytest.raises(InputDataError, match="has 8 nodes but the first has 9"):
        participant_covariances([series[0], series[1][:, :8]])
    with pytest.raises(ValueError, match="5 columns are not the lower triangle"):
        ConnectivityFeatures(kind="covariance").fit(np.ones((3, 5)))
    with pytest.raises(ValueError, match="'kind' must be one of"):
        ConnectivityFeatures(kind="mutual information").fit(np.ones((3, 6)))
    not_spd = covariances_to_vectors(np.stack([np.diag([1.0, -1.0])] * 3))
    with pytest.raises(InputDataError, match="not positive definite"):
        ConnectivityFeatures(kind="tangent", device="cpu").fit(not_spd)
    covs = participant_covariances(series)
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        geometric_mean(covs, max_iter=1, device="cpu")


@parametrize_with_checks([ConnectivityFeatures(kind="covariance", device="cpu")],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)
