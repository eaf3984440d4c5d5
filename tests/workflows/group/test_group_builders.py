"""Group workflow builders: graph structure, sinks and methods text (the graph is not run here)."""

import re
from pathlib import Path

import pytest

from workflows.group.base import (
    ClassifierOptions,
    classifier_methods,
    init_classify_wf,
    init_dfnc_states_wf,
    init_fnc_table_wf,
    init_group_wf,
    init_introspect_wf,
    init_qc_wf,
    init_timecourse_table_wf,
)
from workflows.group.outputs import group_outputs, init_group_outputs_wf


@pytest.fixture
def files(tmp_path: Path) -> dict[str, list[str]]:
    """Participant derivatives of two participants (empty: the graph is not run)."""
    out: dict[str, list[str]] = {"qc": [], "relmat": [], "dfnc": [], "timeseries": []}
    for label in ("01", "02"):
        func = tmp_path / f"sub-{label}" / "func"
        func.mkdir(parents=True)
        prefix = f"sub-{label}_task-rest"
        for kind, name in (("qc", "desc-denoise_qc"), ("relmat", "desc-multiscale_relmat"),
                           ("dfnc", "desc-dfnc_timeseries"),
                           ("timeseries", "scale-4_desc-ica_timeseries")):
            path = func / f"{prefix}_{name}.tsv"
            path.touch()
            out[kind].append(str(path))
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tdiagnosis\nsub-01\t0\nsub-02\t1\n")
    out["participants"] = [str(participants)]
    return out


@pytest.mark.parametrize(("builder", "node", "inputs", "outputs"), [
    (init_qc_wf, "gather_qc", {"qc_files", "participants_file"}, {"out_file"}),
    (init_fnc_table_wf, "fnc_table", {"relmat_files", "participants_file"},
     {"out_file", "meta"}),
    (init_timecourse_table_wf, "timecourse_table",
     {"timeseries_files", "relmat_files", "participants_file"}, {"out_file", "meta"}),
    (init_dfnc_states_wf, "dfnc_states", {"dfnc_files", "participants_file"},
     {"states_file", "metrics_file", "meta"}),
])
def test_table_builders_feed_their_node_from_the_inputnode(graph, files, builder, node, inputs,
                                                           outputs):
    values = {"qc_files": files["qc"], "relmat_files": files["relmat"],
              "timeseries_files": files["timeseries"], "dfnc_files": files["dfnc"],
              "participants_file": files["participants"][0]}
    wf = builder(**{field: values[field] for field in inputs})
    assert set(wf.list_node_names()) == {"inputnode", node, "outputnode"}
    assert graph.fields(wf, "inputnode") == inputs and graph.fields(wf, "outputnode") == outputs
    edges = graph.edges(wf)
    for field in inputs:
        assert getattr(wf.get_node("inputnode").inputs, field) == values[field]
        assert ("inputnode", field, node, field) in edges
    for field in outputs:
        assert (node, field, "outputnode", field) in edges


def test_dfnc_states_wf_passes_its_options(files):
    from nipype.interfaces.base import isdefined

    wf = init_dfnc_states_wf(dfnc_files=files["dfnc"], n_states=3, seed=7)
    states = wf.get_node("dfnc_states").inputs
    assert states.n_states == 3 and states.random_state == 7
    assert not isdefined(wf.get_node("inputnode").inputs.participants_file)
    assert not isdefined(init_dfnc_states_wf(dfnc_files=files["dfnc"])
                         .get_node("dfnc_states").inputs.n_states)


def test_classify_wf_graph(graph, files):
    wf = init_classify_wf(target="diagnosis", participants_file=files["participants"][0],
                          options=ClassifierOptions(connectivity=("tangent",)), nprocs=2, seed=3,
                          timeseries_files=files["timeseries"], relmat_files=files["relmat"])
    assert wf.name == "classify_diagnosis_wf"
    assert graph.fields(wf, "inputnode") == {"features_file"}
    assert set(group_outputs("classify", "diagnosis")) | {"model_meta", "meta"} == graph.fields(
        wf, "outputnode")
    classify = wf.get_node("classify_diagnosis")
    assert classify.n_procs == 2 and classify.inputs.random_state == 3
    assert classify.inputs.timeseries_files == files["timeseries"]
    edges = graph.edges(wf)
    assert ("inputnode", "features_file", "classify_diagnosis", "features_file") in edges
    assert ("classify_diagnosis", "model_meta", "outputnode", "model_meta") in edges


