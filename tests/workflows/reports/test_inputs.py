"""What the reports read back: a run's fMRIPrep companions found by their BIDS entities."""

from __future__ import annotations

from workflows.reports.inputs import input_companion

SPACE = "space-MNI152NLin2009cAsym"


def test_input_companion_matches_the_run_and_for_images_the_grid(tmp_path):
    func = tmp_path / "sub-01" / "ses-a" / "func"
    func.mkdir(parents=True)
    names = [
        f"sub-01_ses-a_task-rest_run-1_{SPACE}_res-2_desc-preproc_bold.nii.gz",
        f"sub-01_ses-a_task-rest_run-1_{SPACE}_res-1_desc-brain_mask.nii.gz",
        f"sub-01_ses-a_task-rest_run-1_{SPACE}_res-2_desc-brain_mask.nii.gz",
        f"sub-01_ses-a_task-rest_run-1_{SPACE}_res-2_desc-brain_mask.json",
        f"sub-01_ses-a_task-rest_run-2_{SPACE}_res-2_desc-brain_mask.nii.gz",
        "sub-01_ses-a_task-rest_run-2_desc-confounds_timeseries.tsv",
        "sub-01_ses-a_task-rest_run-01_desc-confounds_timeseries.tsv",  # run-01 is run 1
        "sub-01_ses-a_task-rest_run-01_desc-confounds_timeseries.json",
    ]
    for name in names:
        (func / name).touch()
    bold = func / names[0]
    assert input_companion(bold, "brain", "mask", same_grid=True) == func / names[2]
    assert input_companion(bold, "confounds", "timeseries", same_grid=False) == func / names[6]
    assert input_companion(func / names[4], "confounds", "timeseries",
                           same_grid=False) == func / names[5]
    assert input_companion(bold, "confounds", "regressors", same_grid=False) is None
