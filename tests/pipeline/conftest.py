"""Fixtures for pipeline tests: tiny fMRIPrep-style runs with planted signals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

RANDOM_STATE = 42
SHAPE = (5, 5, 4)  # 100 voxels, 96 in the mask
N_VOLUMES = 120
T_R = 2.0
SPIKES = (30, 60, 90)  # volumes with a sudden head displacement (FD > 0.5 mm)
PREFIX = "sub-01_task-rest_run-1"


@dataclass
class FmriprepRun:
    """Paths and ground truth of one synthetic fMRIPrep run."""

    bold: Path
    mask: Path
    confounds_tsv: Path
    confounds_json: Path
    confounds: pd.DataFrame  # as written (n/a -> NaN)
    data: np.ndarray  # (n_voxels_in_mask, n_volumes) float32, as written
    mask_array: np.ndarray  # 3-D bool
    motion: np.ndarray  # (n_volumes,) trans_x planted in every voxel
    acompcor: np.ndarray  # (n_volumes,) a_comp_cor_00 planted in every voxel
    outliers: np.ndarray  # indices with FD > 0.5 or std_dvars > 1.5 (ground truth)
    n_volumes: int
    t_r: float


def _smooth(rng: np.random.RandomState, n: int, width: int = 5) -> np.ndarray:
    x = np.convolve(rng.randn(n + width), np.ones(width) / width, mode="valid")[:n]
    return (x - x.mean()) / x.std()


def write_fmriprep_run(
    folder: Path,
    *,
    random_state: int = RANDOM_STATE,
    n_volumes: int = N_VOLUMES,
    spikes: tuple[int, ...] = SPIKES,
    motion_beta: float = 60.0,
    acompcor_beta: float = 30.0,
) -> FmriprepRun:
    """Write BOLD, mask and confounds TSV/JSON with fMRIPrep >= 20.2 names.

    Every in-mask voxel = 1000 + 10 * white noise + motion_beta * w_v * trans_x
    + acompcor_beta * u_v * a_comp_cor_00, with random per-voxel weights
    w_v, u_v in [0.5, 1.5]. Head displacement jumps by 1.5 mm at each volume in
    ``spikes`` and returns at the next one, so FD > 0.5 mm at ``s`` and ``s+1``.
    """
    rng = np.random.RandomState(random_state)
    func = folder / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    t = np.arange(n_volumes)

    # 6 motion parameters (mm / rad): slow drifts, plus spikes in trans_y
    motion = {name: 0.1 * _smooth(rng, n_volumes, 9) for name in ("trans_x", "trans_y", "trans_z")}
    motion.update({n: 0.001 * _smooth(rng, n_volumes, 9) for n in ("rot_x", "rot_y", "rot_z")})
    for s in spikes:
        motion["trans_y"][s] += 1.5
    table = {}
    for name, values in motion.items():
        deriv = np.r_[np.nan, np.diff(values)]
        table[name] = values
        table[f"{name}_derivative1"] = deriv
        table[f"{name}_power2"] = values**2
        table[f"{name}_derivative1_power2"] = deriv**2
    fd = sum(np.abs(np.diff(motion[n])) for n in ("trans_x", "trans_y", "trans_z"))
    fd = fd + 50.0 * sum(np.abs(np.diff(motion[n])) for n in ("rot_x", "rot_y", "rot_z"))
    table["framewise_displacement"] = np.r_[np.nan, fd]
    std_dvars = np.r_[np.nan, np.ones(n_volumes - 1)]
    table["std_dvars"] = std_dvars
    for name in ("csf", "white_matter", "global_signal"):
        values = _smooth(rng, n_volumes, 3)
        table[name] = values
        table[f"{name}_derivative1"] = np.r_[np.nan, np.diff(values)]
        table[f"{name}_power2"] = values**2
        table[f"{name}_derivative1_power2"] = np.r_[np.nan, np.diff(values)] ** 2
    for k in range(6):
        table[f"a_comp_cor_{k:02d}"] = rng.randn(n_volumes)
    for k in range(3):
        table[f"t_comp_cor_{k:02d}"] = rng.randn(n_volumes)
    n_cos = int(np.floor(2 * n_volumes * T_R / 128.0))
    for k in range(n_cos):  # fMRIPrep's DCT-II basis (128 s cut-off), unit norm
        table[f"cosine{k:02d}"] = np.sqrt(2.0 / n_volumes) * np.cos(
            np.pi * (2 * t + 1) * (k + 1) / (2 * n_volumes)
        )
    confounds = pd.DataFrame(table)
    tsv = func / f"{PREFIX}_desc-confounds_timeseries.tsv"
    confounds.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    meta = {f"a_comp_cor_{k:02d}": {"Method": "aCompCor", "Mask": "combined", "Retained": True}
            for k in range(6)}
    meta.update({f"t_comp_cor_{k:02d}": {"Method": "tCompCor", "Retained": True} for k in range(3)})
    jsn = tsv.with_suffix(".json")
    jsn.write_text(json.dumps(meta))

    mask = np.ones(SHAPE, dtype=bool)
    mask[0, 0, :] = False
    n_vox = int(mask.sum())
    w = rng.uniform(0.5, 1.5, n_vox)[:, None]
    u = rng.uniform(0.5, 1.5, n_vox)[:, None]
    acompcor = confounds["a_comp_cor_00"].to_numpy()
    trans = motion["trans_x"] / motion["trans_x"].std()
    data = (
        1000.0
        + 10.0 * rng.randn(n_vox, n_volumes)
        + motion_beta * w * trans[None, :]
        + acompcor_beta * u * acompcor[None, :]
    ).astype(np.float32)
    vol = np.zeros(SHAPE + (n_volumes,), dtype=np.float32)
    vol[mask] = data
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold_img = nib.Nifti1Image(vol, affine)
    bold_img.header.set_xyzt_units("mm", "sec")
    bold_img.header["pixdim"][4] = T_R
    bold = func / f"{PREFIX}_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
    bold_img.to_filename(bold)
    mask_path = func / f"{PREFIX}_space-MNI152NLin2009cAsym_res-2_desc-brain_mask.nii.gz"
    nib.Nifti1Image(mask.astype(np.uint8), affine).to_filename(mask_path)

    outliers = np.flatnonzero(np.nan_to_num(confounds["framewise_displacement"]) > 0.5)
    return FmriprepRun(
        bold=bold,
        mask=mask_path,
        confounds_tsv=tsv,
        confounds_json=jsn,
        confounds=pd.read_csv(tsv, sep="\t", na_values=["n/a"]),
        data=data,
        mask_array=mask,
        motion=trans,
        acompcor=acompcor,
        outliers=outliers,
        n_volumes=n_volumes,
        t_r=T_R,
    )


@pytest.fixture(scope="module")
def fmriprep_run(tmp_path_factory) -> FmriprepRun:
    """One synthetic fMRIPrep run (read-only: do not modify its files)."""
    return write_fmriprep_run(tmp_path_factory.mktemp("fmriprep"))


@pytest.fixture
def fmriprep_writer():
    """The writer itself, for tests that need a variant (e.g. more spikes)."""
    return write_fmriprep_run
