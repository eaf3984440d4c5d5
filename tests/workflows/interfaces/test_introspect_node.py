"""IntrospectTraining: MLP training with gradient spectra on a planted FNC group effect."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

from workflows.interfaces.introspect import IntrospectTraining

N_PER_GROUP = 20
N_EDGES = 30
N_SIGNAL = 6


@pytest.fixture(scope="module")
def inputs(planted_fnc_cohort, tmp_path_factory):
    """``(features.tsv, participants.tsv)`` of 40 participants x 30 edges, 6 with a group effect."""
    table, participants = planted_fnc_cohort(N_PER_GROUP, N_EDGES, N_SIGNAL)
    root = tmp_path_factory.mktemp("introspect_inputs")
    features, pfile = root / "features.tsv", root / "participants.tsv"
    table.to_csv(features, sep="\t")  # its 'age' column: a covariate that must be ignored
    participants.to_csv(pfile, sep="\t", index=False, na_rep="n/a")
    return features, pfile


@pytest.fixture(scope="module")
def diagnosis_run(inputs, tmp_path_factory):
    features, pfile = inputs
    node = IntrospectTraining(features_file=str(features), participants_file=str(pfile),
                              target="diagnosis", epochs=8, batch_size=16, hidden=[8], lr=0.02)
    with contextlib.chdir(tmp_path_factory.mktemp("introspect")):  # the node writes there
        return node.run().outputs


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


def test_meta_is_the_pipeline_run(inputs, diagnosis_run):
    """The node reads its inputs, calls introspect_target once and writes what it returns."""
    from pipeline.introspect.target import introspect_target
    from workflows.bids.participants import read_participants

    features, pfile = inputs
    run = introspect_target(pd.read_csv(features, sep="\t", index_col=0),
                            read_participants(pfile), "diagnosis", epochs=8, batch_size=16,
                            hidden=[8], lr=0.02)
    assert diagnosis_run.meta == run.metadata
    pd.testing.assert_frame_equal(pd.read_csv(diagnosis_run.spectra_file, sep="\t"),
                                  run.result.spectra, check_dtype=False)


def test_figure_written(diagnosis_run):
    from pathlib import Path

    svg = Path(diagnosis_run.figure_file)
    assert svg.suffix == ".svg" and svg.stat().st_size > 0
    assert "<svg" in svg.read_text()[:2000]


def test_use_gpu_marks_gpu_node():
    from nipype.pipeline import engine as pe

    node = pe.Node(IntrospectTraining(target="diagnosis", use_gpu=True), name="introspect")
    assert node.is_gpu_node()
    assert not pe.Node(IntrospectTraining(target="diagnosis"), name="cpu").is_gpu_node()


def test_group_builder_schedules_introspection_by_the_device_policy(inputs, tmp_path,
                                                                    monkeypatch):
    import torch

    from workflows.group.base import ClassifierOptions, init_group_wf

    _, pfile = inputs
    qc = tmp_path / "sub-01_task-rest_desc-denoise_qc.tsv"
    qc.write_text("t_r\n2.0\n")
    relmat = tmp_path / "sub-01_task-rest_desc-multiscale_relmat.tsv"
    relmat.write_text("node\n")

    def build(device):
        wf = init_group_wf(qc_files=[str(qc)], relmat_files=[str(relmat)], output_dir=tmp_path,
                           classifiers=ClassifierOptions(targets=("diagnosis",), introspect=True),
                           device=device,
                           participants_file=pfile)
        return wf.get_node("introspect_diagnosis_wf.introspect_diagnosis")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    node = build("auto")
    assert node.inputs.device == "auto" and not node.is_gpu_node()
    with pytest.raises(ValueError, match="CUDA is not available"):
        build("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build("auto").is_gpu_node() and build("cuda").is_gpu_node()
