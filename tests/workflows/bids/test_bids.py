"""Tests for workflows.bids: layout, selection and queries; naming, atomic writes, provenance."""

from __future__ import annotations

import doctest
import json
import multiprocessing
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import workflows.bids.atomic
import workflows.bids.layout
import workflows.bids.naming
import workflows.bids.provenance
import workflows.bids.sink
from pipeline import __version__
from pipeline.exceptions import InputDataError
from workflows.bids.sink import DerivativesDataSink, init_sinks_wf
from workflows.bids.atomic import atomic_write
from workflows.bids.naming import build_derivative_path
from workflows.bids.layout import (
    build_layout,
    collect_participants,
    collect_runs,
    get_repetition_time,
    load_bids_filter_file,
)
from workflows.bids.provenance import source_uri, write_dataset_description

MNI = "MNI152NLin2009cAsym"


@pytest.mark.parametrize("module", [workflows.bids.atomic, workflows.bids.layout,
                                    workflows.bids.naming, workflows.bids.provenance,
                                    workflows.bids.sink])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- layouts --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ds001(bids_examples, work_dir):
    """Raw ds001 with ds000001-fmriprep given as its derivatives."""
    return build_layout(bids_examples / "ds001", derivatives=bids_examples / "ds000001-fmriprep",
                        work_dir=work_dir)


@pytest.fixture(scope="module")
def fmriprep_root(bids_examples, work_dir):
    """ds000001-fmriprep opened as the root (a derivative dataset)."""
    return build_layout(bids_examples / "ds000001-fmriprep", work_dir=work_dir)


@pytest.fixture(scope="module")
def synthetic(bids_examples, work_dir):
    """synthetic: derivatives/fmriprep found by default; legacy file names."""
    return build_layout(bids_examples / "synthetic", work_dir=work_dir)


@pytest.fixture(scope="module")
def skeleton_layout(skeleton, work_dir):
    return build_layout(skeleton, work_dir=work_dir)


def test_build_layout_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"BIDS_DIR .*nowhere does not exist"):
        build_layout(tmp_path / "nowhere", work_dir=tmp_path)


