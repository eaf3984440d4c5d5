"""introspect_target: the group level's introspection set-up, without Nipype."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from pipeline.exceptions import InputDataError
from pipeline.introspect.target import (
    introspect_target,
    participant_groups,
    standardize_features,
)

RANDOM_STATE = 42
N_PER_GROUP = 20
N_EDGES = 30
N_SIGNAL = 6
FAST = dict(epochs=8, batch_size=16, hidden=[8], lr=0.02, device="cpu")


@pytest.fixture(scope="module")
def cohort(planted_fnc_cohort):
    """40 participants x 30 edges; the first 6 edges are shifted by +1.5 SD in patients."""
    return planted_fnc_cohort(N_PER_GROUP, N_EDGES, N_SIGNAL)


@pytest.fixture(scope="module")
def diagnosis_run(cohort):
    return introspect_target(*cohort, "diagnosis", **FAST)


def test_standardize_features_equals_sklearn_and_centres_constant_columns(caplog):
    rng = np.random.default_rng(RANDOM_STATE)
    table = pd.DataFrame(rng.normal(3.0, 2.0, (12, 4)), columns=list("abcd"))
    table["flat"] = 7.0
    with caplog.at_level(logging.INFO, logger="msica.introspect"):
        X = standardize_features(table)
    np.testing.assert_allclose(X[:, :4], StandardScaler().fit_transform(table[list("abcd")]),
                               atol=1e-12)
    assert np.all(X[:, 4] == 0)
    assert "1 constant feature column(s) centred but not scaled: ['flat']" in caplog.text


def test_participant_groups_missing_values_are_a_group(cohort, caplog):
    _, participants = cohort
    with caplog.at_level(logging.WARNING, logger="msica.introspect"):
        groups = participant_groups(participants, ["sub-02", "sub-01", "sub-04"], "medication")
    assert groups.tolist() == ["yes", "n/a", "yes"]
    assert "1 participant(s) without 'medication' are grouped as 'n/a'" in caplog.text
    with pytest.raises(ValueError, match=r"'group_column' must be a column .* Got 'scanner'"):
        participant_groups(participants, ["sub-01"], "scanner")


def test_metadata_and_planted_effect_learned(diagnosis_run):
    meta = diagnosis_run.metadata
    assert meta["Target"] == "diagnosis" and meta["Classes"] == ["control", "patient"]
    assert meta["Device"] == "cpu" == diagnosis_run.result.device
    assert meta["NumberOfParticipants"] == 2 * N_PER_GROUP
    assert meta["NumberOfFeatures"] == N_EDGES  # covariate column 'age' left out
    assert meta["Groups"] == ["control", "patient"] and meta["GroupColumn"] == "diagnosis"
    assert meta["Architecture"] == {"Model": "FNCMLP", "InputFeatures": N_EDGES, "Hidden": [8],
                                    "Activation": "relu", "Outputs": 2}
    assert meta["Epochs"] == 8 and meta["BatchSize"] == 16 and meta["RandomSeed"] == 0
    # the planted +1.5 SD shift on 6 edges is learnable on the training set
    assert meta["FinalTrainingAccuracy"] >= 0.85
    assert 0 < meta["FinalTrainingLoss"] < np.log(2)
    assert meta["FinalTrainingLoss"] == diagnosis_run.result.history["loss"].iloc[-1]
    assert set(diagnosis_run.result.summary["group"]) == {"all", "control", "patient"}


def test_seed_split_reproducible(cohort, diagnosis_run):
    from pipeline._validation import derive_seeds
    from pipeline.introspect import FNCMLP, train_with_introspection
    from pipeline.introspect.target import standardize_features as zscore

    features, participants = cohort
    again = introspect_target(features, participants, "diagnosis", **FAST)
    pd.testing.assert_frame_equal(again.result.spectra, diagnosis_run.result.spectra)
    # the same as building the model and the training run by hand from the two sub-seeds
    model_seed, train_seed = (int(s) for s in derive_seeds(0, 2))
    X = zscore(features.drop(columns="age"))
    y = participants["diagnosis"].to_numpy()
    by_hand = train_with_introspection(
        FNCMLP(N_EDGES, hidden=(8,), random_state=model_seed), X, y, y, epochs=8,
        batch_size=16, lr=0.02, device="cpu", random_state=train_seed)
    pd.testing.assert_frame_equal(by_hand.spectra, diagnosis_run.result.spectra)
    other = introspect_target(features, participants, "diagnosis", random_state=1, **FAST)
    assert not np.allclose(other.result.spectra["singular_value"][:50],
                           diagnosis_run.result.spectra["singular_value"][:50])


def test_patient_only_target_drops_controls(cohort):
    run = introspect_target(*cohort, "medication", group_column="site", **FAST)
    assert run.metadata["NumberOfParticipants"] == N_PER_GROUP
    assert run.metadata["Classes"] == ["no", "yes"]
    assert set(run.result.summary["group"]) == {"all", "b"}  # patients are the even rows


def test_errors(cohort):
    features, participants = cohort
    with pytest.raises(ValueError, match="'target' must be a column of the participants table"):
        introspect_target(features, participants, "response", **FAST)
    with pytest.raises(ValueError, match="'group_column' must be a column"):
        introspect_target(features, participants, "diagnosis", group_column="scanner", **FAST)
    with pytest.raises(ValueError, match=r"'features' must have edge columns \(names containing "
                                         r"'__'\); got \['age'\]"):
        introspect_target(features[["age"]], participants, "diagnosis", **FAST)
    with pytest.raises(InputDataError, match="2 participants of target 'diagnosis' have no "
                                             "feature row"):
        introspect_target(features.iloc[2:], participants, "diagnosis", **FAST)


def test_device_policy_is_resolve_device(cohort, monkeypatch, caplog):
    """'auto' falls back to the CPU with one log line; an explicit 'cuda' without a GPU raises."""
    from pipeline._validation import _log_cpu_fallback

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _log_cpu_fallback.cache_clear()
    fast = {**FAST, "epochs": 1}
    with caplog.at_level(logging.INFO, logger="msica.pipeline"):
        run = introspect_target(*cohort, "diagnosis", **{**fast, "device": "auto"})
    assert run.metadata["Device"] == "cpu"
    assert caplog.text.count("device='auto': no CUDA device available, computing on CPU.") == 1
    with pytest.raises(ValueError, match="CUDA is not available. Use device='cpu' or 'auto'"):
        introspect_target(*cohort, "diagnosis", **{**fast, "device": "cuda"})
