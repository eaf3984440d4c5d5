"""Participant workflow builders: graph structure and methods text (the graph is not run here)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from workflows.execution.memory import BASE_GB, BYTES_PER_VOXEL_VOLUME, run_mem_gb
from workflows.config import Settings, options_from_settings
from workflows.participant.base import init_msica_participant_wf, init_participant_wf
from workflows.participant.denoise import DenoiseOptions, init_denoise_wf
from workflows.participant.networks import NetworkOptions, init_networks_wf, networks_output_fields
from workflows.participant.outputs import (
    init_denoise_outputs_wf,
    init_networks_outputs_wf,
)
from workflows.participant.pca import init_subject_pca_wf


@pytest.fixture
def runs(tmp_path: Path) -> list[dict]:
    out = []
    for run in (1, 2):
        stem = f"sub-01_task-rest_run-{run}"
        files = {
            "bold": tmp_path / f"{stem}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
            "mask": tmp_path / f"{stem}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz",
            "confounds": tmp_path / f"{stem}_desc-confounds_timeseries.tsv",
        }
        n_volumes = 20 * run  # runs of different length declare different memory
        nib.Nifti1Image(np.zeros((4, 5, 6, n_volumes), np.float32), np.eye(4)).to_filename(
            files["bold"])
        mask = np.zeros((4, 5, 6), np.uint8)
        mask[1:3, 1:4, 1:5] = 1  # 24 voxels
        nib.Nifti1Image(mask, np.eye(4)).to_filename(files["mask"])
        files["confounds"].touch()
        out.append({**{k: str(v) for k, v in files.items()}, "t_r": 2.0})
    return out


@pytest.fixture
def templates(tmp_path: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for scale in (4, 10):
        nii, tsv = tmp_path / f"scale-{scale}.nii.gz", tmp_path / f"scale-{scale}.tsv"
        nii.touch()
        tsv.touch()
        pairs.append((nii, tsv))
    return pairs


def _node_names(workflow) -> set[str]:
    return set(workflow.list_node_names())


def _run_inputs(run: dict) -> dict:
    return {"bold_file": run["bold"], "mask_file": run["mask"],
            "confounds_file": run["confounds"], "t_r": run["t_r"]}


def test_denoise_wf_graph(graph, runs):
    wf = init_denoise_wf(**_run_inputs(runs[0]),
                         options=DenoiseOptions(strategy="scrubbing", high_pass=0.01))
    assert _node_names(wf) == {"inputnode", "denoise", "outputnode"}
    assert graph.fields(wf, "inputnode") == {"bold_file", "mask_file", "confounds_file", "t_r"}
    assert graph.fields(wf, "outputnode") == {"qc_file", "qc_meta", "denoised_file",
                                         "denoised_nifti", "sample_mask"}
    assert wf.get_node("inputnode").inputs.bold_file == runs[0]["bold"]
    denoise = wf.get_node("denoise").inputs
    assert denoise.strategy == "scrubbing" and denoise.high_pass == 0.01
    assert not denoise.save_nifti
    assert ("denoise", "denoised_nifti", "outputnode", "denoised_nifti") not in graph.edges(wf)


def test_denoise_wf_without_confounds_leaves_them_undefined(runs):
    from nipype.interfaces.base import isdefined

    wf = init_denoise_wf(**{**_run_inputs(runs[0]), "confounds_file": None})
    assert not isdefined(wf.get_node("inputnode").inputs.confounds_file)


def test_denoise_outputs_wf_graph(graph, runs, tmp_path):
    wf = init_denoise_outputs_wf(output_dir=tmp_path / "out", bold_file=runs[0]["bold"],
                                 dataset_links={"raw": str(tmp_path)})
    assert _node_names(wf) == {"inputnode", "ds_qc_file", "outputnode"}
    assert graph.fields(wf, "inputnode") == {"qc_file", "meta"}
    ds_qc = wf.get_node("ds_qc_file").inputs
    assert (ds_qc.desc, ds_qc.suffix, ds_qc.extension) == ("denoise", "qc", ".tsv")
    assert ds_qc.source_file == runs[0]["bold"] and ds_qc.dataset_links == {"raw": str(tmp_path)}
    assert {("inputnode", "qc_file", "ds_qc_file", "in_file"),
            ("inputnode", "meta", "ds_qc_file", "meta_dict")} <= graph.edges(wf)
    saved = init_denoise_outputs_wf(output_dir=tmp_path / "out", bold_file=runs[0]["bold"],
                                    save_denoised=True)
    assert saved.get_node("ds_denoised_nifti").inputs.suffix == "bold"


def test_networks_wf_graph(graph, runs, templates):
    wf = init_networks_wf(**_run_inputs(runs[0]), templates=templates,
                          options=NetworkOptions(dfnc_window=20))
    names = _node_names(wf)
    assert {"inputnode", "outputnode", "backrecon_0", "backrecon_1", "fnc"} <= names
    assert not any(name.startswith("ds_") for name in names)  # sinks: init_networks_outputs_wf
    assert graph.fields(wf, "inputnode") == {"denoised_file", "sample_mask"}
    assert graph.fields(wf, "outputnode") == set(networks_output_fields(2))
    assert wf.get_node("backrecon_1").inputs.template_file == str(templates[1][0])
    assert wf.get_node("fnc").inputs.window == 20
    edges = graph.edges(wf)
    assert {("inputnode", "denoised_file", "backrecon_0", "bold_file"),
            ("inputnode", "sample_mask", "fnc", "sample_mask"),
            ("backrecon_1", "timeseries_file", "merge_tcs", "in2"),
            ("merge_tcs", "out", "fnc", "timeseries_files"),
            ("backrecon_1", "components_file", "outputnode", "components_file_1"),
            ("backrecon_1", "scale", "outputnode", "scale_1"),
            ("fnc", "relmat_file", "outputnode", "relmat_file"),
            ("fnc", "dfnc_file", "outputnode", "dfnc_file"),
            ("fnc", "meta", "outputnode", "fnc_meta")} <= edges
    gift = init_networks_wf(**_run_inputs(runs[0]), templates=templates,
                            options=NetworkOptions(gift_compatible=True))
    assert ("backrecon_0", "gift_components_file", "outputnode",
            "gift_components_file_0") in graph.edges(gift)


def test_networks_outputs_wf_graph(graph, runs, tmp_path):
    wf = init_networks_outputs_wf(output_dir=tmp_path / "out", bold_file=runs[0]["bold"],
                                  n_scales=2, dataset_links={"raw": str(tmp_path)})
    assert graph.fields(wf, "inputnode") == set(networks_output_fields(2))
    assert _node_names(wf) == {"inputnode", "outputnode", "ds_relmat", "ds_dfnc",
                               "ds_components_0", "ds_components_1", "ds_timeseries_0",
                               "ds_timeseries_1"}
    edges = graph.edges(wf)
    for node, field, meta, entities in (
            ("ds_components_1", "components_file_1", "meta_1", ("ica", "components", ".nii.gz")),
            ("ds_timeseries_0", "timeseries_file_0", "meta_0", ("ica", "timeseries", ".tsv")),
            ("ds_relmat", "relmat_file", "fnc_meta", ("multiscale", "relmat", ".tsv")),
            ("ds_dfnc", "dfnc_file", "fnc_meta", ("dfnc", "timeseries", ".tsv"))):
        inputs = wf.get_node(node).inputs
        assert (inputs.desc, inputs.suffix, inputs.extension) == entities, node
        assert inputs.source_file == runs[0]["bold"]
        assert inputs.dataset_links == {"raw": str(tmp_path)}
        assert {("inputnode", field, node, "in_file"), ("inputnode", meta, node, "meta_dict"),
                (node, "out_file", "outputnode", field)} <= edges
    assert {("inputnode", "scale_1", "ds_components_1", "scale"),
            ("inputnode", "scale_0", "ds_timeseries_0", "scale")} <= edges
    gift = init_networks_outputs_wf(output_dir=tmp_path / "out", bold_file=runs[0]["bold"],
                                    n_scales=1, gift_compatible=True)
    assert gift.get_node("ds_gift_components_0").inputs.desc == "gift"
    assert ("inputnode", "gift_components_file_0", "ds_gift_components_0",
            "in_file") in graph.edges(gift)


def test_subject_pca_wf_graph(graph, runs, tmp_path):
    wf = init_subject_pca_wf(subject_label="01", **_run_inputs(runs[0]), n_components=7,
                             pca_dir=tmp_path / "pca")
    assert _node_names(wf) == {"inputnode", "pca", "outputnode"}
    assert graph.fields(wf, "inputnode") == {"denoised_file", "sample_mask"}
    assert graph.fields(wf, "outputnode") == {"pca_file"}
    pca = wf.get_node("pca").inputs
    assert pca.n_components == 7 and pca.out_dir == str(tmp_path / "pca")
    assert pca.meta == {"Subject": "01", "SourceFile": runs[0]["bold"],
                        "MaskFile": runs[0]["mask"], "ConfoundsFile": runs[0]["confounds"],
                        "RepetitionTime": 2.0}


def test_denoise_only_graph(graph, runs, tmp_path):
    wf = init_participant_wf(subject_label="01", runs=runs, output_dir=tmp_path / "out",
                             denoise=DenoiseOptions(strategy="scrubbing", fd_threshold=0.4))
    assert wf.name == "sub_01_wf"
    names = _node_names(wf)
    assert {"run_00_wf.denoise", "run_00_outputs_wf.ds_qc_file", "run_01_wf.denoise"} <= names
    assert not any("ds_denoised_nifti" in n or "networks" in n or "pca" in n for n in names)
    assert {("run_01_wf.outputnode", "qc_file", "run_01_outputs_wf.inputnode", "qc_file"),
            ("run_01_wf.outputnode", "qc_meta", "run_01_outputs_wf.inputnode", "meta")
            } <= graph.edges(wf)
    desc = wf.visit_desc()
    assert "'scrubbing' confound strategy" in desc and "> 0.4 mm" in desc
    assert desc.count("BOLD runs were denoised") == 1  # one paragraph for both runs


def test_save_denoised_adds_sink(graph, runs, tmp_path):
    wf = init_participant_wf(subject_label="01", runs=runs[:1], output_dir=tmp_path / "out",
                             denoise=DenoiseOptions(save_denoised=True))
    assert "run_00_outputs_wf.ds_denoised_nifti" in _node_names(wf)
    assert ("run_00_wf.outputnode", "denoised_nifti", "run_00_outputs_wf.inputnode",
            "denoised_nifti") in graph.edges(wf)


def test_template_mode_graph(graph, runs, templates, tmp_path):
    wf = init_participant_wf(subject_label="01", runs=runs[:1], output_dir=tmp_path / "out",
                             templates=templates, networks=NetworkOptions(dfnc_window=20))
    names = _node_names(wf)
    for index in (0, 1):
        assert f"run_00_networks_wf.backrecon_{index}" in names
        assert f"run_00_networks_outputs_wf.ds_components_{index}" in names
    assert {"run_00_networks_wf.fnc", "run_00_networks_outputs_wf.ds_relmat",
            "run_00_networks_outputs_wf.ds_dfnc"} <= names
    edges = graph.edges(wf)
    assert {("run_00_wf.outputnode", "denoised_file", "run_00_networks_wf.inputnode",
             "denoised_file"),
            ("run_00_wf.outputnode", "sample_mask", "run_00_networks_wf.inputnode",
             "sample_mask")} <= edges
    assert {("run_00_networks_wf.outputnode", field, "run_00_networks_outputs_wf.inputnode",
             field) for field in networks_output_fields(2)} <= edges
    desc = wf.visit_desc()
    assert "2 scale(s) (scale-4.nii.gz, scale-10.nii.gz)" in desc
    assert "sliding windows of 20 TRs" in desc
    assert desc.index("BOLD runs were used as preprocessed") < desc.index("Participant networks")


def test_data_driven_mode_graph(graph, runs, tmp_path):
    wf = init_participant_wf(subject_label="01", runs=runs, output_dir=tmp_path / "out",
                             model_orders=(3, 5), pca_dir=tmp_path / "pca")
    names = _node_names(wf)
    assert {"run_00_pca_wf.pca", "run_01_pca_wf.pca"} <= names
    assert wf.get_node("run_01_pca_wf.pca").inputs.n_components == 5
    assert ("run_01_wf.outputnode", "denoised_file", "run_01_pca_wf.inputnode",
            "denoised_file") in graph.edges(wf)
    with pytest.raises(ValueError, match="'pca_dir' is needed"):
        init_participant_wf(subject_label="01", runs=runs, output_dir=tmp_path / "out",
                            model_orders=(3, 5))


def test_run_mem_gb_counts_brain_voxels_and_volumes(runs):
    assert run_mem_gb(runs[0]["bold"], runs[0]["mask"]) == pytest.approx(
        BASE_GB + BYTES_PER_VOXEL_VOLUME * 24 * 20 / 1e9)
    assert run_mem_gb(runs[1]["bold"], runs[1]["mask"]) == pytest.approx(
        BASE_GB + BYTES_PER_VOXEL_VOLUME * 24 * 40 / 1e9)


@pytest.mark.parametrize("mode", ["templates", "model_orders"])
def test_nodes_holding_a_run_declare_its_memory(runs, templates, tmp_path, mode):
    """--mem bounds concurrency only if the heavy nodes say what they need (Nipype's default is 0.2 GB)."""
    options = ({"templates": templates} if mode == "templates"
               else {"model_orders": (3, 5), "pca_dir": tmp_path / "pca"})
    wf = init_participant_wf(subject_label="01", runs=runs, output_dir=tmp_path / "out",
                             **options)
    heavy = ["denoise"] + (["networks_wf.backrecon_0", "networks_wf.backrecon_1"]
                           if mode == "templates" else ["pca_wf.pca"])
    for index, run in enumerate(runs):
        expected = run_mem_gb(run["bold"], run["mask"])
        for node in heavy:
            prefix = f"run_{index:02d}_" + ("wf." if node == "denoise" else "")
            assert wf.get_node(prefix + node).mem_gb == pytest.approx(expected)
    assert wf.get_node("run_00_wf.denoise").mem_gb < wf.get_node("run_01_wf.denoise").mem_gb
    assert wf.get_node("run_00_wf.outputnode").mem_gb == pytest.approx(0.2)  # light nodes keep the default


def test_settings_reach_the_denoise_and_network_nodes(runs, templates, tmp_path):
    """init_msica_participant_wf copies every denoising and network option from the settings
    (fields of the same name; strategy and method renamed) into the nodes that use them."""
    settings = Settings(
        bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", work_dir=tmp_path / "work",
        analysis_level="participant", denoise_strategy="scrubbing", high_pass=0.01,
        low_pass=0.1, detrend=True, standardize=True, fd_threshold=0.3, min_volumes=10,
        templates=tuple(t for t, _ in templates), backrecon_method="dual-regression",
        resample_template=True, device="cpu", fnc_measure="partial correlation",
        dfnc_window=12)
    assert options_from_settings(DenoiseOptions, settings, strategy="denoise_strategy") == (
        DenoiseOptions(strategy="scrubbing", high_pass=0.01, low_pass=0.1, detrend=True,
                       standardize=True, fd_threshold=0.3, min_volumes=10))
    wf = init_msica_participant_wf(settings, "01", runs[:1])
    denoise = wf.get_node("run_00_wf.denoise").inputs
    assert (denoise.strategy, denoise.high_pass, denoise.low_pass, denoise.detrend,
            denoise.standardize, denoise.fd_threshold, denoise.min_volumes) == (
        "scrubbing", 0.01, 0.1, True, True, 0.3, 10)
    backrecon = wf.get_node("run_00_networks_wf.backrecon_1").inputs
    assert (backrecon.method, backrecon.resample_template, backrecon.device) == (
        "dual-regression", True, "cpu")
    fnc = wf.get_node("run_00_networks_wf.fnc").inputs
    assert (fnc.measure, fnc.window) == ("partial correlation", 12)