def test_build_layout_not_bids(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(InputDataError, match=r"is not a BIDS dataset \(no dataset_description.json\); "
                                             "point BIDS_DIR at the dataset root"):
        build_layout(tmp_path / "data", work_dir=tmp_path)


def test_build_layout_bad_derivatives(bids_examples, tmp_path):
    with pytest.raises(FileNotFoundError, match="Derivatives folder .* does not exist"):
        build_layout(bids_examples / "ds001", derivatives=tmp_path / "none", work_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="is not a BIDS derivatives dataset"):
        build_layout(bids_examples / "ds001", derivatives=tmp_path / "empty", work_dir=tmp_path)


def test_build_layout_database_cached(skeleton, skeleton_layout, tmp_path, work_dir):
    db = tmp_path / "db_job1"
    first = build_layout(skeleton, work_dir=tmp_path, database_dir=db)
    assert any(db.iterdir()) and not (tmp_path / "bids_db").exists()
    again = build_layout(skeleton, work_dir=tmp_path, database_dir=db)
    assert sorted(again.get(return_type="file")) == sorted(first.get(return_type="file"))
    # without database_dir: one database per input set under work_dir/bids_db
    assert len(skeleton_layout.get(suffix="bold")) == len(first.get(suffix="bold"))
    assert any((work_dir / "bids_db").iterdir())


# --- participants -----------------------------------------------------------------------


def test_collect_participants_all_and_selected(ds001):
    assert collect_participants(ds001) == [f"{i:02d}" for i in range(1, 17)]
    assert collect_participants(ds001, ["sub-03", "01", "01"]) == ["01", "03"]
    assert collect_participants(ds001, "sub-16") == ["16"]


def test_collect_participants_unknown(ds001):
    with pytest.raises(FileNotFoundError,
                       match=r"Participant label\(s\) 99 not found in BIDS_DIR; available: 01, 02, "):
        collect_participants(ds001, ["01", "99"])


def test_collect_participants_none_found(tmp_path):
    (tmp_path / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    layout = build_layout(tmp_path, work_dir=tmp_path / "work")
    with pytest.raises(FileNotFoundError, match="No participants"):
        collect_participants(layout)


# --- runs -----------------------------------------------------------------------------------


def test_runs_ds001_with_derivatives(ds001, bids_examples):
    runs = collect_runs(ds001, "sub-10")
    assert [r["entities"]["run"] for r in runs] == [1, 2, 3]
    for r in runs:
        assert r["bold"].endswith(f"space-{MNI}_res-2_desc-preproc_bold.nii.gz")
        assert r["mask"].endswith(f"space-{MNI}_res-2_desc-brain_mask.nii.gz")
        assert r["confounds"].endswith("desc-confounds_timeseries.tsv")
        assert "smoothAROMA" not in r["bold"]
        assert r["t_r"] == 2.0
        # run-1 (derivatives) matched to the zero-padded run-01 of raw ds001
        run = r["entities"]["run"]
        assert Path(r["raw_bold"]).name == f"sub-10_task-balloonanalogrisktask_run-0{run}_bold.nii.gz"
        assert Path(r["raw_bold"]).parent.parent.parent.name == "ds001"
    assert runs[0]["entities"] == {"subject": "10", "session": None,
                                   "task": "balloonanalogrisktask", "run": 1, "space": MNI}


def test_tr_inherited_from_top_level_sidecar(ds001, bids_examples):
    raw = bids_examples / "ds001/sub-01/func/sub-01_task-balloonanalogrisktask_run-02_bold.nii.gz"
    assert not raw.with_name(raw.name.replace(".nii.gz", ".json")).exists()
    assert get_repetition_time(ds001, raw) == 2.0


def test_runs_raw_only_subject_has_no_preproc(ds001):
    with pytest.raises(FileNotFoundError,
                       match=r"No preprocessed BOLD found for sub-01\. Query: .*'desc': 'preproc'.* "
                             r"Found files: sub-01_task-balloonanalogrisktask_run-01_bold.nii.gz"):
        collect_runs(ds001, "01")


def test_runs_derivative_root(fmriprep_root):
    runs = collect_runs(fmriprep_root, "11", task="balloonanalogrisktask")
    assert len(runs) == 3
    assert all(r["raw_bold"] is None for r in runs)
    assert all(Path(r["confounds"]).stat().st_size == 0 for r in runs)  # 0-byte placeholders


def test_tr_missing_everywhere(fmriprep_root, bids_examples):
    aroma = next((bids_examples / "ds000001-fmriprep/sub-10/func").glob("*smoothAROMAnonaggr_bold.nii.gz"))
    with pytest.raises(InputDataError, match="no RepetitionTime in its JSON sidecar and its NIfTI "
                                             "header cannot be read"):
        get_repetition_time(fmriprep_root, aroma)


def test_runs_sessions_without_run_entity(skeleton_layout):
    runs = collect_runs(skeleton_layout, "01", task="rest")
    assert [r["entities"]["session"] for r in runs] == ["retest", "test"]
    assert all(r["entities"]["run"] is None for r in runs)
    retest = collect_runs(skeleton_layout, "01", session="retest")
    assert len(retest) == 1 and "ses-retest" in retest[0]["bold"]
    assert "ses-retest" in retest[0]["mask"] and "ses-retest" in retest[0]["confounds"]
    assert retest[0]["raw_bold"].endswith("sub-01_ses-retest_task-rest_bold.nii.gz")
    # no sidecar next to the derivative: the raw top-level task-rest_bold.json wins over
    # the header (1.5 s)
    assert retest[0]["t_r"] == 2.0
    assert skeleton_layout.get(datatype="dwi") == []  # non-func data are not indexed


def test_header_tr_disagreeing_with_the_sidecar_is_warned(skeleton_layout, caplog):
    """The raw sidecar says 2 s, the preprocessed BOLD's header 1.5 s: warn, use the sidecar."""
    with caplog.at_level("WARNING", logger="msica.workflows"):
        (run,) = collect_runs(skeleton_layout, "01", session="retest")
    assert run["t_r"] == 2.0
    (message,) = [r.getMessage() for r in caplog.records if "header says TR" in r.getMessage()]
    assert message.startswith("sub-01_ses-retest_task-rest_space-MNI152NLin2009cAsym_desc-"
                              "preproc_bold.nii.gz: the NIfTI header says TR 1.5 s but the JSON "
                              "sidecar says 2 s; using the sidecar's 2 s")


def test_runs_tr_from_header(skeleton_layout):
    (motor,) = collect_runs(skeleton_layout, "01", task="motor")
    assert motor["t_r"] == pytest.approx(0.8)


def test_runs_two_confounds_tables(skeleton_layout):
    with pytest.raises(FileNotFoundError, match=r"More than one confounds file matches BOLD "
                                                r"sub-02_ses-test_task-rest_.*--bids-filter-file"):
        collect_runs(skeleton_layout, "02")
    (run,) = collect_runs(skeleton_layout, "02", bids_filters={"confounds": {"suffix": "timeseries"}})
    assert run["confounds"].endswith("desc-confounds_timeseries.tsv")


def test_runs_sessions_ds114(bids_examples, work_dir):
    layout = build_layout(bids_examples / "ds114", work_dir=work_dir)
    assert layout.get_sessions() == ["retest", "test"] and layout.get_runs() == []
    with pytest.raises(FileNotFoundError, match="No preprocessed BOLD found for sub-02"):
        collect_runs(layout, "02", session="test")


def test_runs_synthetic_confounds_without_desc(synthetic):
    """A table msica cannot find is no error when collecting: only strategies that need it fail."""
    from workflows.execution.preflight import check_run

    runs = collect_runs(synthetic, "01", session="01", task="nback")
    assert runs and all(r["confounds"] is None for r in runs)
    check_run(runs[0], strategy="none", templates=[], resample_template=False)
    with pytest.raises(FileNotFoundError,
                       match=r"No confounds table for BOLD sub-01_ses-01_task-nback_run-01_space-"
                             r"MNI152NLin2009cAsym_desc-preproc_bold\.nii, which "
                             r"--denoise-strategy simple needs .*use --denoise-strategy none"):
        check_run(runs[0], strategy="simple", templates=[], resample_template=False)


def test_runs_synthetic_with_filters(synthetic, tmp_path):
    filter_file = tmp_path / "filters.json"
    filter_file.write_text(json.dumps({"confounds": {"desc": "Query.NONE"}}))
    filters = load_bids_filter_file(filter_file)
    runs = collect_runs(synthetic, "01", bids_filters=filters)
    assert len(runs) == 6  # 2 sessions x (nback run-01, run-02, rest)
    for r in runs:
        assert r["bold"].endswith(f"space-{MNI}_desc-preproc_bold.nii")
        assert r["mask"].endswith(f"space-{MNI}_label-brain_mask.nii")  # legacy fallback
        assert r["confounds"].endswith("_timeseries.tsv") and "desc-" not in Path(r["confounds"]).name
        assert r["t_r"] == 2.5
        assert r["raw_bold"] is not None and "derivatives" not in r["raw_bold"]
    t1w = collect_runs(synthetic, "02", session="02", task="rest",
                       bids_filters={"bold": {"space": "T1w"}, **filters})
    assert len(t1w) == 1 and "space-T1w" in t1w[0]["bold"] and "space-T1w" in t1w[0]["mask"]
    assert t1w[0]["entities"]["space"] == "T1w"


def test_tr_header_agrees_with_sidecar(synthetic, bids_examples):
    bold = next((bids_examples / "synthetic/sub-03/ses-02/func").glob("*task-rest_bold.nii"))
    assert get_repetition_time(synthetic, bold) == 2.5
    assert nib.load(bold).header.get_zooms()[3] == pytest.approx(2.5)


def test_runs_unknown_filter_key(synthetic):
    with pytest.raises(ValueError, match=r"unknown query name\(s\) \['t1w'\]; allowed:"):
        collect_runs(synthetic, "01", bids_filters={"t1w": {"space": "T1w"}})


# --- filter files ------------------------------------------------------------------------


def test_filter_file_ok(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"bold": {"session": ["01"], "acquisition": "Query.NONE"}}))
    from bids.layout import Query

    assert load_bids_filter_file(path) == {"bold": {"session": ["01"], "acquisition": Query.NONE}}


