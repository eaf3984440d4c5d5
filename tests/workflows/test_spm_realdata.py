"""The path a GIFT/NeuroMark user takes: real SPM-preprocessed runs through the command line.

A BIDS dataset is built from ``../shared/data/coinstac_gica_10mm`` exactly as an SPM user
would: the preprocessed BOLD as float32 with NaN outside the brain (SPM's convention), the
brain mask, the TR in a sidecar, no confounds table; GIFT's own template file name
(``Neuromark_fMRI_1.0.nii``) and domain file (``Neuromark_fMRI_1.0.txt``). Both levels run
through the CLI; the GIFT-compatible maps must equal ``moo_icar(..., gift_compatible=True)``
on the same runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipeline.ica.scica import moo_icar
from workflows.exit_codes import ExitCode
from workflows.cli import run

pytestmark = [pytest.mark.integration, pytest.mark.realdata]

N_RUNS = 6  # three per site
SPACE = "IXI549Space"  # SPM12's MNI template space in BIDS


def _spm_dataset(source: Path, root: Path) -> Path:
    """Raw BIDS root + SPM derivatives with NaN outside the brain and no confounds."""
    subjects = pd.read_csv(source / "subjects.tsv", sep="\t")
    subjects = pd.concat([subjects[subjects["site"] == site].head(N_RUNS // 2)
                          for site in ("local0", "local1")])
    bids = root / "bids"
    spm = bids / "derivatives" / "spm"
    spm.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "COINSTAC SPM runs", "BIDSVersion": "1.9.0"}))
    (spm / "dataset_description.json").write_text(json.dumps(
        {"Name": "SPM12 preprocessing", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "SPM", "Version": "12"}]}))
    (spm / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    mask_img = nib.load(source / "mask.nii.gz")
    mask = np.asarray(mask_img.dataobj) > 0.5
    rows = []
    for number, row in enumerate(subjects.itertuples(), start=1):
        label = f"{number:02d}"
        func = spm / f"sub-{label}" / "func"
        func.mkdir(parents=True)
        (bids / f"sub-{label}").mkdir()
        img = nib.load(source / row.file)
        data = img.get_fdata(dtype=np.float32)
        data[~mask] = np.nan
        bold = nib.Nifti1Image(data, img.affine)
        bold.header.set_data_dtype(np.float32)
        stem = f"sub-{label}_task-rest_space-{SPACE}"
        bold.to_filename(func / f"{stem}_desc-preproc_bold.nii.gz")
        nib.Nifti1Image(mask.astype(np.uint8), mask_img.affine).to_filename(
            func / f"{stem}_desc-brain_mask.nii.gz")
        rows.append({"participant_id": f"sub-{label}", "site": row.site, "age": row.age,
                     "sex": row.gender})
    pd.DataFrame(rows).to_csv(bids / "participants.tsv", sep="\t", index=False)
    return bids


@pytest.fixture(scope="module")
def gift_user(shared_data, tmp_path_factory):
    source = shared_data / "coinstac_gica_10mm"
    root = tmp_path_factory.mktemp("spm")
    bids = _spm_dataset(source, root)
    template = root / "Neuromark_fMRI_1.0.nii"  # GIFT's file name, uncompressed
    nib.save(nib.load(source / "NeuroMark.nii.gz"), template)
    filters = root / "filters.json"
    filters.write_text(json.dumps({"bold": {"space": SPACE}}))
    labels = shared_data / "neuromark" / "gift_tables" / "Neuromark_fMRI_1.0.txt"
    out, work = root / "out", root / "work"
    common = ["-w", str(work), "--derivatives", str(bids / "derivatives" / "spm"),
              "--bids-filter-file", str(filters), "--nprocs", "2"]
    participant = run([str(bids), str(out), "participant", *common, "--template", str(template),
                       "--template-labels", str(labels), "--denoise-strategy", "none",
                       "--gift-compatible"])
    group = run([str(bids), str(out), "group", *common])
    return {"bids": bids, "out": out, "source": source, "participant": participant,
            "group": group}


def test_both_levels_succeed(gift_user):
    assert gift_user["participant"] == ExitCode.OK
    assert gift_user["group"] == ExitCode.OK


def test_gift_compatible_maps_equal_gift(gift_user):
    """Per-network |r| > 0.999 with GIFT's MOO-ICAR (GIFT's own preprocessing inside it)."""
    source, bids, out = gift_user["source"], gift_user["bids"], gift_user["out"]
    mask = np.asarray(nib.load(source / "mask.nii.gz").dataobj) > 0.5
    template = nib.load(source / "NeuroMark.nii.gz").get_fdata()[mask].T
    for number in range(1, N_RUNS + 1):
        label = f"sub-{number:02d}"
        func = out / label / "func"
        stem = f"{label}_task-rest_space-{SPACE}_scale-53"
        bold = (bids / "derivatives" / "spm" / label / "func"
                / f"{label}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz")
        reference, reference_tcs = moo_icar(nib.load(bold).get_fdata()[mask].T, template,
                                            gift_compatible=True, device="cpu")
        gift = nib.load(func / f"{stem}_desc-gift_components.nii.gz").get_fdata()[mask].T
        r = np.abs([np.corrcoef(a, b)[0, 1] for a, b in zip(gift, reference)])
        assert r.min() > 0.999, (label, r.min())
        np.testing.assert_allclose(gift, reference, atol=1e-3 * np.abs(reference).max())
        tcs = pd.read_csv(func / f"{stem}_desc-ica_timeseries.tsv", sep="\t").to_numpy()
        np.testing.assert_allclose(tcs, reference_tcs, atol=1e-3 * np.abs(reference_tcs).max())
        zmaps = nib.load(func / f"{stem}_desc-ica_components.nii.gz").get_fdata()[mask].T
        assert np.allclose(zmaps.std(axis=1, ddof=1), 1, atol=1e-3)


def test_gift_domains_reach_fnc_and_reports(gift_user):
    out = gift_user["out"]
    relmat = next((out / "sub-01" / "func").glob("*_desc-multiscale_relmat.json"))
    meta = json.loads(relmat.read_text())
    assert len(meta["NodeLabels"]) == 53 and meta["NodeDomains"][:6] == ["SC"] * 5 + ["AU"]
    assert meta["PostProcessing"]["MotionRegression"] is False  # no confounds table
    for page in [out / "sub-01.html", out / "group.html"]:
        text = page.read_text()
        assert "Traceback" not in text and 'class="error"' not in text
    figures = sorted(p.name for p in (out / "sub-01" / "figures").iterdir())
    assert any("scale-53_desc-ica_components" in f for f in figures), figures
    assert any("desc-multiscale_relmat" in f for f in figures), figures
    group_figures = sorted(p.name for p in (out / "group" / "figures").iterdir())
    assert any("groupmean" in f for f in group_figures), group_figures
    assert any("scale-53" in f and "components" in f for f in group_figures), group_figures