def test_settings_reach_the_classifier_node(files, tmp_path):
    """Every classifier setting travels by its name into ClassifyTarget's inputs."""
    from workflows.config import Settings, options_from_settings

    settings = Settings(
        bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", work_dir=tmp_path / "work",
        analysis_level="group", targets=("diagnosis",), confounds=("age",), n_permutations=7,
        site_column="scanner", harmonize="combat", harmonize_protect=("sex",),
        connectivity=("tangent", "correlation"), introspect=True)
    options = options_from_settings(ClassifierOptions, settings)
    assert options == ClassifierOptions(
        targets=("diagnosis",), confounds=("age",), n_permutations=7, site_column="scanner",
        harmonize="combat", harmonize_protect=("sex",), connectivity=("tangent", "correlation"),
        introspect=True)
    classify = init_classify_wf(target="diagnosis", participants_file=files["participants"][0],
                                options=options, timeseries_files=files["timeseries"],
                                relmat_files=files["relmat"]).get_node("classify_diagnosis")
    assert (classify.inputs.confounds, classify.inputs.protect, classify.inputs.n_permutations,
            classify.inputs.site_column, classify.inputs.harmonize,
            classify.inputs.connectivity) == (["age"], ["sex"], 7, "scanner", "combat",
                                              ["tangent", "correlation"])


def test_no_connectivity_means_the_fnc_edges(files):
    """An empty connectivity (``connectivity = []`` in a --config file) classifies the FNC
    edges, as the group level always has."""
    assert ClassifierOptions(connectivity=()).connectivity == ("fnc",)
    classify = init_classify_wf(target="diagnosis", participants_file=files["participants"][0],
                                options=ClassifierOptions(connectivity=())).get_node(
        "classify_diagnosis")
    assert classify.inputs.connectivity == ["fnc"]


def test_introspect_wf_graph(graph, files):
    wf = init_introspect_wf(target="diagnosis", participants_file=files["participants"][0],
                            device="cpu")
    assert wf.name == "introspect_diagnosis_wf"
    assert graph.fields(wf, "inputnode") == {"features_file"}
    assert graph.fields(wf, "outputnode") == {"spectra_file", "summary_file", "figure_file", "meta"}
    assert not wf.get_node("introspect_diagnosis").is_gpu_node()
    assert ("inputnode", "features_file", "introspect_diagnosis", "features_file") in graph.edges(wf)


def test_group_outputs_wf_graph(graph, files, tmp_path):
    wf = init_group_outputs_wf(output_dir=tmp_path / "out", concern="classify",
                               sources=files["relmat"], target="Diagnosis Group",
                               name="ds_classify_wf")
    assert graph.fields(wf, "inputnode") == {*group_outputs("classify", "Diagnosis Group"),
                                        "meta", "model_meta"}
    model = wf.get_node("ds_model_file").inputs
    assert model.suffix == "model" and model.sources == files["relmat"]
    assert model.base_directory == str(tmp_path / "out")
    figure = wf.get_node("ds_figure_file").inputs
    assert (figure.datatype, figure.extension) == ("figures", ".svg")
    edges = graph.edges(wf)
    assert ("inputnode", "model_meta", "ds_model_file", "meta_dict") in edges
    assert ("inputnode", "meta", "ds_metrics_file", "meta_dict") in edges
    qc = init_group_outputs_wf(output_dir=tmp_path, concern="qc", sources=files["qc"],
                               name="ds_qc_wf")
    assert graph.fields(qc, "inputnode") == {"out_file"}  # the group QC table has no parameters
    assert not any(into == "meta_dict" for *_, into in graph.edges(qc))