def test_filter_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="--bids-filter-file .*f.json does not exist"):
        load_bids_filter_file(tmp_path / "f.json")


def test_filter_file_bad_json(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"bold": {"session": "01",}}')
    with pytest.raises(ValueError, match=r"is not valid JSON \(line 1, column \d+: .*\); fix it"):
        load_bids_filter_file(path)


@pytest.mark.parametrize("content", ['["bold"]', '{"bold": "T1w"}'])
def test_filter_file_not_objects(tmp_path, content):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="must be a JSON object mapping query names"):
        load_bids_filter_file(path)


def test_filter_file_bad_query(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"bold": {"echo": "Query.MAYBE"}}')
    with pytest.raises(ValueError, match=r"bold.echo='Query.MAYBE' is not a pybids Query"):
        load_bids_filter_file(path)


# --- naming -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entities", "expected"),
    [
        ({"subject": "01", "task": "rest", "space": MNI, "scale": 50, "desc": "ica",
          "suffix": "components", "extension": ".nii.gz"},
         f"sub-01/func/sub-01_task-rest_space-{MNI}_scale-50_desc-ica_components.nii.gz"),
        ({"subject": "01", "task": "rest", "space": MNI, "scale": 50, "desc": "ica",
          "suffix": "timeseries", "extension": "tsv"},
         f"sub-01/func/sub-01_task-rest_space-{MNI}_scale-50_desc-ica_timeseries.tsv"),
        ({"subject": "01", "task": "rest", "desc": "dfnc", "suffix": "timeseries",
          "extension": ".tsv"}, "sub-01/func/sub-01_task-rest_desc-dfnc_timeseries.tsv"),
        ({"subject": "01", "session": "1", "task": "rest", "run": 2, "atlas": "NeuroMark",
          "scale": 100, "statistic": "z", "desc": "static", "suffix": "relmat", "extension": ".json"},
         "sub-01/ses-1/func/sub-01_ses-1_task-rest_run-2_atlas-NeuroMark_scale-100_stat-z_desc-static_relmat.json"),
        ({"subject": "01", "task": "rest", "space": MNI, "desc": "brain", "suffix": "mask",
          "extension": ".nii.gz"}, f"sub-01/func/sub-01_task-rest_space-{MNI}_desc-brain_mask.nii.gz"),
        ({"task": "rest", "scale": 10, "desc": "template", "suffix": "dseg", "extension": ".tsv"},
         "group/task-rest_scale-10_desc-template_dseg.tsv"),
        ({"task": "rest", "desc": "multiscale", "suffix": "labels", "extension": ".tsv"},
         "group/task-rest_desc-multiscale_labels.tsv"),
        ({"desc": "diagnosis", "suffix": "model", "extension": ".joblib"},
         "group/desc-diagnosis_model.joblib"),
        ({"subject": "01", "desc": "denoise", "suffix": "qc", "extension": ".svg", "datatype": "figures"},
         "sub-01/figures/sub-01_desc-denoise_qc.svg"),
    ],
)
def test_build_derivative_path(entities, expected):
    assert build_derivative_path(entities) == expected


