"""Tests for pipeline.classify.targets."""

import pandas as pd
import pytest

from pipeline.classify.targets import align_features, derive_target
from pipeline.exceptions import InputDataError


def test_diagnosis_all_participants(cohort):
    tgt = derive_target(cohort.participants, "diagnosis")
    assert len(tgt.y) == len(cohort.participants)
    assert tgt.classes == ("control", "patient") and tgt.is_binary and tgt.n_dropped == 0


def test_medication_patients_only(cohort):
    tgt = derive_target(cohort.participants, "medication")
    dx = cohort.participants.set_index("participant_id").loc[tgt.participant_ids, "diagnosis"]
    assert (dx == "patient").all()
    assert tgt.classes == ("medA", "medB")
    assert tgt.n_dropped == (cohort.participants["diagnosis"] == "control").sum()


def test_response_multiclass(cohort):
    tgt = derive_target(cohort.participants, "response")
    assert tgt.classes == ("good", "none", "partial") and not tgt.is_binary


def test_patients_only_drops_controls_even_with_values():
    p = pd.DataFrame({"participant_id": [f"s{i}" for i in range(6)],
                      "diagnosis": ["HC", "patient", "patient", "HC", "patient", "patient"],
                      "medication": ["0", "1", "0", "1", "1", "0"]})
    assert derive_target(p, "medication").y.index.tolist() == ["s1", "s2", "s4", "s5"]
    assert len(derive_target(p, "medication", patients_only=False).y) == 6


def test_numeric_labels_as_strings():
    p = pd.DataFrame({"participant_id": list("abcd"), "dx": [1.0, 2.0, 1.0, 2.0]})
    assert derive_target(p, "dx").classes == ("1", "2")


def test_errors(cohort):
    with pytest.raises(ValueError, match="'target' must be a column"):
        derive_target(cohort.participants, "iq")
    with pytest.raises(ValueError, match="defined for patients only"):
        derive_target(cohort.participants.drop(columns="diagnosis"), "medication")
    one = cohort.participants.assign(diagnosis="patient")
    with pytest.raises(InputDataError, match="at least two classes"):
        derive_target(one, "diagnosis")
    dup = pd.concat([cohort.participants.iloc[:3], cohort.participants.iloc[:1]])
    with pytest.raises(InputDataError, match="one row per participant_id"):
        derive_target(dup, "diagnosis")
    with pytest.raises(TypeError, match="'target' must be of type str"):
        derive_target(cohort.participants, 3)


def test_align_features(cohort):
    tgt = derive_target(cohort.participants, "medication")
    aligned = align_features(cohort.features, tgt)
    assert list(aligned.index) == list(tgt.participant_ids)
    with pytest.raises(InputDataError, match="have no feature row"):
        align_features(cohort.features.iloc[5:], tgt)


def test_check_participants_columns_before_group_work(cohort):
    from pipeline.classify.targets import check_participants_columns
    from pipeline.exceptions import InputDataError

    table = cohort.participants
    check_participants_columns(table, targets=["diagnosis"], site_column="site",
                               covariates=["age"])
    with pytest.raises(InputDataError, match=r"^/data/participants.tsv has no column for "
                                             r"--targets dx, --site-column scanner, "
                                             r"--harmonize-protect iq \(its columns: "):
        check_participants_columns(table, targets=["diagnosis", "dx"], site_column="scanner",
                                   covariates=["age", "iq"], source="/data/participants.tsv")
