"""Tests for pipeline.confounds against nilearn's load_confounds_strategy on fMRIPrep tables."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from nilearn.interfaces.fmriprep import load_confounds_strategy

import pipeline.confounds
from pipeline.confounds import (
    MOTION_PARAMETERS,
    PRESETS,
    expand_confounds,
    missing_columns,
    read_sidecar,
    strategy_confounds,
)
from pipeline.exceptions import InputDataError


@pytest.mark.parametrize("strategy", PRESETS)
def test_presets_equal_nilearn_on_fmriprep_table(fmriprep_run, strategy):
    params = {"fd_threshold": 0.5, "std_dvars_threshold": 1.5} if strategy == "scrubbing" else {}
    expected, expected_mask = load_confounds_strategy(str(fmriprep_run.bold),
                                                      denoise_strategy=strategy, **params)
    table, derived = expand_confounds(fmriprep_run.confounds)
    got = strategy_confounds(table, strategy, meta=read_sidecar(fmriprep_run.confounds_tsv),
                             **params)
    assert derived == []
    pd.testing.assert_frame_equal(got.regressors, expected)
    if expected_mask is None:
        assert got.sample_mask is None
    else:
        np.testing.assert_array_equal(got.sample_mask, expected_mask)


def test_expansions_equal_fmriprep_columns(fmriprep_run):
    """Derived from the base columns alone, the expansions equal those fMRIPrep wrote."""
    bases = list(MOTION_PARAMETERS) + ["csf", "white_matter", "global_signal"]
    table, derived = expand_confounds(fmriprep_run.confounds[bases])
    assert len(derived) == 3 * len(bases)
    pd.testing.assert_frame_equal(table[derived], fmriprep_run.confounds[derived])
    assert np.isnan(table.loc[0, "trans_x_derivative1"])


def test_existing_columns_never_replaced():
    table = pd.DataFrame({"trans_x": [0.0, 1.0, 3.0], "trans_x_power2": [9.0, 9.0, 9.0]})
    out, derived = expand_confounds(table)
    assert "trans_x_power2" not in derived
    assert out["trans_x_power2"].tolist() == [9.0, 9.0, 9.0]
    same, none = expand_confounds(pd.DataFrame({"a_comp_cor_00": [1.0, 2.0]}))
    assert none == [] and list(same.columns) == ["a_comp_cor_00"]


def test_missing_columns_per_strategy(fmriprep_run):
    meta = read_sidecar(fmriprep_run.confounds_tsv)
    assert all(missing_columns(fmriprep_run.confounds, s, meta) == [] for s in PRESETS)
    assert missing_columns(fmriprep_run.confounds, "compcor", None) == [
        "a_comp_cor_* (with Mask 'combined' in the JSON sidecar)"]
    motion_only = fmriprep_run.confounds[list(MOTION_PARAMETERS)]
    missing = missing_columns(motion_only, "simple", None)
    assert len(missing) == 20 and missing[-2:] == ["csf", "white_matter"]
    assert missing[:3] == ["rot_x_derivative1", "rot_x_derivative1_power2", "rot_x_power2"]


def test_missing_columns_error_names_source_and_support(fmriprep_run):
    table = expand_confounds(fmriprep_run.confounds.drop(columns=["std_dvars"]))[0]
    with pytest.raises(InputDataError, match=r"^run.tsv lacks 1 column\(s\) that --denoise-strategy "
                                             r"scrubbing needs: std_dvars\. It supports: simple, "
                                             r"none;"):
        strategy_confounds(table, "scrubbing", meta=None, source="run.tsv")


def test_sidecar_absent_or_invalid(tmp_path):
    assert read_sidecar(tmp_path / "c.tsv") is None
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(InputDataError, match=r"c.json is not valid JSON .*fix or delete it"):
        read_sidecar(tmp_path / "c.tsv")


def test_doctests():
    result = doctest.testmod(pipeline.confounds)
    assert result.attempted > 0 and result.failed == 0