@pytest.mark.parametrize(
    ("entities", "match"),
    [
        ({"subject": "01", "desc": "ica", "suffix": "components", "extension": ".nii.gz",
          "flavour": "x"}, r"unknown entities \['flavour'\]"),
        ({"subject": "01", "task": "rest", "suffix": "relmat", "extension": ".tsv"}, "needs 'desc'"),
        ({"subject": "01", "desc": "ica", "suffix": "relmat", "extension": ".nii.gz"},
         "suffix/extension pair"),
        ({"subject": "01", "desc": "ica", "suffix": "brainmap", "extension": ".nii.gz"},
         "Could not build path with entities"),
    ],
)
def test_build_derivative_path_errors(entities, match):
    with pytest.raises(ValueError, match=match):
        build_derivative_path(entities)


def test_a_run_and_its_outputs_have_one_run_name():
    """run_name groups a run's outputs (the participant report) and names its subject PCA."""
    from workflows.bids.naming import run_name, source_entities, subject_pca_name

    bold = (f"/d/sub-01/ses-2/func/sub-01_ses-2_task-rest_acq-mb_run-03_space-{MNI}_res-2"
            "_desc-preproc_bold.nii.gz")
    expected = f"sub-01_ses-2_task-rest_acq-mb_run-03_space-{MNI}_res-2"
    assert run_name(bold) == expected
    for extra in ({"scale": 10, "desc": "ica", "suffix": "components", "extension": ".nii.gz"},
                  {"desc": "multiscale", "suffix": "relmat", "extension": ".tsv"},
                  {"desc": "denoise", "suffix": "qc", "extension": ".svg", "datatype": "figures"}):
        output = build_derivative_path({**source_entities(bold), **extra})
        assert run_name(f"/out/{output}") == expected
    other_run = bold.replace("run-03", "run-04")
    assert run_name(other_run) != expected
    assert subject_pca_name(bold) == f"{expected}_desc-pca.npz"


