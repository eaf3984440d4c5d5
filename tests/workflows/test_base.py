"""Participant workflow builders: graph structure and methods text (the graph is not run here)."""

from pathlib import Path

import pytest

from workflows.participant.base import init_participant_wf


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
        for path in files.values():
            path.touch()
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


def test_denoise_only_graph(runs, tmp_path):
    wf = init_participant_wf(subject_label="01", runs=runs, output_dir=tmp_path / "out",
                             strategy="scrubbing", fd_threshold=0.4)
    assert wf.name == "sub_01_wf"
    names = _node_names(wf)
    assert {"run_00_wf.denoise", "run_00_wf.ds_qc", "run_01_wf.denoise"} <= names
    assert not any("ds_bold" in n for n in names)
    desc = wf.visit_desc()
    assert "'scrubbing' confound strategy" in desc and "> 0.4 mm" in desc
    assert desc.count("BOLD runs were denoised") == 1  # one paragraph for both runs


def test_save_denoised_adds_sink(runs, tmp_path):
    wf = init_participant_wf(subject_label="01", runs=runs[:1], output_dir=tmp_path / "out",
                             save_denoised=True)
    assert "run_00_wf.ds_bold" in _node_names(wf)


def test_template_mode_graph(runs, templates, tmp_path):
    wf = init_participant_wf(subject_label="01", runs=runs[:1], output_dir=tmp_path / "out",
                             templates=templates, dfnc_window=20)
    names = _node_names(wf)
    for index in (0, 1):
        assert f"run_00_networks_wf.backrecon_{index}" in names
        assert f"run_00_networks_wf.ds_components_{index}" in names
    assert {"run_00_networks_wf.fnc", "run_00_networks_wf.ds_relmat",
            "run_00_networks_wf.ds_dfnc"} <= names
    desc = wf.visit_desc()
    assert "2 scale(s) (scale-4.nii.gz, scale-10.nii.gz)" in desc
    assert "sliding windows of 20 TRs" in desc
