"""Real data: GIFT's own Infomax output and NeuroMark matches on the COINSTAC 10 mm cohort."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ica._matching import match_components
from pipeline.ica.infomax import Infomax
from pipeline.ica.multiscale import fit_multiscale, match_to_template

RANDOM_STATE = 42  # same as conftest.RANDOM_STATE (tests are not a package)
#: CanICA (nilearn) at 20 components matches 9/20 NeuroMark networks above r = 0.4
#: with median best r = 0.35 on these data (issue 4): msica must do at least as well.
CANICA_MATCHES_20 = 9
CANICA_MEDIAN_20 = 0.35


@pytest.mark.realdata
def test_infomax_reproduces_gift_fixture(shared_data):
    """Same input as GIFT's test_icatb_backReconstruct: Infomax on its 20 group PCs."""
    h5py = pytest.importorskip("h5py")
    ref = shared_data / "gift_fixtures" / "reference" / "test_icatb_backReconstruct"
    with h5py.File(ref / "lores_pca_r1-1.mat") as f:
        pcasig = np.array(f["pcasig"])  # h5py shows MATLAB's 4848 x 20 as (20, 4848)
    with h5py.File(ref / "lores_ica.mat") as f:
        icasig = np.array(f["icasig"])  # MATLAB 20 x 4848 -> (4848, 20)
    est = Infomax(random_state=RANDOM_STATE, device="cpu").fit(pcasig.T)
    assert est.block is None and est.n_iter_ < 512  # GIFT defaults, converged
    r = match_components(est.transform(pcasig.T).T, icasig.T)[2]
    # Infomax is stochastic (sample order): the well-defined sources agree with GIFT's.
    assert np.sum(r > 0.9) >= 14 and r.mean() > 0.85


@pytest.mark.realdata
def test_coinstac_neuromark_matches(shared_data, record_property):
    nib = pytest.importorskip("nibabel")
    root = shared_data / "coinstac_gica_10mm"
    mask = nib.load(root / "mask.nii.gz").get_fdata() > 0.5
    files = sorted(root.glob("local*/rtswa_*.nii.gz"))
    assert len(files) == 40
    data = [nib.load(f).get_fdata(dtype=np.float32)[mask].T for f in files]
    template = nib.load(root / "NeuroMark.nii.gz").get_fdata()[mask].T
    res = fit_multiscale(data, [20, 30], random_state=RANDOM_STATE, device="cpu")
    for order, floor in [(20, CANICA_MATCHES_20), (30, CANICA_MATCHES_20)]:
        matches = match_to_template(res.components[order], template)
        n_matched, median_r = int(matches["matched"].sum()), float(matches["r"].median())
        record_property(f"neuromark_matches_{order}", n_matched)
        record_property(f"neuromark_median_r_{order}", median_r)
        assert n_matched >= floor, (order, n_matched, median_r)
        assert median_r >= CANICA_MEDIAN_20, (order, n_matched, median_r)
