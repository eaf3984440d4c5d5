"""Checks before participant work: directories, templates and labels, each run's inputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import InputDataError
from workflows.exit_codes import ExitCode
from workflows.cli import run
from workflows.exit_codes import CannotWriteError
from workflows.execution.preflight import check_directories, check_run, check_templates


def _image(path, shape, affine=None):
    nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4) if affine is None else affine
                    ).to_filename(path)
    return path


@pytest.fixture
def template(tmp_path):
    return _image(tmp_path / "Neuromark_fMRI_1.0.nii", (4, 4, 4, 3))


def test_directories_are_created(tmp_path):
    check_directories(tmp_path / "out", tmp_path / "work")
    assert (tmp_path / "out").is_dir() and (tmp_path / "work").is_dir()
    assert not list((tmp_path / "out").iterdir())  # the write check leaves nothing behind


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CannotWriteError, match=r"cannot write to the output directory .*file/out "
                                               r"\(.*\); choose a writable OUTPUT_DIR"):
        check_directories(blocker / "out", tmp_path / "work")


def test_unwritable_output_exits_73_in_one_line(tmp_path, template, capsys):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = run([str(bids), str(blocker / "out"), "participant", "--template", str(template),
                "-w", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code == ExitCode.CANT_CREATE == 73
    assert "Traceback" not in err and err.count("msica: error:") == 1
    assert "cannot write to the output directory" in err
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").rglob("*.toml"))


def test_templates_with_gift_labels(tmp_path, template):
    labels = tmp_path / "domains.txt"
    labels.write_text("SC, 1, 2\nVI, 3\n")
    (info,) = check_templates([template], [labels])
    assert info.n_networks == 3 and info.shape[:3] == (4, 4, 4)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: _image(p / "t.nii.gz", (4, 4, 4)), r"t.nii.gz is 3-D .*must be 4-D"),
    (lambda p: (p / "t.nii.gz").write_bytes(b"not a nifti") and p / "t.nii.gz",
     r"t.nii.gz is not a readable NIfTI"),
])
def test_bad_templates(tmp_path, make, message):
    with pytest.raises(InputDataError, match=message):
        check_templates([make(tmp_path)], [None])


def test_labels_that_do_not_fit_the_template(tmp_path, template):
    labels = tmp_path / "labels.tsv"
    labels.write_text("label\na\nb\n")
    with pytest.raises(InputDataError, match="has 2 rows but the template has 3 networks"):
        check_templates([template], [labels])


def test_run_on_another_grid(tmp_path, template):
    mask = _image(tmp_path / "mask.nii.gz", (5, 5, 5))
    run_inputs = {"bold": str(tmp_path / "sub-01_task-rest_desc-preproc_bold.nii.gz"),
                  "mask": str(mask), "confounds": None}
    templates = check_templates([template], [None])
    with pytest.raises(InputDataError, match=r"Neuromark_fMRI_1.0.nii \(grid \(4, 4, 4\)\) is not "
                                             r"on the grid of mask.nii.gz \(\(5, 5, 5\)\); pass "
                                             r"--resample-template"):
        check_run(run_inputs, strategy="none", templates=templates, resample_template=False)
    check_run(run_inputs, strategy="none", templates=templates, resample_template=True)


def test_confound_columns_checked_before_work(tmp_path):
    """SPM's six rigid-body parameters: enough for no preset; the message says what is."""
    table = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(20, 6)), columns=["trans_x", "trans_y", "trans_z", "rot_x",
                                                     "rot_y", "rot_z"]).to_csv(
        table, sep="\t", index=False)
    run_inputs = {"bold": str(tmp_path / "sub-01_task-rest_desc-preproc_bold.nii.gz"),
                  "mask": str(tmp_path / "mask.nii.gz"), "confounds": str(table)}
    for strategy in ("simple", "scrubbing", "compcor"):
        with pytest.raises(InputDataError, match=rf"desc-confounds_timeseries.tsv lacks \d+ "
                                                 rf"column\(s\) that --denoise-strategy "
                                                 rf"{strategy} needs: .*It supports: none"):
            check_run(run_inputs, strategy=strategy, templates=[], resample_template=False)
    with_tissue = pd.read_csv(table, sep="\t").assign(csf=1.0, white_matter=2.0)
    with_tissue.to_csv(table, sep="\t", index=False)
    check_run(run_inputs, strategy="simple", templates=[], resample_template=False)
    with pytest.raises(InputDataError, match=r"It supports: simple, none"):
        check_run(run_inputs, strategy="scrubbing", templates=[], resample_template=False)


def test_participants_table_checked_for_targets_and_site(tmp_path):
    from workflows.execution.preflight import check_participants_table

    table = tmp_path / "participants.tsv"
    check_participants_table(table, targets=(), site_column=None)  # nothing needed
    with pytest.raises(FileNotFoundError, match=r"--targets diagnosis needs .*participants.tsv"):
        check_participants_table(table, targets=["diagnosis"], site_column=None)
    table.write_text("participant_id\tdiagnosis\tscanner\nsub-01\tpatient\tA\n")
    check_participants_table(table, targets=["diagnosis"], site_column="scanner")
    with pytest.raises(InputDataError, match=r"participants.tsv has no column for --targets "
                                             r"response, --site-column site \(its columns: "
                                             r"participant_id, diagnosis, scanner\)"):
        check_participants_table(table, targets=["diagnosis", "response"], site_column="site")


def test_cuda_device_without_a_gpu_fails_before_any_work(tmp_path, template, capsys,
                                                          monkeypatch):
    import torch

    from workflows.execution.preflight import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_device("auto")
    check_device("cpu")
    with pytest.raises(ValueError, match=r"--device cuda cannot be used on this machine \(.*CUDA "
                                         r"is not available.*\); use --device auto"):
        check_device("cuda")
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    code = run([str(bids), str(tmp_path / "out"), "participant", "--template", str(template),
                "-w", str(tmp_path / "work"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE == 64
    assert "Traceback" not in err and err.count("msica: error:") == 1
    assert "--device cuda cannot be used on this machine" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_participants_table_without_participant_id_fails_before_group_work(tmp_path):
    from workflows.execution.preflight import check_participants_table

    table = tmp_path / "participants.tsv"
    table.write_text("subject\tdiagnosis\nsub-01\tpatient\n")
    with pytest.raises(InputDataError, match=r"participants.tsv has no participant_id column"):
        check_participants_table(table, targets=["diagnosis"], site_column=None)
