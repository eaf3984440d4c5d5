"""Tests for pipeline.denoise against planted signals and direct numpy references."""

from __future__ import annotations

import doctest
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import pipeline.denoise
from pipeline.confounds import MOTION_PARAMETERS, PRESETS
from pipeline.denoise import denoise_bold, qc_table, temporal_snr, tsnr_map
from pipeline.exceptions import InputDataError

N_VOLUMES = 120  # as written by the fmriprep_run fixture (checked below)
T_R = 2.0


def _corr_with(signals: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pearson r of every column of ``signals`` with ``reference``."""
    x = (signals - signals.mean(0)) / signals.std(0)
    y = (reference - reference.mean()) / reference.std()
    return (x * y[:, None]).mean(0)


@pytest.mark.parametrize("strategy", PRESETS)
def test_motion_signal_removed(fmriprep_run, strategy):
    before = np.median(_corr_with(fmriprep_run.data.T.astype(float), fmriprep_run.motion))
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold,
                       strategy=strategy, t_r=T_R)
    after = _corr_with(res.data.astype(float), fmriprep_run.motion[res.sample_mask])
    assert before > 0.7
    assert np.median(np.abs(after)) < 0.05
    assert res.data.dtype == np.float32
    assert res.data.shape == (res.sample_mask.size, fmriprep_run.mask_array.sum())
    # standardized: zero mean, unit variance (ddof=1) per voxel
    np.testing.assert_allclose(res.data.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(res.data.std(0, ddof=1), 1, atol=1e-4)
    assert res.qc["strategy"] == strategy


def test_compcor_columns_used_and_signal_removed(fmriprep_run):
    simple = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold,
                          strategy="simple", t_r=T_R)
    compcor = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold,
                           strategy="compcor", t_r=T_R)
    acc = [f"a_comp_cor_{k:02d}" for k in range(6)]
    assert set(acc) <= set(compcor.qc["confounds"])
    assert not set(acc) & set(simple.qc["confounds"])
    assert "csf" in simple.qc["confounds"] and "csf" not in compcor.qc["confounds"]
    assert not any(c.startswith("t_comp_cor") for c in compcor.qc["confounds"])
    # the planted aCompCor signal survives "simple" and is removed by "compcor"
    assert np.median(_corr_with(simple.data.astype(float), fmriprep_run.acompcor)) > 0.5
    assert np.median(np.abs(_corr_with(compcor.data.astype(float), fmriprep_run.acompcor))) < 0.05


def test_scrubbing_removes_high_fd_volumes(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold,
                       strategy="scrubbing", t_r=T_R, standardize=False)
    expected = np.setdiff1d(np.arange(N_VOLUMES), fmriprep_run.outliers)
    np.testing.assert_array_equal(res.sample_mask, expected)
    assert res.img.shape[3] == expected.size == res.qc["n_volumes_kept"]
    fd = fmriprep_run.confounds["framewise_displacement"]
    assert res.qc["mean_fd"] == pytest.approx(np.nanmean(fd))
    assert res.qc["max_fd"] == pytest.approx(np.nanmax(fd))
    assert res.qc["max_fd"] > 0.5 and res.qc["fd_threshold"] == 0.5
    # the image holds the data on the mask
    np.testing.assert_allclose(res.img.get_fdata()[fmriprep_run.mask_array].T, res.data)


def test_simple_keeps_all_volumes(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold, t_r=T_R)
    np.testing.assert_array_equal(res.sample_mask, np.arange(N_VOLUMES))
    assert res.qc["n_volumes"] == N_VOLUMES


def test_tsnr_matches_numpy(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold,
                       strategy="scrubbing", t_r=T_R, standardize=False)
    raw = fmriprep_run.data.astype(np.float64)  # (n_voxels, n_volumes)
    expected_before = np.median(raw.mean(1) / raw.std(1))
    kept = res.sample_mask
    expected_after = np.median(raw[:, kept].mean(1) / res.data.astype(np.float64).std(0))
    assert res.qc["tsnr_before"] == pytest.approx(expected_before, rel=1e-6)
    assert res.qc["tsnr_after"] == pytest.approx(expected_after, rel=1e-4)
    # removing motion (sd 60) and aCompCor-unrelated noise raises tSNR
    assert res.qc["tsnr_after"] > 1.5 * res.qc["tsnr_before"]


def test_tsnr_map_matches_numpy_over_blocks(monkeypatch):
    import pipeline.denoise as denoise

    monkeypatch.setattr(denoise, "_BLOCK_BYTES", 8 * 7 * 64)  # 64 voxels per block
    rng = np.random.default_rng(0)
    x = (100.0 + rng.standard_normal((7, 200))).astype(np.float32)
    x[:, 70] = 5.0  # constant voxel in the second block
    x64 = x.astype(np.float64)
    std = x64.std(axis=0)
    expected = np.divide(x64.mean(axis=0), std, out=np.zeros(200), where=std > 0)
    np.testing.assert_allclose(tsnr_map(x), expected, rtol=1e-12)
    assert tsnr_map(x)[70] == 0.0


def test_temporal_snr_skips_constant_voxels():
    x = np.array([[9.0, 5.0], [11.0, 5.0]])
    assert temporal_snr(x) == pytest.approx(10.0)
    assert np.isnan(temporal_snr(np.ones((3, 2))))


def test_custom_dataframe_and_no_confounds(fmriprep_run):
    frame = fmriprep_run.confounds[["trans_x", "a_comp_cor_00"]]
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, frame, strategy="custom", t_r=T_R,
                       sample_mask=np.arange(10, N_VOLUMES))
    assert res.qc["strategy"] == "custom" and res.qc["confounds"] == ["trans_x", "a_comp_cor_00"]
    assert res.sample_mask[0] == 10 and res.data.shape[0] == N_VOLUMES - 10
    assert np.median(np.abs(_corr_with(res.data.astype(float), fmriprep_run.motion[10:]))) < 0.1
    none = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="custom", t_r=T_R,
                        high_pass=None)
    assert none.qc["n_confounds"] == 0 and np.isnan(none.qc["mean_fd"])
    # with no regression the motion signal is still there
    assert np.median(_corr_with(none.data.astype(float), fmriprep_run.motion)) > 0.5


def test_low_pass_filter_applied(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="custom", t_r=T_R,
                       low_pass=0.08, standardize=False)
    spectrum = np.abs(np.fft.rfft(res.data.astype(float), axis=0)) ** 2
    freqs = np.fft.rfftfreq(N_VOLUMES, d=T_R)
    assert spectrum[freqs > 0.15].sum() < 0.01 * spectrum[freqs < 0.08].sum()


def test_qc_table_orders_columns(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold, t_r=T_R)
    table = qc_table([{"participant_id": "sub-01", "run": 1, **res.qc},
                      {"participant_id": "sub-02", "run": 1, **res.qc}])
    assert list(table.columns[:4]) == ["participant_id", "run", "n_volumes", "n_volumes_kept"]
    assert table.shape[0] == 2
    assert table.loc[0, "confounds"] == ",".join(res.qc["confounds"])
    assert isinstance(table, pd.DataFrame)


# --- errors -----------------------------------------------------------------------------


def test_fixture_constants(fmriprep_run):
    assert (fmriprep_run.n_volumes, fmriprep_run.t_r) == (N_VOLUMES, T_R)


def test_too_many_volumes_scrubbed(tmp_path, fmriprep_writer):
    run = fmriprep_writer(tmp_path, spikes=tuple(range(5, 115, 4)))
    with pytest.raises(InputDataError, match=r"Censoring kept \d+ of 120 volumes .*looser threshold"):
        denoise_bold(run.bold, run.mask, run.bold, strategy="scrubbing", t_r=T_R)


def test_unknown_strategy(fmriprep_run):
    with pytest.raises(ValueError, match="'strategy' must be one of"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="aggressive", t_r=T_R)


@pytest.mark.parametrize("t_r", [0, -2.0])
def test_bad_t_r(fmriprep_run, t_r):
    with pytest.raises(ValueError, match="'t_r' must be > 0"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="none", t_r=t_r)


def test_bad_min_fraction(fmriprep_run):
    with pytest.raises(ValueError, match="'min_fraction_kept' must be in"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="none", t_r=T_R,
                     min_fraction_kept=0)


def test_custom_with_path_refused(fmriprep_run):
    with pytest.raises(ValueError, match="strategy 'custom' regresses the columns of a pandas"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.confounds_tsv,
                     strategy="custom", t_r=T_R)


def test_sample_mask_with_preset_refused(fmriprep_run):
    with pytest.raises(ValueError, match="'sample_mask' is only used with strategy 'custom'"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold, t_r=T_R,
                     sample_mask=np.arange(50))


def test_confounds_bad_type(fmriprep_run):
    with pytest.raises(TypeError, match="'confounds' must be a path"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, np.zeros((120, 2)), t_r=T_R)


def test_dataframe_nan_refused(fmriprep_run):
    frame = fmriprep_run.confounds[["trans_x", "framewise_displacement"]]
    with pytest.raises(InputDataError, match="holds 1 NaN values .*fill them"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, frame, strategy="custom", t_r=T_R)


def test_dataframe_wrong_length(fmriprep_run):
    frame = fmriprep_run.confounds[["trans_x"]].iloc[:100]
    with pytest.raises(InputDataError, match="has 100 rows but .* has 120 volumes"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, frame, t_r=T_R)


def test_missing_confounds_columns(tmp_path, fmriprep_run):
    for path in (fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.confounds_json):
        shutil.copy(path, tmp_path / path.name)
    tsv = tmp_path / fmriprep_run.confounds_tsv.name
    fmriprep_run.confounds.drop(columns=["csf"]).to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    bold = tmp_path / fmriprep_run.bold.name
    with pytest.raises(InputDataError, match=r"confounds_timeseries.tsv lacks 1 column\(s\) that "
                                             r"--denoise-strategy simple needs: csf\. It supports: "
                                             r"compcor, none;"):
        denoise_bold(bold, tmp_path / fmriprep_run.mask.name, bold, t_r=T_R)


def test_missing_confounds_file(tmp_path, fmriprep_run):
    for path in (fmriprep_run.bold, fmriprep_run.mask):
        shutil.copy(path, tmp_path / path.name)
    bold = tmp_path / fmriprep_run.bold.name
    with pytest.raises(InputDataError, match=r"No fMRIPrep confounds table .* lies next to .*"
                                             r"desc-preproc_bold.nii.gz.*--denoise-strategy none"):
        denoise_bold(bold, tmp_path / fmriprep_run.mask.name, bold, t_r=T_R)


def test_no_confounds_table_suggests_none(fmriprep_run):
    with pytest.raises(InputDataError, match=r"desc-preproc_bold.nii.gz has no confounds table, "
                                             r"which --denoise-strategy scrubbing needs; .*use "
                                             r"--denoise-strategy none"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="scrubbing", t_r=T_R)


def test_confounds_file_row_mismatch(tmp_path, fmriprep_run):
    short = tmp_path / "short.tsv"
    fmriprep_run.confounds.iloc[:50].to_csv(short, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputDataError, match="short.tsv has 50 rows but .* has 120 volumes"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, short, t_r=T_R)


def test_mask_on_other_grid(tmp_path, fmriprep_run):
    mask = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)).to_filename(mask)
    with pytest.raises(InputDataError, match="different grids; resample"):
        denoise_bold(fmriprep_run.bold, mask, None, strategy="none", t_r=T_R)


def test_doctests():
    result = doctest.testmod(pipeline.denoise)
    assert result.attempted > 0 and result.failed == 0


def test_min_volumes_checked_before_denoising(fmriprep_run):
    with pytest.raises(InputDataError, match="has 120 volumes; at least 200 are needed"):
        denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="none", t_r=T_R,
                     min_volumes=200)


def test_image_inputs_named_in_messages(fmriprep_run):
    bold = nib.load(fmriprep_run.bold)
    with pytest.raises(InputDataError, match=r"Censoring kept 110 of 120 volumes of .*desc-preproc_bold"):
        denoise_bold(bold, nib.load(fmriprep_run.mask), None, strategy="none", t_r=T_R,
                     sample_mask=np.arange(10, 120), min_fraction_kept=0.95)


@pytest.mark.integration
def test_simulator_motion_leak_removed(tmp_path):
    """On pipeline.simulate output, the planted motion leak is regressed out."""
    import json

    simulate = pytest.importorskip("pipeline.simulate")
    cohort = simulate.simulate_cohort(n_subjects=4, n_sites=1, n_volumes=80, grid_mm=12.0,
                                      effect_size=0.0, random_state=0)
    subject = cohort.subjects[0]
    n_volumes = subject.bold.shape[0]
    prefix = "sub-01_task-rest"
    vol = np.zeros(cohort.mask.shape + (n_volumes,), np.float32)
    vol[cohort.mask] = subject.bold.T
    bold = tmp_path / f"{prefix}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    mask = tmp_path / f"{prefix}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz"
    nib.Nifti1Image(vol, cohort.affine).to_filename(bold)
    nib.Nifti1Image(cohort.mask.astype(np.uint8), cohort.affine).to_filename(mask)
    tsv = tmp_path / f"{prefix}_desc-confounds_timeseries.tsv"
    subject.confounds.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    tsv.with_suffix(".json").write_text(json.dumps(subject.confounds_metadata))

    motion = subject.confounds[["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]]

    def motion_r2(signals, kept):
        design = np.column_stack([motion.to_numpy()[kept], np.ones(kept.size)])
        design[:, :-1] -= design[:, :-1].mean(0)
        beta, *_ = np.linalg.lstsq(design, signals, rcond=None)
        return np.median(1 - (signals - design @ beta).var(0) / signals.var(0))

    before = motion_r2(subject.bold.astype(float), np.arange(n_volumes))
    res = denoise_bold(bold, mask, bold, strategy="simple", t_r=cohort.t_r)
    after = motion_r2(res.data.astype(float), res.sample_mask)
    assert before > 0.02 and after < 0.2 * before
    assert res.qc["mean_fd"] == pytest.approx(np.nanmean(subject.confounds["framewise_displacement"]))


# --- reference: one nilearn.signal.clean call on the whole run -----------------------------------


def _nilearn_reference(run, strategy, *, standardize=True, **clean_kwargs):
    """What denoise_bold computed before issue 15: signal.clean on the whole float64 array."""
    from nilearn import signal
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.masking import apply_mask

    params = {"fd_threshold": 0.5, "std_dvars_threshold": 1.5} if strategy == "scrubbing" else {}
    regressors, sample_mask = load_confounds_strategy(str(run.bold), denoise_strategy=strategy,
                                                      **params)
    raw = apply_mask(str(run.bold), str(run.mask)).astype(np.float64)
    kwargs = {"detrend": True, "filter": "butterworth", "high_pass": 0.01, "low_pass": None,
              **clean_kwargs}
    cleaned = signal.clean(raw, standardize=None, sample_mask=sample_mask,
                           confounds=regressors.to_numpy(dtype=np.float64),
                           standardize_confounds=True, t_r=T_R, **kwargs)
    if standardize:
        cleaned = signal.clean(cleaned, detrend=False, standardize="zscore_sample", filter=False,
                               t_r=T_R)
    return regressors, sample_mask, cleaned


@pytest.mark.parametrize("strategy", PRESETS)
@pytest.mark.parametrize("low_pass", [None, 0.08])
def test_matches_one_nilearn_clean_call(fmriprep_run, monkeypatch, strategy, low_pass):
    """Blocks of voxels, whole-block filtering and Q (Q^T X): nilearn's result to float32 rounding."""
    monkeypatch.setattr(pipeline.denoise, "_BLOCK_BYTES", 8 * N_VOLUMES * 30)  # 2 blocks of 64/32
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold,
                       strategy=strategy, t_r=T_R, low_pass=low_pass)
    regressors, sample_mask, expected = _nilearn_reference(fmriprep_run, strategy,
                                                           low_pass=low_pass)
    pd.testing.assert_frame_equal(res.confounds, regressors)
    kept = np.arange(N_VOLUMES) if sample_mask is None else sample_mask
    np.testing.assert_array_equal(res.sample_mask, kept)
    assert res.qc["derived_confounds"] == []
    # z-scores: float32 has ~7 digits
    np.testing.assert_allclose(res.data, expected, rtol=0, atol=2e-6)