def test_group_wf_composes_the_concerns(graph, files, tmp_path):
    wf = init_group_wf(qc_files=files["qc"], relmat_files=files["relmat"],
                       dfnc_files=files["dfnc"], timeseries_files=files["timeseries"],
                       output_dir=tmp_path / "out",
                       classifiers=ClassifierOptions(targets=("diagnosis",), introspect=True),
                       device="cpu", participants_file=Path(files["participants"][0]))
    workflows = {name.split(".")[0] for name in wf.list_node_names()}
    concerns = {"qc_wf", "fnc_table_wf", "timecourse_table_wf", "classify_diagnosis_wf",
                "introspect_diagnosis_wf", "dfnc_states_wf"}
    assert workflows == concerns | {f"ds_{name}" for name in concerns}
    edges = graph.edges(wf)
    for concern in ("classify_diagnosis_wf", "introspect_diagnosis_wf"):
        assert ("fnc_table_wf.outputnode", "out_file", f"{concern}.inputnode",
                "features_file") in edges
    assert ("classify_diagnosis_wf.outputnode", "model_file", "ds_classify_diagnosis_wf.inputnode",
            "model_file") in edges
    assert ("qc_wf.outputnode", "out_file", "ds_qc_wf.inputnode", "out_file") in edges
    assert wf.get_node("ds_qc_wf.ds_out_file").inputs.sources == files["qc"]
    assert wf.get_node("ds_dfnc_states_wf.ds_states_file").inputs.sources == files["dfnc"]
    desc = wf.visit_desc()
    assert desc.startswith("Quality-control measures of 2 run(s) were gathered")
    assert ("Static FNC edges of 2 run(s) were tabulated per participant and their "
            "sliding-window FNC was clustered") in desc
    assert "Targets (diagnosis) were classified" in desc


def test_group_wf_without_fnc_has_qc_only(files, tmp_path):
    from nipype.interfaces.base import isdefined

    wf = init_group_wf(qc_files=files["qc"], output_dir=tmp_path / "out")
    assert {name.split(".")[0] for name in wf.list_node_names()} == {"qc_wf", "ds_qc_wf"}
    assert not isdefined(wf.get_node("qc_wf.inputnode").inputs.participants_file)
    assert wf.visit_desc() == ("Quality-control measures of 2 run(s) were gathered into one "
                               "group table.")


@pytest.mark.parametrize(("inputs", "connectivity", "message"), [
    ((), "fnc", "needs FNC features"),
    (("relmat_files",), "fnc", "needs participants.tsv"),
    (("relmat_files", "participants_file"), "tangent",
     "needs the participants' network time courses"),
])
def test_group_wf_refuses_targets_without_their_inputs(files, tmp_path, inputs, connectivity,
                                                       message):
    values = {"relmat_files": files["relmat"], "participants_file": Path(files["participants"][0])}
    classifiers = ClassifierOptions(targets=("diagnosis",), connectivity=(connectivity,))
    with pytest.raises(FileNotFoundError, match=message):
        init_group_wf(qc_files=files["qc"], output_dir=tmp_path / "out", classifiers=classifiers,
                      **{name: values[name] for name in inputs})


def test_group_crashes_are_reported_by_node_name(files, tmp_path):
    """A crash inside a concern's sub-workflow names the node, as before the split."""
    from workflows.execution.crashes import GROUP_NODE_OF_CRASH

    wf = init_group_wf(qc_files=files["qc"], relmat_files=files["relmat"],
                       output_dir=tmp_path / "out",
                       classifiers=ClassifierOptions(targets=("diagnosis",)),
                       participants_file=Path(files["participants"][0]))
    flat = wf._create_flat_graph()
    names = {GROUP_NODE_OF_CRASH.search(node.fullname).group("node"): node.fullname
             for node in flat.nodes()}
    assert names["classify_diagnosis"] == "msica_group_wf.classify_diagnosis_wf.classify_diagnosis"
    assert names["gather_qc"] == "msica_group_wf.qc_wf.gather_qc"


@pytest.mark.parametrize(("connectivity", "harmonize", "keys"), [
    (["fnc"], "none", {"hastie2009"}),
    (["tangent", "correlation"], "auto", {"ledoit2004", "varoquaux2010", "dadi2019",
                                          "johnson2007", "fortin2018", "hastie2009"}),
    (["partial_correlation"], "combat", {"ledoit2004", "varoquaux2013", "johnson2007",
                                         "fortin2018", "hastie2009"}),
])
def test_classifier_methods_cite_the_registries_works(connectivity, harmonize, keys):
    from workflows.reports.boilerplate import all_references

    text = classifier_methods(ClassifierOptions(
        targets=("diagnosis",), confounds=("age",), harmonize=harmonize,
        harmonize_protect=("sex",), connectivity=tuple(connectivity), n_permutations=0))
    cited = set(re.findall(r"@(\w+)", text))
    assert cited == keys
    assert cited <= set(all_references())  # every citation becomes a numbered reference
