"""Both levels end to end in template mode on a small simulated dataset (what `msica demo` runs)."""

import contextlib
import json
from pathlib import Path

import nibabel as nb
import pandas as pd
import pytest

from pipeline.fnc.names import is_edge
from workflows.exit_codes import ExitCode
from workflows.cli import run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def processed(tmp_path_factory, simulated_levels) -> tuple[Path, Path, Path]:
    return simulated_levels(tmp_path_factory.mktemp("e2e"), participant=[], templates=True,
                            group=["--targets", "diagnosis", "--n-permutations", "3",
                                   "--introspect"],
                            n_subjects=12, n_volumes=80, grid_mm=10.0, seed=1)


def test_participant_derivatives(processed):
    bids, out, _ = processed
    func = out / "sub-01" / "func"
    maps = sorted(func.glob("*_scale-*_desc-ica_components.nii.gz"))
    assert [m.name.split("_scale-")[1].split("_")[0] for m in maps] == ["10", "4"]
    assert nb.load(maps[1]).shape[3] == 4
    relmat = pd.read_csv(next(func.glob("*_desc-multiscale_relmat.tsv")), sep="\t", index_col=0)
    assert relmat.shape == (14, 14)
    sidecar = json.loads(next(func.glob("*scale-4_desc-ica_components.json")).read_text())
    assert sidecar["Method"] == "moo-icar" and sidecar["Sources"][0].startswith("bids:")
    assert "Participant networks were estimated at 2 scale(s)" in (
        out / "logs" / "CITATION.md").read_text()


def test_group_derivatives(processed):
    _, out, _ = processed
    group = out / "group"
    features = pd.read_csv(group / "desc-fnc_features.tsv", sep="\t", index_col=0)
    assert len(features) == 12 and sum("__" in c for c in features.columns) == 14 * 13 // 2
    amplitude = pd.read_csv(group / "desc-timecourse_features.tsv", sep="\t", index_col=0)
    assert list(amplitude.index) == list(features.index) and "diagnosis" in amplitude.columns
    for kind in ("amplitude", "falff", "dynamic_range"):
        columns = [c for c in amplitude.columns if c.startswith(f"{kind}_s")]
        assert len(columns) == 14 and columns[0].startswith(f"{kind}_s4-")
        assert not any(is_edge(c) for c in columns)
        assert (amplitude[columns] > 0).all().all()
    metrics = json.loads((group / "desc-diagnosis_metrics.json").read_text())
    assert metrics["NumberOfPermutations"] == 3 and 0 < metrics["PermutationPValue"] <= 1
    for name in ("desc-diagnosis_model.skops", "desc-diagnosisbiomarkers_features.tsv",
                 "desc-diagnosiscalibration_metrics.tsv", "desc-dfncstates_relmat.tsv",
                 "figures/desc-diagnosisbiomarkers_features.svg",
                 "desc-diagnosisintrospect_spectrum.tsv",
                 "figures/desc-diagnosisintrospect_spectrum.svg"):
        assert (group / name).is_file(), name
    diagnosis = pd.read_csv(group / "desc-diagnosis_metrics.tsv", sep="\t", index_col="metric")
    assert 0 <= diagnosis.loc["balanced_accuracy", "estimate"] <= 1
    assert diagnosis.loc["permutation_p_value", "estimate"] == metrics["PermutationPValue"]
    assert 0 <= diagnosis.loc["balanced_accuracy", "baseline_estimate"] <= 1
    from pipeline.classify.persistence import load_model

    model, model_meta = load_model(group / "desc-diagnosis_model.skops")  # its own sidecar
    assert model_meta["target"] == "diagnosis" and len(model_meta["model_sha256"]) == 64
    per_site = pd.read_csv(group / "desc-diagnosispersite_metrics.tsv", sep="\t")
    assert list(per_site.columns[:2]) == ["site", "n"]


