"""DenoiseBold, load_denoised and MultiscaleGroupICA: what travels between nodes, and how."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import InputDataError
from workflows.interfaces.denoise import DenoiseBold, _read_npy_rows, load_denoised

RANDOM_STATE = 42
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _dir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


@pytest.fixture
def spm_run(tmp_path) -> dict:
    """An SPM-like run: NaN outside the brain, a mask, six realignment parameters only."""
    rng = np.random.RandomState(RANDOM_STATE)
    mask = np.zeros((6, 6, 5), bool)
    mask[1:5, 1:5, 1:4] = True
    values = np.full(mask.shape + (60,), np.nan, np.float32)
    values[mask] = 1000 + rng.randn(int(mask.sum()), 60)
    bold = tmp_path / "sub-01_task-rest_bold.nii.gz"
    nib.Nifti1Image(values, AFFINE).to_filename(bold)
    mask_file = tmp_path / "sub-01_task-rest_mask.nii.gz"
    nib.Nifti1Image(mask.astype(np.uint8), AFFINE).to_filename(mask_file)
    rp = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    pd.DataFrame(rng.randn(60, 6) * 0.1, columns=["trans_x", "trans_y", "trans_z", "rot_x",
                                                   "rot_y", "rot_z"]).to_csv(rp, sep="\t",
                                                                             index=False)
    return {"bold": bold, "mask": mask_file, "confounds": rp, "mask_array": mask,
            "values": values}


def test_none_without_confounds_passes_data_as_npy(spm_run, tmp_path):
    node = DenoiseBold(bold_file=str(spm_run["bold"]), mask_file=str(spm_run["mask"]), t_r=2.0,
                       strategy="none", min_volumes=20)
    result = node.run(cwd=_dir(tmp_path / "node"))
    out = result.outputs
    assert Path(out.denoised_file).suffix == ".npy"
    data = np.load(out.denoised_file)
    np.testing.assert_array_equal(data, spm_run["values"][spm_run["mask_array"]].T)
    np.testing.assert_array_equal(load_denoised(out.denoised_file, spm_run["mask"]), data)
    qc = pd.read_csv(out.qc_file, sep="\t")
    assert qc.loc[0, "strategy"] == "none" and not qc.loc[0, "standardize"]
    assert not (tmp_path / "node" / "denoised_bold.nii.gz").exists()  # no NIfTI unless asked


def test_motion_only_table_names_missing_columns(spm_run, tmp_path):
    node = DenoiseBold(bold_file=str(spm_run["bold"]), mask_file=str(spm_run["mask"]),
                       confounds_file=str(spm_run["confounds"]), t_r=2.0, strategy="simple",
                       min_volumes=20)
    with pytest.raises(InputDataError, match=r"confounds_timeseries.tsv lacks 2 column\(s\) that "
                                             r"--denoise-strategy simple needs: csf, "
                                             r"white_matter\. It supports: none"):
        node.run(cwd=_dir(tmp_path / "node"))


def test_missing_table_suggests_strategy_none(spm_run, tmp_path):
    node = DenoiseBold(bold_file=str(spm_run["bold"]), mask_file=str(spm_run["mask"]), t_r=2.0,
                       strategy="compcor", min_volumes=20)
    with pytest.raises(InputDataError, match=r"has no confounds table, which --denoise-strategy "
                                             r"compcor needs; .*--denoise-strategy none"):
        node.run(cwd=_dir(tmp_path / "node"))


def test_save_nifti_writes_the_derivative(spm_run, tmp_path):
    node = DenoiseBold(bold_file=str(spm_run["bold"]), mask_file=str(spm_run["mask"]), t_r=2.0,
                       strategy="none", min_volumes=20, save_nifti=True)
    out = node.run(cwd=_dir(tmp_path / "node")).outputs
    img = nib.load(out.denoised_nifti)
    assert img.shape == spm_run["values"].shape
    # the NIfTI and the .npy hold the same run; load_denoised reads either
    np.testing.assert_array_equal(load_denoised(out.denoised_nifti, spm_run["mask"]),
                                  np.load(out.denoised_file))


def test_load_denoised_refuses_another_mask(spm_run, tmp_path):
    path = tmp_path / "run.npy"
    np.save(path, np.zeros((60, 5), np.float32))
    with pytest.raises(InputDataError, match=r"run.npy has shape \(60, 5\), not \(volumes, 48 "
                                             r"voxels of .*mask.nii.gz\); rerun"):
        load_denoised(path, spm_run["mask"])


@pytest.mark.parametrize("block_bytes", [4 * 48 * 7, 64 * 2**20])  # 7 rows a block, or all
def test_npy_read_by_row_blocks_into_the_asked_dtype(tmp_path, block_bytes):
    values = np.random.RandomState(0).randn(60, 48).astype(">f4")  # big-endian on disk
    path = tmp_path / "run.npy"
    np.save(path, values)
    out = _read_npy_rows(path, 48, np.float64, "48 voxels", block_bytes=block_bytes)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, values.astype(np.float64))


def test_load_denoised_reads_float64_from_npy_and_nifti(spm_run, tmp_path):
    node = DenoiseBold(bold_file=str(spm_run["bold"]), mask_file=str(spm_run["mask"]), t_r=2.0,
                       strategy="none", min_volumes=20)
    out = node.run(cwd=_dir(tmp_path / "node")).outputs
    as32 = load_denoised(out.denoised_file, spm_run["mask"])
    for path in (out.denoised_file, spm_run["bold"]):
        as64 = load_denoised(path, spm_run["mask"], dtype=np.float64)
        assert as64.dtype == np.float64
        np.testing.assert_array_equal(as64, as32)


@pytest.mark.parametrize("values, message", [
    (np.zeros((60, 48), "<U2"), r"run.npy is not a C-order numeric array \(<U2\)"),
    (np.zeros((60, 48), object), r"run.npy is not a C-order numeric array \(object\)"),
    (np.asfortranarray(np.zeros((60, 48))), r"run.npy is not a C-order numeric array"),
])
def test_npy_that_is_not_numeric_is_refused_unread(tmp_path, values, message):
    path = tmp_path / "run.npy"
    np.save(path, values, allow_pickle=True)  # an object array is pickled: never unpickled here
    with pytest.raises(InputDataError, match=message):
        _read_npy_rows(path, 48, np.float64, "48 voxels")


def test_truncated_npy_is_refused(tmp_path):
    path = tmp_path / "run.npy"
    np.save(path, np.zeros((60, 48), np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputDataError, match=r"run.npy is truncated \(60 volumes announced\)"):
        _read_npy_rows(path, 48, np.float32, "48 voxels")


def test_group_ica_streams_subject_pcas_and_records_passes(tmp_path):
    """MultiscaleGroupICA reads the subject PCAs one at a time; same result as in memory."""
    from pipeline.ica.multiscale import fit_multiscale
    from workflows.interfaces.groupica import MultiscaleGroupICA, SubjectPCA

    rng = np.random.RandomState(RANDOM_STATE)
    mask = np.zeros((20, 20, 14), bool)
    mask[2:18, 2:18, 2:12] = True  # 2560 voxels: group PCA on the exact path
    n_vox = int(mask.sum())
    mask_file = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(mask.astype(np.uint8), AFFINE).to_filename(mask_file)
    maps = rng.laplace(size=(3, n_vox))
    pca_files, runs = [], []
    for s in range(4):
        data = (rng.randn(50, 3) @ maps + 0.5 * rng.randn(50, n_vox)).astype(np.float32)
        npy = tmp_path / f"run{s}.npy"
        np.save(npy, data)
        node = SubjectPCA(bold_file=str(npy), mask_file=str(mask_file), n_components=3,
                          out_dir=str(tmp_path / "pca"),
                          meta={"SourceFile": f"/d/sub-0{s}_task-rest_desc-preproc_bold.nii.gz"})
        pca_files.append(node.run(cwd=_dir(tmp_path / f"pca{s}")).outputs.pca_file)
        runs.append(np.load(pca_files[-1]))
    node = MultiscaleGroupICA(pca_files=pca_files, model_orders=[2, 3], n_runs=1,
                              random_state=RANDOM_STATE, device="cpu")
    out = node.run(cwd=_dir(tmp_path / "group")).outputs
    gpca = out.meta["GroupPCA"]
    assert gpca["Passes"] >= 1 and gpca["Converged"] is True
    assert json.loads(json.dumps(out.meta))  # JSON-ready sidecar
    eager = fit_multiscale({"reduced": [r["reduced"] for r in runs],
                            "whitening": [r["whitening"] for r in runs],
                            "dewhitening": [r["dewhitening"] for r in runs], "n_voxels": n_vox},
                           [2, 3], mask=mask, random_state=RANDOM_STATE, device="cpu")
    with np.load(out.model_file) as model:
        np.testing.assert_allclose(model["unmixing_3"], eager.estimators[3].unmixing_)
        np.testing.assert_allclose(model["gd_3_2"], eager.estimators[3].group_dewhitening_[2])
        np.testing.assert_allclose(model["gw_2_1"], eager.estimators[2].group_whitening_[1])


def test_subject_pca_stored_as_float16_read_as_float32(tmp_path):
    from pipeline.ica.persistence import read_subject_pcas
    from workflows.interfaces.groupica import SubjectPCA

    rng = np.random.RandomState(RANDOM_STATE)
    mask = np.ones((6, 6, 5), bool)
    mask_file = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(mask.astype(np.uint8), AFFINE).to_filename(mask_file)
    npy = tmp_path / "run.npy"
    np.save(npy, (rng.randn(40, 4) @ rng.randn(4, 180) + rng.randn(40, 180)).astype(np.float32))
    files = {}
    for dtype in ("float32", "float16"):
        node = SubjectPCA(bold_file=str(npy), mask_file=str(mask_file), n_components=4,
                          out_dir=str(tmp_path / dtype), reduced_dtype=dtype,
                          meta={"SourceFile": "/d/sub-01_task-rest_desc-preproc_bold.nii.gz"})
        files[dtype] = node.run(cwd=_dir(tmp_path / f"node_{dtype}")).outputs.pca_file
    with np.load(files["float16"]) as npz:
        assert npz["reduced"].dtype == np.float16
    voxels = np.arange(180)
    half = read_subject_pcas([files["float16"]], voxels)["reduced"][0]
    full = read_subject_pcas([files["float32"]], voxels)["reduced"][0]
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, rtol=2**-10, atol=1e-3)
