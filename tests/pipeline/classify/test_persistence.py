"""Tests for saving, loading and guarded prediction."""

import json

import numpy as np
import pytest

import pipeline.classify.persistence as persistence
from pipeline.classify.analysis import design_matrix
from pipeline.classify.persistence import data_hash, load_model, predict_table, save_model
from pipeline.classify.search import FastSearchClassifier


@pytest.fixture(scope="module")
def saved(tmp_path_factory, cohort):
    table = cohort.participants.set_index("participant_id")
    X, cats = design_matrix(cohort.features, table, ("age", "site"))
    y = table["diagnosis"].to_numpy()
    est = FastSearchClassifier(n_confounds=X.shape[1] - cohort.features.shape[1], k_grid=(5,),
                               inner_cv=2, random_state=0).fit(X, y)
    path = tmp_path_factory.mktemp("model") / "diagnosis.joblib"
    meta = save_model(est, path, feature_names=cohort.features.columns, target="diagnosis",
                      X=X, y=y, confounds=("age", "site"), confound_categories=cats,
                      extra={"balanced_accuracy": np.float64(0.9)})
    return path, est, X, y, meta


def test_round_trip(saved, cohort):
    path, est, X, y, meta = saved
    model, loaded = load_model(path)
    assert loaded == json.loads(path.with_suffix(".json").read_text()) == meta
    assert loaded["training_data_sha256"] == data_hash(X, y) != data_hash(X, y[::-1])
    assert loaded["classes"] == ["control", "patient"] and loaded["target"] == "diagnosis"
    shuffled = cohort.features[cohort.features.columns[::-1]]  # column order does not matter
    out = predict_table(model, loaded, shuffled, cohort.participants)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), est.predict(X))
    np.testing.assert_allclose(out["proba_patient"].to_numpy(), est.predict_proba(X)[:, 1])


def test_mismatched_features_and_version(saved, cohort, monkeypatch):
    path, *_ = saved
    model, meta = load_model(path)
    with pytest.raises(ValueError, match="features do not match the saved model"):
        predict_table(model, meta, cohort.features.iloc[:, 1:], cohort.participants)
    with pytest.raises(ValueError, match="regresses out confounds"):
        predict_table(model, meta, cohort.features)
    with pytest.raises(ValueError, match="lacks rows for 2 participants"):
        predict_table(model, meta, cohort.features, cohort.participants.iloc[2:])
    monkeypatch.setattr(persistence, "__version__", "9.9.9")
    with pytest.raises(ValueError, match="was saved with msica_version='.*' but this is '9.9.9'"):
        load_model(path)
    assert load_model(path, allow_version_mismatch=True)[1]["target"] == "diagnosis"


def test_save_load_errors(tmp_path):
    with pytest.raises(ValueError, match="'path' must end in '.joblib'"):
        save_model(None, tmp_path / "m.pkl", feature_names=[], target="t", X=[[0.0]], y=[0])
    with pytest.raises(FileNotFoundError, match="saved model file"):
        load_model(tmp_path / "absent.joblib")