def test_source_uri_fallback(tmp_path, caplog, bids_examples):
    assert source_uri(tmp_path / "a.nii.gz").startswith("file://")
    assert "is in no BIDS dataset" in caplog.text
    # no links given: the enclosing dataset is found, "raw" for raw data, else its folder name
    raw = bids_examples / "ds001/sub-01/anat/sub-01_T1w.nii.gz"
    assert source_uri(raw) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    deriv = bids_examples / "ds000001-fmriprep/sub-10/anat/sub-10_desc-preproc_T1w.nii.gz"
    assert source_uri(deriv) == "bids:ds000001-fmriprep:sub-10/anat/sub-10_desc-preproc_T1w.nii.gz"
    nested = {"raw": tmp_path, "fmriprep": tmp_path / "derivatives" / "fmriprep"}
    uri = source_uri(tmp_path / "derivatives/fmriprep/sub-01/func/x.nii.gz", nested)
    assert uri == "bids:fmriprep:sub-01/func/x.nii.gz"


# --- the sink -------------------------------------------------------------------------------


def test_sink_writes_file_and_sidecar(tmp_path, bids_examples):
    src = bids_examples / f"ds000001-fmriprep/sub-10/func/sub-10_task-balloonanalogrisktask_run-1_space-{MNI}_res-2_desc-preproc_bold.nii.gz"
    in_file = tmp_path / "tcs.tsv"
    in_file.write_text("c0\tc1\n1\t2\n")
    sink = DerivativesDataSink(
        base_directory=str(tmp_path / "out"), source_file=str(src), in_file=str(in_file),
        desc="ica", suffix="timeseries", scale=10,
        meta_dict={"ModelOrder": 10, "Device": "cpu"},
        dataset_links={"fmriprep": str(bids_examples / "ds000001-fmriprep")},
        sources=[str(tmp_path / "out" / "group" / "task-x_desc-template_components.nii.gz")],
    )
    result = sink.run()
    out = Path(result.outputs.out_file)
    assert out.relative_to(tmp_path / "out").as_posix() == (
        f"sub-10/func/sub-10_task-balloonanalogrisktask_run-1_space-{MNI}_res-2_scale-10"
        "_desc-ica_timeseries.tsv")
    assert out.read_text() == in_file.read_text()
    meta = json.loads(Path(result.outputs.out_meta).read_text())
    assert meta["ModelOrder"] == 10 and meta["SoftwareVersion"] == __version__
    assert meta["SoftwareName"] == "msica"
    assert meta["Sources"] == [
        f"bids:fmriprep:sub-10/func/{src.name}",
        "bids::group/task-x_desc-template_components.nii.gz",
    ]
    assert Path(result.outputs.out_meta).name == out.name.replace(".tsv", ".json")
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


