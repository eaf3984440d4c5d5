"""Tests for saving, loading (safely) and guarded prediction."""

import json
import pickle
import sys
import zipfile

import numpy as np
import pytest
import skops.io

import pipeline.classify.persistence as persistence
from pipeline.classify.analysis import design_matrix
from pipeline.classify.persistence import (
    data_hash,
    file_hash,
    load_model,
    predict_table,
    save_model,
)
from pipeline.classify.search import FastSearchClassifier
from pipeline.exceptions import InputDataError


@pytest.fixture(scope="module")
def saved(tmp_path_factory, cohort):
    table = cohort.participants.set_index("participant_id")
    design = design_matrix(cohort.features, table, ("age", "site"))
    y = table["diagnosis"].to_numpy()
    est = FastSearchClassifier(n_confounds=design.n_confounds, k_grid=(5,),
                               inner_cv=2, random_state=0).fit(design.X, y)
    path = tmp_path_factory.mktemp("model") / "diagnosis.skops"
    meta = save_model(est, path, feature_names=cohort.features.columns, target="diagnosis",
                      X=design.X, y=y, confounds=("age", "site"),
                      confound_categories=design.categories,
                      extra={"balanced_accuracy": np.float64(0.9)})
    return path, est, design.X, y, meta


def test_round_trip(saved, cohort):
    path, est, X, y, meta = saved
    model, loaded = load_model(path)
    assert loaded == json.loads(path.with_suffix(".json").read_text()) == meta
    assert loaded["training_data_sha256"] == data_hash(X, y) != data_hash(X, y[::-1])
    assert loaded["model_sha256"] == file_hash(path)
    assert loaded["classes"] == ["control", "patient"] and loaded["target"] == "diagnosis"
    assert zipfile.is_zipfile(path)  # a skops archive, not a pickle
    shuffled = cohort.features[cohort.features.columns[::-1]]  # column order does not matter
    out = predict_table(model, loaded, shuffled, cohort.participants)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), est.predict(X))
    np.testing.assert_allclose(out["proba_patient"].to_numpy(), est.predict_proba(X)[:, 1])


def test_harmonized_model_scores_new_site_from_its_own_features(cohort, tmp_path):
    table = cohort.participants.set_index("participant_id")
    train = table.index[table["site"] != "site4"]
    design = design_matrix(cohort.features.loc[train], table, (), protect=("age",))
    y, sites = table.loc[train, "diagnosis"].to_numpy(), table.loc[train, "site"].to_numpy()
    est = FastSearchClassifier(n_protect=design.n_protect, harmonize="combat", k_grid=(5,),
                               inner_cv=2, random_state=0).fit(design.X, y, groups=sites)
    path = tmp_path / "dx.skops"
    save_model(est, path, feature_names=cohort.features.columns, target="diagnosis",
               X=design.X, y=y, protect=("age",), confound_categories=design.categories,
               sites=sites)
    model, meta = load_model(path)
    assert meta["harmonize"] == "combat" and meta["training_sites"] == ["site1", "site2",
                                                                         "site3"]
    new = table.index[table["site"] == "site4"]
    out = predict_table(model, meta, cohort.features.loc[new], cohort.participants,
                        site_column="site")
    assert not out["site_seen_in_training"].any()
    assert (out["prediction"] == table.loc[new, "diagnosis"]).mean() > 0.8
    anonymous = predict_table(model, meta, cohort.features.loc[new], cohort.participants)
    assert (anonymous["site"] == "new site").all()  # no site column: one new site
    np.testing.assert_allclose(anonymous["proba_patient"], out["proba_patient"])


def test_mismatched_features_and_version(saved, cohort, monkeypatch):
    path, *_ = saved
    model, meta = load_model(path)
    with pytest.raises(ValueError, match="features do not match the saved model"):
        predict_table(model, meta, cohort.features.iloc[:, 1:], cohort.participants)
    with pytest.raises(ValueError, match="uses participant covariates"):
        predict_table(model, meta, cohort.features)
    with pytest.raises(ValueError, match="lacks rows for 2 participants"):
        predict_table(model, meta, cohort.features, cohort.participants.iloc[2:])
    monkeypatch.setattr(persistence, "__version__", "9.9.9")
    with pytest.raises(InputDataError,
                       match="was saved with msica_version='.*' but this is '9.9.9'"):
        load_model(path)
    assert load_model(path, allow_version_mismatch=True)[1]["target"] == "diagnosis"


def test_tampered_model_file_is_refused(saved, tmp_path):
    path, *_ = saved
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes() + b"\0")
    copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(InputDataError, match="does not match the SHA-256"):
        load_model(copy)


def _sidecar_for(path, **extra):
    """A sidecar an attacker would forge: current versions and the file's own SHA-256."""
    from pipeline import __version__

    path.with_suffix(".json").write_text(json.dumps({
        "target": "diagnosis", "feature_names": [], "msica_version": __version__,
        "sklearn_version": persistence.sklearn.__version__,
        "skops_version": persistence._skops_version(), "model_sha256": file_hash(path),
        **extra}))


class _Payload:
    """Unpickling this creates ``marker``: what a malicious pickle/joblib model would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_malicious_pickle_model_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "desc-diagnosis_model.skops"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    _sidecar_for(evil)
    with pytest.raises(InputDataError, match="not a msica model file.*pickle"):
        load_model(evil)
    assert not marker.exists()
    pickle.loads(evil.read_bytes())  # the payload is real: unpickling creates the file
    assert marker.exists()


def _malicious_skops(path, marker):
    """A skops file whose loading would run ``touch marker`` (a ListNode calling check_call)."""
    schema = {"__class__": "check_call", "__module__": "subprocess", "__loader__": "ListNode",
              "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                           "content": json.dumps(arg), "is_json": True, "__id__": i}
                          for i, arg in enumerate(["touch", str(marker)])],
              "__id__": 99, "protocol": 2, "_skops_version": persistence._skops_version()}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))


@pytest.mark.skipif(sys.platform == "win32", reason="uses the touch command")
def test_malicious_skops_model_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "desc-diagnosis_model.skops"
    _malicious_skops(evil, marker)
    _sidecar_for(evil)
    with pytest.raises(InputDataError, match=r"holds types msica does not trust "
                                             r"\(subprocess.check_call\)"):
        load_model(evil)
    assert not marker.exists()
    skops.io.load(evil, trusted=["subprocess.check_call"])  # trusting it would run the payload
    assert marker.exists()


def test_save_load_errors(tmp_path):
    with pytest.raises(ValueError, match="'path' must end in '.skops'"):
        save_model(None, tmp_path / "m.joblib", feature_names=[], target="t", X=[[0.0]], y=[0])
    with pytest.raises(FileNotFoundError, match="saved model file"):
        load_model(tmp_path / "absent.skops")
    bad = tmp_path / "m.skops"
    bad.write_bytes(b"PK")
    bad.with_suffix(".json").write_text("{not json")
    with pytest.raises(InputDataError, match="is not valid JSON"):
        load_model(bad)
