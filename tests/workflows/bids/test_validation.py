"""Opt-in BIDS validation (--validate) and its exit code."""

import pytest

from workflows.exit_codes import BIDSValidationError, ExitCode, exit_code_for
from workflows.bids.validation import validate_bids


def _dataset(tmp_path):
    root = tmp_path / "ds"
    (root / "sub-01" / "func").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    (root / "participants.tsv").write_text("participant_id\nsub-01\n")
    (root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz").touch()
    (root / "sub-01" / "func" / "sub-01_task-rest_bold.json").write_text("{}")
    return root


def test_valid_dataset_passes(tmp_path):
    validate_bids(_dataset(tmp_path))


def test_invalid_names_are_listed(tmp_path):
    root = _dataset(tmp_path)
    (root / "sub-01" / "func" / "notes.txt").touch()
    with pytest.raises(BIDSValidationError, match=r"1 file\(s\) .* \(sub-01/func/notes.txt\)"):
        validate_bids(root)
    assert exit_code_for(BIDSValidationError("x")) == ExitCode.VALIDATION


def test_bidsignore_is_honoured(tmp_path):
    root = _dataset(tmp_path)
    (root / "sub-01" / "func" / "notes.txt").touch()
    (root / ".bidsignore").write_text("*.txt\n")
    validate_bids(root)


def test_missing_description(tmp_path):
    root = _dataset(tmp_path)
    (root / "dataset_description.json").unlink()
    with pytest.raises(BIDSValidationError, match="no dataset_description.json"):
        validate_bids(root)
