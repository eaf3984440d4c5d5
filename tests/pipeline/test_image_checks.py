"""Tests for pipeline.image_checks: every bad input gives a one-line message with a fix."""

from __future__ import annotations

import doctest

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import pipeline.image_checks
from pipeline.exceptions import InputDataError
from pipeline.image_checks import (
    check_confounds,
    check_same_grid,
    load_bold,
    load_mask,
    read_masked,
)

AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _write(path, data, affine=AFFINE):
    nib.Nifti1Image(np.asarray(data), affine).to_filename(path)
    return path


@pytest.fixture
def bold_path(tmp_path):
    rng = np.random.RandomState(0)
    return _write(tmp_path / "bold.nii.gz", rng.rand(3, 3, 3, 20).astype(np.float32))


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_load_bold_ok(bold_path):
    img = load_bold(bold_path)
    assert img.shape == (3, 3, 3, 20)
    np.testing.assert_allclose(img.get_fdata(), nib.load(bold_path).get_fdata())


def _full_mask(shape=(3, 3, 3)):
    return nib.Nifti1Image(np.ones(shape, np.uint8), AFFINE)


def test_read_masked_matches_nilearn_masker(tmp_path, bold_path):
    """Same voxels, same order and same values as nilearn's apply_mask, in float32."""
    from nilearn.masking import apply_mask

    mask = np.zeros((3, 3, 3), np.uint8)
    mask[1:, :, 1:] = 1
    mask_img = nib.Nifti1Image(mask, AFFINE)
    expected = apply_mask(nib.load(bold_path), mask_img)
    for block_bytes in (1, 64 * 2**20):  # one volume at a time, and all at once
        data = read_masked(load_bold(bold_path), mask_img, block_bytes=block_bytes)
        assert data.dtype == np.float32 and data.shape == (20, 12)
        np.testing.assert_array_equal(data, expected.astype(np.float32))


def test_read_masked_scaled_int16(tmp_path):
    """int16 with scl_slope (SPM's output): values scaled as nibabel does, rounded to float32."""
    values = np.random.RandomState(0).randint(0, 30000, (3, 3, 3, 12)).astype(np.int16)
    img = nib.Nifti1Image(values, AFFINE)
    img.header.set_slope_inter(0.37, 5.0)
    path = tmp_path / "spm.nii.gz"
    img.to_filename(path)
    data = read_masked(load_bold(path), _full_mask(), block_bytes=1)
    expected = nib.load(path).get_fdata()[np.ones((3, 3, 3), bool)].T
    np.testing.assert_allclose(data, expected, rtol=2**-24)


def test_read_masked_ignores_nan_outside_mask(tmp_path):
    data = np.ones((3, 3, 3, 12), np.float32)
    data[0] = np.nan  # outside the brain, as SPM writes
    data[1, 0, 0] = -np.inf
    mask = np.ones((3, 3, 3), np.uint8)
    mask[0] = 0
    mask[1, 0, 0] = 0
    path = _write(tmp_path / "spm.nii.gz", data)
    out = read_masked(load_bold(path), nib.Nifti1Image(mask, AFFINE))
    assert out.shape == (12, 17) and np.all(out == 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_read_masked_non_finite_inside_mask(tmp_path, bad):
    data = np.ones((2, 2, 2, 12), np.float32)
    data[1, 1, 1, 3] = bad
    data[0, 1, 1, 4] = bad
    data[0, 1, 1, 5] = bad
    path = _write(tmp_path / "nan.nii.gz", data)
    mask = nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), AFFINE)
    with pytest.raises(InputDataError, match=r"nan.nii.gz has 3 NaN or infinite values inside "
                                             r"the brain mask .* \(in 2 voxels.*re-run "
                                             r"preprocessing, or pass a mask") as exc:
        read_masked(load_bold(path), mask, mask_name="mask.nii.gz")
    assert "mask.nii.gz" in _one_line(exc)