def test_unstandardized_matches_nilearn(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.confounds_tsv,
                       strategy="scrubbing", t_r=T_R, standardize=False)
    _, _, expected = _nilearn_reference(fmriprep_run, "scrubbing", standardize=False)
    np.testing.assert_allclose(res.data, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def test_table_path_and_dataframe_agree(fmriprep_run):
    """The TSV, the BOLD it lies beside and the table as a DataFrame are the same input."""
    by_bold = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold, t_r=T_R)
    by_tsv = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.confounds_tsv,
                          t_r=T_R)
    by_frame = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.confounds, t_r=T_R)
    np.testing.assert_array_equal(by_bold.data, by_tsv.data)
    np.testing.assert_array_equal(by_bold.data, by_frame.data)


# --- strategy "none" ----------------------------------------------------------------------------


def test_none_passes_data_through(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, None, strategy="none", t_r=T_R)
    np.testing.assert_array_equal(res.data, fmriprep_run.data.T)
    assert res.data.dtype == np.float32
    assert res.qc["n_confounds"] == 0 and res.confounds is None
    assert (res.qc["high_pass"], res.qc["low_pass"], res.qc["detrend"], res.qc["standardize"]) == (
        None, None, False, False)
    raw = fmriprep_run.data.T.astype(np.float64)
    assert res.qc["tsnr_before"] == res.qc["tsnr_after"] == pytest.approx(temporal_snr(raw))