def test_sink_sidecar_is_strict_json(tmp_path):
    in_file = tmp_path / "qc.tsv"
    in_file.write_text("mean_fd\nn/a\n")
    result = DerivativesDataSink(
        base_directory=str(tmp_path / "out"), in_file=str(in_file), desc="denoise", suffix="qc",
        meta_dict={"mean_fd": float("nan"), "n": np.int64(3), "sizes": np.arange(2)},
    ).run()
    assert Path(result.outputs.out_file).relative_to(tmp_path / "out").as_posix() == (
        "group/desc-denoise_qc.tsv")
    text = Path(result.outputs.out_meta).read_text()
    assert "NaN" not in text
    meta = json.loads(text)
    assert meta["mean_fd"] is None and meta["n"] == 3 and meta["sizes"] == [0, 1]


def test_sinks_wf_graph(graph, tmp_path):
    """One sink a file field, fed its file and (where named) its sidecar content, each
    writing under its entities into the output folder and reporting where on the outputnode."""
    wf = init_sinks_wf(
        output_dir=tmp_path / "out",
        outputs={"qc_file": ("meta", {"desc": "denoise", "suffix": "qc"}),
                 "relmat_file": (None, {"desc": "multiscale", "suffix": "relmat"})},
        source_file="sub-01_task-rest_bold.nii.gz", sources=["extra.tsv"],
        dataset_links={"raw": "/bids"}, name="ds_wf")
    assert graph.fields(wf, "inputnode") == {"qc_file", "relmat_file", "meta"}
    assert graph.fields(wf, "outputnode") == {"qc_file", "relmat_file"}
    assert graph.edges(wf) == {
        ("inputnode", "qc_file", "ds_qc_file", "in_file"),
        ("inputnode", "meta", "ds_qc_file", "meta_dict"),
        ("inputnode", "relmat_file", "ds_relmat_file", "in_file"),
        ("ds_qc_file", "out_file", "outputnode", "qc_file"),
        ("ds_relmat_file", "out_file", "outputnode", "relmat_file"),
    }
    sink = wf.get_node("ds_relmat_file").inputs
    assert (sink.base_directory, sink.desc, sink.suffix, sink.source_file, sink.sources,
            sink.dataset_links) == (str(tmp_path / "out"), "multiscale", "relmat",
                                    "sub-01_task-rest_bold.nii.gz", ["extra.tsv"],
                                    {"raw": "/bids"})


