"""Bad input end to end: one line per failing participant, the right exit code, the others finish.

One simulated dataset holds one good participant and one participant per kind of defect, so a
single participant-level run checks every message and that failures stay isolated.
"""

import gzip
import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from workflows.bids.simulated import run_simulate, truth_template_options
from workflows.exit_codes import ExitCode
from workflows.cli import run

pytestmark = pytest.mark.integration

N_SUBJECTS = 10
FMRIPREP = Path("derivatives") / "fmriprep"


def _paths(root: Path, label: str) -> dict[str, Path]:
    func = root / FMRIPREP / f"sub-{label}" / "func"
    stem = f"sub-{label}_task-rest"
    return {
        "bold": func / f"{stem}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
        "mask": func / f"{stem}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz",
        "confounds": func / f"{stem}_desc-confounds_timeseries.tsv",
    }


def _break(root: Path) -> dict[str, str]:
    """Damage participants 02..10 in different ways; return label -> expected message part."""
    expected = {}
    p = _paths(root, "02")  # 3-D image where 4-D is expected
    img = nb.load(p["bold"])
    nb.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine).to_filename(p["bold"])
    expected["02"] = "3-D"
    p = _paths(root, "03")  # NaNs in the BOLD
    img = nb.load(p["bold"])
    data = np.asarray(img.dataobj, dtype=np.float32)
    data[data.shape[0] // 2, data.shape[1] // 2, data.shape[2] // 2, 3] = np.nan
    nb.Nifti1Image(data, img.affine, img.header).to_filename(p["bold"])
    expected["03"] = "NaN"
    p = _paths(root, "04")  # mask on another grid
    mask = nb.load(p["mask"])
    nb.Nifti1Image(np.asarray(mask.dataobj)[:-1], mask.affine).to_filename(p["mask"])
    expected["04"] = "grid"
    p = _paths(root, "05")  # too few volumes
    img = nb.load(p["bold"])
    nb.Nifti1Image(np.asarray(img.dataobj)[..., :10], img.affine, img.header).to_filename(p["bold"])
    expected["05"] = "volumes"
    p = _paths(root, "06")  # confounds with another number of rows
    table = pd.read_csv(p["confounds"], sep="\t")
    table.iloc[:-5].to_csv(p["confounds"], sep="\t", index=False, na_rep="n/a")
    expected["06"] = "rows"
    p = _paths(root, "07")  # truncated gzip
    raw = p["bold"].read_bytes()
    p["bold"].write_bytes(raw[: len(raw) // 3])
    expected["07"] = "gzip"
    p = _paths(root, "08")  # confounds missing
    p["confounds"].unlink()
    expected["08"] = "confounds"
    p = _paths(root, "09")  # no BOLD at all
    p["bold"].unlink()
    expected["09"] = "BOLD"
    p = _paths(root, "10")  # empty brain mask (read when the workflow is built)
    mask = nb.load(p["mask"])
    nb.Nifti1Image(np.zeros(mask.shape, np.uint8), mask.affine).to_filename(p["mask"])
    expected["10"] = "no non-zero voxel"
    return expected


@pytest.fixture(scope="module")
def broken_dataset(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("bad") / "bids"
    run_simulate(root, n_subjects=N_SUBJECTS, n_sites=1, n_volumes=60, tr=2.0, grid_mm=10.0,
                 seed=3)
    return root, _break(root)


def test_each_bad_participant_reported_others_finish(broken_dataset, tmp_path, capsys):
    root, expected = broken_dataset
    out = tmp_path / "out"
    # a strategy that regresses confounds, so that the missing and short tables are defects
    code = run([str(root), str(out), "participant", "-w", str(tmp_path / "work"),
                "--nprocs", "2", "--denoise-strategy", "simple", *truth_template_options(root)])
    captured = capsys.readouterr()
    assert code != ExitCode.OK
    error_lines = [line for line in (captured.out + captured.err).splitlines()
                   if line.startswith("msica: error: sub-")]
    for label, part in expected.items():
        lines = [line for line in error_lines if line.startswith(f"msica: error: sub-{label}:")]
        assert len(lines) == 1, (label, error_lines)
        assert part.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in captured.err
    # the good participant finished; the bad ones left nothing behind
    assert list((out / "sub-01" / "func").glob("*_qc.tsv"))
    for label in expected:
        assert not (out / f"sub-{label}").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"


def test_unknown_participant_label(broken_dataset, tmp_path, capsys):
    root, _ = broken_dataset
    code = run([str(root), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                "--participant-label", "99", *truth_template_options(root)])
    assert code == ExitCode.NO_INPUT
    err = capsys.readouterr().err
    assert "99" in err and "Traceback" not in err


def test_stop_on_first_crash(broken_dataset, tmp_path, capsys):
    root, _ = broken_dataset
    code = run([str(root), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                "--participant-label", "09", "01", "--stop-on-first-crash", "--nprocs", "1",
                *truth_template_options(root)])
    assert code == ExitCode.NO_INPUT
    assert not (tmp_path / "out" / "sub-01").exists()


def test_not_a_bids_dataset(tmp_path, capsys):
    (tmp_path / "notbids").mkdir()
    code = run([str(tmp_path / "notbids"), str(tmp_path / "out"), "participant",
                "-w", str(tmp_path / "work"), "--model-orders", "4"])
    assert code in (ExitCode.DATA, ExitCode.NO_INPUT)
    assert "dataset_description.json" in capsys.readouterr().err


def test_gzip_is_really_corrupt(broken_dataset):
    root, _ = broken_dataset
    with pytest.raises((EOFError, OSError)):
        gzip.decompress(_paths(root, "07")["bold"].read_bytes())
