"""IntrospectTraining: MLP training with gradient spectra on a planted FNC group effect."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from workflows.interfaces.introspect import IntrospectTraining

RANDOM_STATE = 42
N_PER_GROUP = 20
N_EDGES = 30
N_SIGNAL = 6


def _write_inputs(root):
    """40 participants x 30 edges; the first 6 edges are shifted by +1.5 SD in patients."""
    rng = np.random.default_rng(RANDOM_STATE)
    n = 2 * N_PER_GROUP
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    diagnosis = np.array(["control", "patient"] * N_PER_GROUP)
    X = rng.standard_normal((n, N_EDGES))
    X[diagnosis == "patient", :N_SIGNAL] += 1.5
    cols = [f"s4_n{i}__s4_n{i + 1}" for i in range(N_EDGES)]
    table = pd.DataFrame(X, index=pd.Index(ids, name="participant_id"), columns=cols)
    table["age"] = rng.integers(20, 60, n)  # a covariate column: must be ignored
    features = root / "features.tsv"
    table.to_csv(features, sep="\t")
    medication = np.where(diagnosis == "patient", np.repeat(["yes", "no"], N_PER_GROUP), "n/a")
    participants = pd.DataFrame({"participant_id": ids, "diagnosis": diagnosis,
                                 "medication": medication, "age": table["age"].to_numpy()})
    pfile = root / "participants.tsv"
    participants.to_csv(pfile, sep="\t", index=False)
    return features, pfile, participants


def _run(tmp_path, name, **kwargs):
    features, pfile, _ = _write_inputs(tmp_path)
    cwd = tmp_path / name
    cwd.mkdir()
    node = IntrospectTraining(features_file=str(features), participants_file=str(pfile),
                              epochs=8, batch_size=16, hidden=[8], lr=0.02, **kwargs)
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        res = node.run()
    finally:
        os.chdir(old)
    return res.outputs


@pytest.fixture(scope="module")
def diagnosis_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("introspect"), "a", target="diagnosis")


def test_spectra_table_groups_and_rank_bounds(diagnosis_run):
    out = diagnosis_run
    spectra = pd.read_csv(out.spectra_file, sep="\t")
    summary = pd.read_csv(out.summary_file, sep="\t")
    assert list(spectra.columns) == ["step", "epoch", "layer", "parameter", "group", "index",
                                     "singular_value"]
    assert set(spectra["group"]) == {"all", "control", "patient"}
    # 40 participants, batches of 16 -> 3 steps per epoch, 8 epochs, all recorded
    assert sorted(spectra["step"].unique()) == list(range(24))
    assert (spectra["singular_value"] >= 0).all()
    keys = ["step", "layer", "parameter", "group"]
    counts = spectra.groupby(keys).size().rename("n_values").reset_index()
    merged = counts.merge(summary, on=keys, validate="one_to_one")
    assert len(merged) == len(summary)
    # a group's share of the batch gradient has rank <= its samples in the batch
    assert (merged["n_values"] <= merged["rank_bound"]).all()
    assert (merged["rank_bound"] <= merged["n_samples"]).all()
    # group sample counts add up to the batch, whose size is 16 except the last (8)
    per_step = summary[summary["group"] != "all"].groupby(["step", "layer"])["n_samples"].sum()
    whole = summary[summary["group"] == "all"].set_index(["step", "layer"])["n_samples"]
    pd.testing.assert_series_equal(per_step.sort_index(), whole.sort_index(), check_names=False)
    assert set(whole.unique()) == {16, 8}
    # each recorded spectrum is sorted descending
    for _, part in spectra.groupby(keys):
        assert np.all(np.diff(part.sort_values("index")["singular_value"]) <= 1e-12)


def test_meta_and_planted_effect_learned(diagnosis_run):
    meta = diagnosis_run.meta
    assert meta["Target"] == "diagnosis"
    assert meta["Device"] == "cpu"
    assert meta["NumberOfParticipants"] == 2 * N_PER_GROUP
    assert meta["NumberOfFeatures"] == N_EDGES  # covariate column 'age' left out
    assert meta["Architecture"]["Hidden"] == [8]
    assert meta["Epochs"] == 8 and meta["BatchSize"] == 16 and meta["RandomSeed"] == 0
    # the planted +1.5 SD shift on 6 edges is learnable on the training set
    assert meta["FinalTrainingAccuracy"] >= 0.85
    assert 0 < meta["FinalTrainingLoss"] < np.log(2)


def test_figure_written(diagnosis_run):
    from pathlib import Path

    svg = Path(diagnosis_run.figure_file)
    assert svg.suffix == ".svg" and svg.stat().st_size > 0
    assert "<svg" in svg.read_text()[:2000]


def test_same_seed_identical_and_gpu_fallback(tmp_path, diagnosis_run, caplog, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ref = pd.read_csv(diagnosis_run.spectra_file, sep="\t")
    same = _run(tmp_path, "b", target="diagnosis")
    pd.testing.assert_frame_equal(pd.read_csv(same.spectra_file, sep="\t"), ref)
    with caplog.at_level(logging.INFO, logger="msica.workflows"):
        gpu = _run(tmp_path, "c", target="diagnosis", use_gpu=True)
    assert gpu.meta["Device"] == "cpu"
    assert "no CUDA device" in caplog.text
    pd.testing.assert_frame_equal(pd.read_csv(gpu.spectra_file, sep="\t"), ref)
    other = _run(tmp_path, "d", target="diagnosis", random_state=1)
    assert not np.allclose(pd.read_csv(other.spectra_file, sep="\t")["singular_value"][:50],
                           ref["singular_value"][:50])


def test_use_gpu_marks_gpu_node():
    from nipype.pipeline import engine as pe

    node = pe.Node(IntrospectTraining(target="diagnosis", use_gpu=True), name="introspect")
    assert node.is_gpu_node()
    assert not pe.Node(IntrospectTraining(target="diagnosis"), name="cpu").is_gpu_node()


def test_patient_only_target_drops_controls(tmp_path):
    out = _run(tmp_path, "m", target="medication", group_column="medication")
    assert out.meta["NumberOfParticipants"] == N_PER_GROUP
    summary = pd.read_csv(out.summary_file, sep="\t")
    assert set(summary["group"]) == {"all", "no", "yes"}


def test_missing_target_column_raises(tmp_path):
    with pytest.raises(ValueError, match="'target' must be a column of the participants table"):
        _run(tmp_path, "x", target="response")


def test_missing_group_column_raises(tmp_path):
    with pytest.raises(ValueError, match="'group_column' must be a column"):
        _run(tmp_path, "y", target="diagnosis", group_column="site")


def test_table_without_edges_raises(tmp_path):
    _, pfile, participants = _write_inputs(tmp_path)
    bad = tmp_path / "bad.tsv"
    participants.set_index("participant_id")[["age"]].to_csv(bad, sep="\t")
    node = IntrospectTraining(features_file=str(bad), participants_file=str(pfile),
                              target="diagnosis")
    with pytest.raises(ValueError, match="must have edge columns"):
        node._run_interface(type("R", (), {"cwd": str(tmp_path)})())