def test_sink_compresses_nifti(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    in_file = tmp_path / "map.nii"
    nib.Nifti1Image(data, np.eye(4)).to_filename(in_file)
    result = DerivativesDataSink(
        base_directory=str(tmp_path), in_file=str(in_file), subject="01", task="rest",
        desc="ica", suffix="components", extension=".nii.gz", scale=4,
    ).run()
    out = Path(result.outputs.out_file)
    assert out.name == "sub-01_task-rest_scale-4_desc-ica_components.nii.gz"
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # gzip magic
    np.testing.assert_array_equal(nib.load(out).get_fdata(), data)


def test_sink_unknown_input():
    with pytest.raises(ValueError, match=r"unknown inputs \['flavour'\]; entity inputs must be among"):
        DerivativesDataSink(flavour="x")


def test_sink_unbuildable(tmp_path):
    in_file = tmp_path / "x.tsv"
    in_file.write_text("a\n")
    sink = DerivativesDataSink(base_directory=str(tmp_path), in_file=str(in_file), subject="01",
                               suffix="relmat")
    with pytest.raises(ValueError, match="Could not build path with entities"):
        sink.run()


def test_read_sidecar_of_a_derivative(tmp_path):
    from workflows.bids.provenance import read_sidecar

    derivative = tmp_path / "sub-01_scale-4_desc-ica_components.nii.gz"
    assert read_sidecar(derivative) == {}
    with pytest.raises(InputDataError, match=r"components.json is missing; rerun the level"):
        read_sidecar(derivative, required=True)
    sidecar = tmp_path / "sub-01_scale-4_desc-ica_components.json"
    sidecar.write_text('{"Method": "MOO-ICAR"}')
    assert read_sidecar(derivative) == read_sidecar(sidecar) == {"Method": "MOO-ICAR"}
    for bad, says in (("{not json", "cannot be read as JSON"), ("[1, 2]", "holds no JSON object")):
        sidecar.write_text(bad)
        with pytest.raises(InputDataError, match=rf"components.json {says}"):
            read_sidecar(derivative)


# --- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as handle:
        handle.write("new, half written")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_atomic_write_leaves_an_identical_file_untouched(tmp_path):
    target = tmp_path / "t.tsv"
    target.write_text("a\tb\n")
    os.utime(target, (1_000_000, 1_000_000))
    with atomic_write(target) as handle:
        handle.write("a\tb\n")
    assert target.stat().st_mtime == 1_000_000
    with atomic_write(target, keep_identical=False) as handle:
        handle.write("a\tb\n")
    assert target.stat().st_mtime > 1_000_000
    os.utime(target, (1_000_000, 1_000_000))
    with atomic_write(target) as handle:
        handle.write("a\tc\n")
    assert target.read_text() == "a\tc\n" and target.stat().st_mtime > 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["t.tsv"]


def test_atomic_write_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="'mode' must be 'w' or 'wb'"), atomic_write(tmp_path / "x", "a"):
        pass


def _describe(args):
    out, raw = args
    return str(write_dataset_description(out, source_datasets={"raw": raw}))


def test_dataset_description_concurrent(tmp_path, bids_examples):
    out = tmp_path / "out"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        paths = pool.map(_describe, [(out, bids_examples / "ds001")] * 8)
    assert len(set(paths)) == 1
    assert sorted(p.name for p in out.iterdir()) == ["dataset_description.json"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0] == {"Name": "msica", "Version": __version__}
    assert desc["DatasetLinks"]["raw"] == (bids_examples / "ds001").absolute().as_uri()
    assert desc["SourceDatasets"] == [{"URL": desc["DatasetLinks"]["raw"]}]
    before = (out / "dataset_description.json").stat().st_mtime_ns
    write_dataset_description(out, source_datasets={"raw": tmp_path}, extra={"Name": "other"})
    assert (out / "dataset_description.json").stat().st_mtime_ns == before  # written once


def test_dataset_description_extra(tmp_path):
    path = write_dataset_description(tmp_path, source_datasets={}, extra={"Name": "study X"})
    assert json.loads(path.read_text())["Name"] == "study X"


def test_dataset_description_foreign(tmp_path, bids_examples):
    (tmp_path / "dataset_description.json").write_text(
        (bids_examples / "ds000001-fmriprep/dataset_description.json").read_text())
    with pytest.raises(InputDataError, match="was generated by 'fMRIPrep', not msica; choose an empty"):
        write_dataset_description(tmp_path, source_datasets={})


def test_dataset_description_corrupt(tmp_path):
    (tmp_path / "dataset_description.json").write_text("{")
    with pytest.raises(InputDataError, match="is not a valid msica dataset_description.json"):
        write_dataset_description(tmp_path, source_datasets={})