def test_every_tsv_column_is_named(processed):
    """BIDS tabular files: a header row naming every column (no unnamed pandas index)."""
    _, out, _ = processed
    tables = sorted(out.rglob("*.tsv"))
    assert len(tables) > 20
    for path in tables:
        header = path.read_text().split("\n", 1)[0].split("\t")
        assert all(header), f"{path.relative_to(out)} has an unnamed column: {header[:3]}"


def test_deleted_derivative_is_rewritten_on_rerun(processed):
    bids, out, work = processed
    table = out / "group" / "desc-fnc_features.tsv"
    table.unlink()
    assert run([str(bids), str(out), "group", "-w", str(work)]) == ExitCode.OK
    assert table.is_file()


def test_classifier_on_connectivity_kinds_of_network_time_courses(processed, tmp_path):
    """The group classifier node on tangent and correlation kinds of the time courses."""
    from pipeline.classify.persistence import load_model
    from workflows.bids.derivatives import collect_participant_outputs, derivatives_layout
    from workflows.interfaces.classify import ClassifyTarget

    bids, out, _ = processed
    layout = derivatives_layout(out)
    node = ClassifyTarget(
        participants_file=str(bids / "participants.tsv"), target="diagnosis",
        connectivity=["tangent", "correlation"], n_permutations=0, random_state=0,
        timeseries_files=collect_participant_outputs(layout, suffix="timeseries", desc="ica",
                                                     extension=".tsv"),
        relmat_files=collect_participant_outputs(layout, suffix="relmat", desc="multiscale",
                                                 extension=".tsv"))
    with contextlib.chdir(tmp_path):  # the interface writes to the working directory
        result = node.run()
    meta = result.outputs.meta
    assert set(meta["Connectivity"]) == {"tangent", "correlation"}
    assert meta["ChanceTested"] is False and meta["PermutationPValue"] is None
    assert meta["ModelMenu"] == ["logistic_l2"] and meta["HarmonizationOption"] == "auto"
    settings = meta["FinalModelSettings"]  # the defaults, "auto" ones decided on the sites
    assert (settings["combine"], settings["calibration"]) == ("mean", "none")
    assert settings["harmonize"] in {"none", "combat"}
    assert {fold["combine"] for fold in meta["ChosenPerFold"]} == {"mean"}
    metrics = pd.read_csv(result.outputs.metrics_file, sep="\t", index_col="metric")
    assert metrics.loc["permutation_p_value", "note"].startswith("chance has not been tested")
    biomarkers = pd.read_csv(result.outputs.biomarkers_file, sep="\t")
    assert set(biomarkers["kind"]) <= {"tangent", "correlation"}
    model, model_meta = load_model(result.outputs.model_file)
    assert model_meta["kinds"] == ["tangent", "correlation"]
    assert len(model_meta["feature_names"]) == 14 * 15 // 2  # covariances of 14 networks


_CLASSIFY_IN_MULTIPROC = """
import sys
from nipype.pipeline import engine as pe
from workflows.interfaces.classify import ClassifyTarget

features, participants, base_dir = sys.argv[1:]
node = pe.Node(ClassifyTarget(features_file=features, participants_file=participants,
                              target="diagnosis", n_permutations=2, n_jobs=2), name="classify")
workflow = pe.Workflow(name="classify_wf", base_dir=base_dir)
workflow.add_nodes([node])
workflow.run(plugin="MultiProc", plugin_args={"n_procs": 2})
"""


def test_parallel_classifier_node_lets_its_nipype_worker_exit(processed, tmp_path, run_python):
    """A classifier node that ran joblib in 2 processes must not hold its Nipype worker: loky's
    idle workers (kept 300 s) made every group level with --nprocs > 1 wait five minutes at
    its end (``msica demo`` took 7 minutes instead of 2)."""
    bids, out, _ = processed
    run_python(["-c", _CLASSIFY_IN_MULTIPROC, str(out / "group" / "desc-fnc_features.tsv"),
                str(bids / "participants.tsv"), str(tmp_path)],
               hang="the Nipype run of a parallel classifier node did not end within 180 s")
    assert (tmp_path / "classify_wf" / "classify" / "metrics.tsv").is_file()