def test_load_bold_reads_header_only(tmp_path):
    """Missing voxel data are found by the one read of the data, not by load_bold."""
    values = np.tile(np.arange(200, dtype=np.float32) % 7, (8, 8, 8, 1))
    good = _write(tmp_path / "good.nii.gz", values)
    bad = tmp_path / "bad.nii.gz"
    blob = good.read_bytes()
    bad.write_bytes(blob[: 3 * len(blob) // 4])  # the last volumes are cut off
    img = load_bold(bad)
    assert img.shape == (8, 8, 8, 200)
    with pytest.raises(InputDataError, match=r"bad.nii.gz is not a readable NIfTI"):
        read_masked(img, _full_mask((8, 8, 8)))


def test_load_bold_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"BOLD file .*nope.nii.gz does not exist") as exc:
        load_bold(tmp_path / "nope.nii.gz")
    _one_line(exc)


def test_load_bold_truncated_gzip(tmp_path, bold_path):
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(bold_path.read_bytes()[:200])
    with pytest.raises(InputDataError, match=r"cut.nii.gz is not a readable NIfTI .*re-download") as exc:
        load_bold(cut)
    _one_line(exc)


def test_read_masked_corrupt_gzip(tmp_path):
    # compressible data, so that the damaged bytes are Huffman-coded (random floats
    # are stored verbatim and a flipped byte would go unnoticed)
    good = _write(tmp_path / "good.nii.gz", np.tile(np.arange(20, dtype=np.float32), (3, 3, 3, 1)))
    bad = tmp_path / "bad.nii.gz"
    blob = bytearray(good.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 8] = b"\xff" * 8  # damage the deflate stream
    bad.write_bytes(bytes(blob))
    with pytest.raises(InputDataError, match=r"not a readable NIfTI \(corrupt or truncated gzip"):
        read_masked(load_bold(bad), _full_mask())


def test_load_bold_empty_file(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    with pytest.raises(InputDataError, match="empty.nii.gz is not a readable NIfTI"):
        load_bold(empty)


@pytest.mark.realdata
def test_load_bold_header_only_bids_example(shared_data):
    """bids-examples 'synthetic' NIfTIs have a header but no voxels (see SOURCE.md)."""
    path = next((shared_data / "bids_examples/synthetic/derivatives/fmriprep/sub-01/ses-01/func")
                .glob("*space-MNI152NLin2009cAsym_desc-preproc_bold.nii"))
    with pytest.raises(InputDataError, match="is not a readable NIfTI"):
        load_bold(path)


def test_load_bold_3d(tmp_path):
    path = _write(tmp_path / "ref.nii.gz", np.ones((3, 3, 3), np.float32))
    with pytest.raises(InputDataError, match=r"ref.nii.gz is 3-D .* a 4-D BOLD series is expected"):
        load_bold(path)


def test_load_bold_too_short(tmp_path):
    path = _write(tmp_path / "short.nii.gz", np.ones((2, 2, 2, 5), np.float32))
    with pytest.raises(InputDataError, match="has 5 volumes; at least 10 are needed"):
        load_bold(path)
    assert load_bold(path, min_volumes=5).shape[3] == 5


def test_load_mask_ok_and_binarized(tmp_path):
    data = np.zeros((3, 3, 3), np.float32)
    data[1, 1, 1] = 0.7
    data[0, 0, 0] = 2.0
    img = load_mask(_write(tmp_path / "m.nii.gz", data))
    assert img.get_fdata().sum() == 2 and img.get_data_dtype() == np.uint8


def test_load_mask_4d_single_volume(tmp_path):
    img = load_mask(_write(tmp_path / "m.nii.gz", np.ones((3, 3, 3, 1), np.uint8)))
    assert img.shape == (3, 3, 3)


def test_load_mask_4d(tmp_path):
    with pytest.raises(InputDataError, match=r"has shape \(3, 3, 3, 2\); a 3-D brain mask"):
        load_mask(_write(tmp_path / "m.nii.gz", np.ones((3, 3, 3, 2), np.uint8)))


def test_load_mask_empty(tmp_path):
    with pytest.raises(InputDataError, match="has no non-zero voxel"):
        load_mask(_write(tmp_path / "m.nii.gz", np.zeros((3, 3, 3), np.uint8)))


def test_load_mask_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="Mask file .* does not exist"):
        load_mask(tmp_path / "m.nii.gz")


def test_same_grid_shape():
    a = nib.Nifti1Image(np.zeros((3, 3, 3, 4)), AFFINE)
    b = nib.Nifti1Image(np.zeros((3, 3, 2)), AFFINE)
    with pytest.raises(InputDataError, match=r"mask.nii.gz \(shape \(3, 3, 2\)\) and bold.nii.gz "
                                             r"\(shape \(3, 3, 3\)\) are on different grids; resample"):
        check_same_grid(a, b, "bold.nii.gz", "mask.nii.gz")


def test_same_grid_affine():
    a = nib.Nifti1Image(np.zeros((3, 3, 3, 4)), AFFINE)
    shifted = AFFINE.copy()
    shifted[0, 3] = 1.5
    b = nib.Nifti1Image(np.zeros((3, 3, 3)), shifted)
    with pytest.raises(InputDataError, match=r"different affines \(max difference 1.5 mm\)"):
        check_same_grid(a, b, "bold.nii.gz", "mask.nii.gz")
    check_same_grid(a, nib.Nifti1Image(np.zeros((3, 3, 3)), AFFINE + 1e-5), "a", "b")


def test_check_confounds_ok(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("trans_x\tframewise_displacement\n0.1\tn/a\n0.2\t0.3\n")
    table = check_confounds(path, 2, "bold.nii.gz")
    assert table.shape == (2, 2) and np.isnan(table.loc[0, "framewise_displacement"])


def test_check_confounds_rows(tmp_path):
    path = tmp_path / "c.tsv"
    pd.DataFrame({"trans_x": np.zeros(8)}).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputDataError, match=r"c.tsv has 8 rows but bold.nii.gz has 10 volumes"):
        check_confounds(path, 10, "bold.nii.gz")


def test_check_confounds_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="Confounds table .* for bold.nii.gz does not exist"):
        check_confounds(tmp_path / "c.tsv", 10, "bold.nii.gz")


@pytest.mark.realdata
def test_check_confounds_empty_bids_example(shared_data):
    """ds000001-fmriprep ships 0-byte confounds TSVs (see SOURCE.md)."""
    path = next((shared_data / "bids_examples/ds000001-fmriprep/sub-10/func")
                .glob("*run-1_desc-confounds_timeseries.tsv"))
    with pytest.raises(InputDataError, match="is empty or not a TSV table"):
        check_confounds(path, 10, "bold.nii.gz")


def test_doctests():
    result = doctest.testmod(pipeline.image_checks)
    assert result.attempted > 0 and result.failed == 0