def test_none_uses_table_for_fd_only(fmriprep_run):
    res = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.confounds_tsv,
                       strategy="none", t_r=T_R, sample_mask=np.arange(5, N_VOLUMES))
    np.testing.assert_array_equal(res.data, fmriprep_run.data.T[5:])
    assert res.qc["mean_fd"] == pytest.approx(np.nanmean(fmriprep_run.confounds[
        "framewise_displacement"]))


# --- tables beyond fMRIPrep ---------------------------------------------------------------------


def _copy_run(run, folder, table):
    """The run's BOLD and mask in ``folder`` with ``table`` as its confounds TSV (no JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (run.bold, run.mask):
        shutil.copy(path, folder / path.name)
    tsv = folder / run.confounds_tsv.name
    table.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    return folder / run.bold.name, folder / run.mask.name, tsv


def test_six_motion_parameters_expanded_as_fmriprep(tmp_path, fmriprep_run):
    """SPM's six realignment parameters (+ tissue signals): fMRIPrep's expansions are derived."""
    bases = list(MOTION_PARAMETERS) + ["csf", "white_matter"]
    bold, mask, tsv = _copy_run(fmriprep_run, tmp_path, fmriprep_run.confounds[bases])
    res = denoise_bold(bold, mask, tsv, t_r=T_R)
    full = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.bold, t_r=T_R,
                        high_pass=0.01)
    derived = [f"{b}_{s}" for b in MOTION_PARAMETERS
               for s in ("derivative1", "power2", "derivative1_power2")]
    assert sorted(res.qc["derived_confounds"]) == sorted(derived)
    # the same 26 regressors as fMRIPrep's table (no cosines here: the Butterworth filter remains)
    cosines = [c for c in full.confounds.columns if c.startswith("cosine")]
    pd.testing.assert_frame_equal(res.confounds,
                                  full.confounds.drop(columns=cosines)[res.confounds.columns])
    assert res.confounds.shape[1] == 26


def test_only_motion_parameters_names_missing_and_supported(tmp_path, fmriprep_run):
    bold, mask, tsv = _copy_run(fmriprep_run, tmp_path,
                                fmriprep_run.confounds[list(MOTION_PARAMETERS)])
    with pytest.raises(InputDataError, match=r"confounds_timeseries.tsv lacks 2 column\(s\) that "
                                             r"--denoise-strategy simple needs: csf, white_matter\. "
                                             r"It supports: none;") as exc:
        denoise_bold(bold, mask, tsv, t_r=T_R)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("strategy", "missing"), [
    ("scrubbing", "framewise_displacement, std_dvars"),
    ("compcor", r"a_comp_cor_\* \(with Mask 'combined' in the JSON sidecar\)"),
])
def test_table_for_simple_names_what_other_strategies_lack(tmp_path, fmriprep_run, strategy,
                                                            missing):
    """The 26 columns of 'simple' (24 motion + csf + white_matter): which strategies work."""
    simple = [c for c in fmriprep_run.confounds.columns
              if c.startswith(MOTION_PARAMETERS) or c in ("csf", "white_matter")]
    bold, mask, tsv = _copy_run(fmriprep_run, tmp_path, fmriprep_run.confounds[simple])
    with pytest.raises(InputDataError, match=rf"--denoise-strategy {strategy} needs: {missing}\. "
                                             r"It supports: simple, none;"):
        denoise_bold(bold, mask, tsv, strategy=strategy, t_r=T_R)


def test_nan_beyond_first_row_refused(tmp_path, fmriprep_run):
    table = fmriprep_run.confounds.copy()
    table.loc[50, "csf"] = np.nan
    bold, mask, tsv = _copy_run(fmriprep_run, tmp_path, table)
    with pytest.raises(InputDataError, match=r"confounds_timeseries.tsv has NaN or infinite values "
                                             r"in csf beyond the first row"):
        denoise_bold(bold, mask, tsv, t_r=T_R)


# --- NaN outside the brain (SPM) -------------------------------------------------------------------


def test_nan_outside_mask_ignored(tmp_path, fmriprep_run):
    img = nib.load(fmriprep_run.bold)
    values = img.get_fdata(dtype=np.float32)
    values[~fmriprep_run.mask_array] = np.nan
    bold = tmp_path / fmriprep_run.bold.name
    nib.Nifti1Image(values, img.affine, img.header).to_filename(bold)
    res = denoise_bold(bold, fmriprep_run.mask, fmriprep_run.confounds_tsv, t_r=T_R)
    ref = denoise_bold(fmriprep_run.bold, fmriprep_run.mask, fmriprep_run.confounds_tsv, t_r=T_R)
    np.testing.assert_array_equal(res.data, ref.data)


def test_nan_inside_mask_refused(tmp_path, fmriprep_run):
    img = nib.load(fmriprep_run.bold)
    values = img.get_fdata(dtype=np.float32)
    values[2, 2, 2, 7:9] = np.nan
    bold = tmp_path / fmriprep_run.bold.name
    nib.Nifti1Image(values, img.affine, img.header).to_filename(bold)
    with pytest.raises(InputDataError, match=r"desc-preproc_bold.nii.gz has 2 NaN or infinite "
                                             r"values inside the brain mask .*desc-brain_mask"
                                             r".nii.gz \(in 1 voxels.*re-run preprocessing"):
        denoise_bold(bold, fmriprep_run.mask, None, strategy="none", t_r=T_R)


@pytest.mark.realdata
def test_spm_run_with_nan_outside_mask(tmp_path, shared_data):
    """A real SPM-preprocessed run (COINSTAC, int16 scaled) with NaN written outside its mask."""
    from nilearn.masking import apply_mask

    root = shared_data / "coinstac_gica_10mm"
    source = sorted((root / "local0").glob("rtswa_*.nii.gz"))[0]
    mask = root / "mask.nii.gz"
    img = nib.load(source)
    inside = np.asanyarray(nib.load(mask).dataobj) > 0
    values = img.get_fdata(dtype=np.float32)
    values[~inside] = np.nan
    n_nan = int((~inside).sum()) * img.shape[3]
    bold = tmp_path / "swa_run.nii.gz"
    nib.Nifti1Image(values, img.affine).to_filename(bold)
    res = denoise_bold(bold, mask, None, strategy="none", t_r=2.0)
    expected = apply_mask(source, nib.Nifti1Image(inside.astype(np.uint8), img.affine))
    assert n_nan > 0 and res.data.shape == (img.shape[3], int(inside.sum()))
    np.testing.assert_allclose(res.data, expected, rtol=2**-23)
    values[inside.nonzero()[0][0], inside.nonzero()[1][0], inside.nonzero()[2][0], :3] = np.nan
    nib.Nifti1Image(values, img.affine).to_filename(bold)
    with pytest.raises(InputDataError, match=r"swa_run.nii.gz has 3 NaN or infinite values inside "
                                             r"the brain mask .*mask.nii.gz \(in 1 voxels"):
        denoise_bold(bold, mask, None, strategy="none", t_r=2.0)
