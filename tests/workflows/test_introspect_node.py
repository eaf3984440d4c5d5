"""IntrospectTraining: MLP training with gradient spectra on a planted FNC group effect."""

from __future__ import annotations

import contextlib

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
    with contextlib.chdir(cwd):  # the interface writes to the working directory
        return node.run().outputs


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


def test_meta_is_the_pipeline_run(tmp_path, diagnosis_run):
    """The node reads its inputs, calls introspect_target once and writes what it returns."""
    from pipeline.introspect.target import introspect_target
    from workflows.bids.participants import read_participants

    features, pfile, _ = _write_inputs(tmp_path)
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


def test_group_builder_schedules_introspection_by_the_device_policy(tmp_path, monkeypatch):
    import torch

    from workflows.group.base import init_group_wf

    features, pfile, _ = _write_inputs(tmp_path)
    qc = tmp_path / "sub-01_task-rest_desc-denoise_qc.tsv"
    qc.write_text("t_r\n2.0\n")
    relmat = tmp_path / "sub-01_task-rest_desc-multiscale_relmat.tsv"
    relmat.write_text("node\n")

    def build(device):
        wf = init_group_wf(qc_files=[str(qc)], relmat_files=[str(relmat)], output_dir=tmp_path,
                           targets=["diagnosis"], introspect=True, device=device,
                           participants_file=pfile)
        return wf.get_node("introspect_diagnosis_wf.introspect_diagnosis")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    node = build("auto")
    assert node.inputs.device == "auto" and not node.is_gpu_node()
    with pytest.raises(ValueError, match="CUDA is not available"):
        build("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build("auto").is_gpu_node() and build("cuda").is_gpu_node()
