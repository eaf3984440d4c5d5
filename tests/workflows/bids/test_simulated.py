"""Round trip of the simulated BIDS dataset: files, sidecars, pybids and nilearn confounds."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipeline.simulate import simulate_cohort
from workflows.bids.simulated import (
    run_simulate,
    truth_template_options,
    write_bids_dataset,
)

RANDOM_STATE = 42
SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(n_subjects=4, n_sites=2, n_volumes=40, grid_mm=10.0,
                           random_state=RANDOM_STATE)


@pytest.fixture(scope="module")
def dataset(cohort, tmp_path_factory):
    return write_bids_dataset(cohort, tmp_path_factory.mktemp("sim") / "bids")


def test_raw_files(dataset, cohort):
    desc = json.loads((dataset / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"]
    assert (dataset / "README").is_file()
    part = pd.read_csv(dataset / "participants.tsv", sep="\t", keep_default_na=False)
    assert list(part["participant_id"]) == list(cohort.participants["participant_id"])
    assert "medication" in json.loads((dataset / "participants.json").read_text())
    img = nib.load(dataset / "sub-01/func/sub-01_task-rest_bold.nii.gz")
    assert img.shape == cohort.mask.shape + (40,)
    assert img.header.get_zooms()[3] == pytest.approx(2.0)
    side = json.loads((dataset / "sub-01/func/sub-01_task-rest_bold.json").read_text())
    assert side == {"RepetitionTime": 2.0, "TaskName": "rest"}


def test_fmriprep_derivatives(dataset, cohort):
    func = dataset / "derivatives/fmriprep/sub-02/func"
    bold = nib.load(func / f"sub-02_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz")
    data = np.asarray(bold.dataobj)
    np.testing.assert_allclose(data[cohort.mask].T, cohort.subjects[1].bold, rtol=1e-6)
    mask = nib.load(func / f"sub-02_task-rest_space-{SPACE}_desc-brain_mask.nii.gz")
    assert np.array_equal(np.asarray(mask.dataobj) > 0, cohort.mask)
    conf = pd.read_csv(func / "sub-02_task-rest_desc-confounds_timeseries.tsv", sep="\t")
    assert pd.isna(conf["framewise_displacement"].iloc[0])
    assert conf.shape[0] == 40
    for col in ["trans_x", "rot_z_derivative1_power2", "csf_power2", "white_matter_derivative1",
                "global_signal_derivative1_power2", "a_comp_cor_04", "std_dvars"]:
        assert col in conf.columns
    meta = json.loads((func / "sub-02_task-rest_desc-confounds_timeseries.json").read_text())
    assert meta["a_comp_cor_00"]["Mask"] == "combined"
    desc = json.loads((dataset / "derivatives/fmriprep/dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"


@pytest.mark.parametrize("strategy", ["simple", "compcor", "scrubbing"])
def test_nilearn_load_confounds_strategy(dataset, strategy):
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    path = dataset / f"derivatives/fmriprep/sub-01/func/sub-01_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz"
    conf, sample_mask = load_confounds_strategy(str(path), strategy)
    assert conf.shape[0] == 40
    assert "trans_x" in conf.columns
    if strategy == "compcor":
        assert "a_comp_cor_00" in conf.columns
    if sample_mask is not None:
        assert len(sample_mask) <= 40


def test_truth_files(dataset, cohort):
    truth = dataset / "derivatives/truth"
    for scale in cohort.scales:
        img = nib.load(truth / f"scale-{scale}_desc-truth_components.nii.gz")
        assert img.shape == cohort.mask.shape + (scale,)
        np.testing.assert_allclose(np.asarray(img.dataobj)[cohort.mask].T,
                                   cohort.group_maps[scale], atol=1e-6)
        lab = pd.read_csv(truth / f"scale-{scale}_desc-truth_labels.tsv", sep="\t", keep_default_na=False)
        assert list(lab.columns) == ["index", "scale", "label", "parent"] and len(lab) == scale
        tcs = pd.read_csv(truth / f"sub-01/func/sub-01_task-rest_scale-{scale}_desc-truth_timeseries.tsv", sep="\t")
        np.testing.assert_allclose(tcs.to_numpy(), cohort.subjects[0].timecourses[scale], rtol=1e-4, atol=1e-5)
    eff = pd.read_csv(truth / "desc-truth_effects.tsv", sep="\t")
    assert set(eff["target"]) == {"diagnosis", "medication", "response"}
    states = pd.read_csv(truth / "sub-01/func/sub-01_task-rest_desc-states_timeseries.tsv", sep="\t")
    np.testing.assert_array_equal(states["state"], cohort.subjects[0].states)
    assert json.loads((truth / "dataset_description.json").read_text())["DatasetType"] == "derivative"


def test_truth_template_options(dataset, cohort):
    """The CLI options of template mode: each scale's maps then its labels, coarse to fine."""
    options = truth_template_options(dataset)
    assert options[::2] == ["--template", "--template-labels"] * len(cohort.scales)
    truth = dataset / "derivatives/truth"
    assert options[1::2] == [str(truth / f"scale-{scale}_desc-truth_{suffix}")
                             for scale in sorted(cohort.scales)
                             for suffix in ("components.nii.gz", "labels.tsv")]


def test_pybids_indexes_dataset(dataset):
    from bids import BIDSLayout

    layout = BIDSLayout(dataset, validate=False, derivatives=True)
    assert sorted(layout.get_subjects()) == ["01", "02", "03", "04"]
    assert layout.get_tr(subject="01", task="rest") == 2.0
    assert layout.get_tr(subject="01", task="rest", derivatives=True) == 2.0
    preproc = layout.get(subject="01", desc="preproc", suffix="bold", extension=".nii.gz",
                         scope="fMRIPrep")
    assert len(preproc) == 1
    conf = layout.get(subject="01", desc="confounds", suffix="timeseries", extension=".tsv")
    assert len(conf) == 1


def test_refuses_foreign_directory(tmp_path, cohort):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="must be empty or a previous msica simulation"):
        write_bids_dataset(cohort, tmp_path)
    with pytest.raises(ValueError, match="must be empty or a previous msica simulation"):
        run_simulate(tmp_path, n_subjects=4, n_sites=1, n_volumes=40, tr=2.0, grid_mm=10.0, seed=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="must be a directory"):
        write_bids_dataset(cohort, tmp_path / "notes.txt")
    with pytest.raises(TypeError, match="'cohort' must be a SimulatedCohort"):
        write_bids_dataset("cohort", tmp_path / "new")


def test_run_simulate_overwrites_previous_output(tmp_path):
    out = run_simulate(tmp_path / "ds", n_subjects=5, n_sites=1, n_volumes=40, tr=1.5,
                       grid_mm=10.0, seed=1)
    assert (out / "sub-05").is_dir()
    out = run_simulate(out, n_subjects=4, n_sites=1, n_volumes=40, tr=1.5, grid_mm=10.0, seed=1)
    assert not (out / "sub-05").exists()
    side = json.loads((out / "sub-01/func/sub-01_task-rest_bold.json").read_text())
    assert side["RepetitionTime"] == 1.5
