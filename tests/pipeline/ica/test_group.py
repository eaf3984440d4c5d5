"""GroupICA recovers planted sparse maps; GICA attributes are consistent; errors."""

from __future__ import annotations


import numpy as np
import pytest

from pipeline.ica._matching import match_components
from pipeline.ica.group import GroupICA

RANDOM_STATE = 42  # same as conftest.RANDOM_STATE (tests are not a package)


@pytest.mark.parametrize("algorithm", ["infomax", "fastica"])
def test_recovers_planted_maps(planted_subjects, algorithm):
    subjects, maps, tcs = planted_subjects
    gica = GroupICA(4, algorithm=algorithm, random_state=RANDOM_STATE, device="cpu").fit(subjects)
    rows, cols, r = match_components(gica.components_, maps)
    assert r.min() > 0.95
    # positive skew: the planted (non-negative) maps correlate positively
    signed = [np.corrcoef(gica.components_[i], maps[j])[0, 1] for i, j in zip(rows, cols)]
    assert min(signed) > 0.95
    np.testing.assert_allclose(gica.components_.std(axis=1), 1.0, rtol=1e-10)
    # GICA time courses of subject 0 match its planted time courses
    tc_hat = gica.subject_mixing_[0][:, rows]
    corr = [abs(np.corrcoef(tc_hat[:, a], tcs[0][:, b])[0, 1]) for a, b in enumerate(cols)]
    assert min(corr) > 0.9
    np.testing.assert_array_equal(gica.subject_timecourses(0), gica.subject_mixing_[0])


def test_gica_attributes_are_consistent(planted_subjects):
    subjects, _, _ = planted_subjects
    gica = GroupICA(4, n_subject_components=8, random_state=RANDOM_STATE, device="cpu").fit(subjects)
    assert gica.subject_dewhitening_[1].shape == (60, 8)
    assert gica.group_dewhitening_[1].shape == (8, 4)
    assert gica.group_whitening_[1].shape == (4, 8)
    centred = gica.components_ - gica.components_.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(gica.mixing_ @ centred, gica.group_pca_components_, atol=1e-8)
    expected = gica.subject_dewhitening_[2] @ gica.group_dewhitening_[2] @ gica.mixing_
    np.testing.assert_allclose(gica.subject_mixing_[2], expected)


def test_icasso_inside_group_ica(planted_subjects):
    subjects, maps, _ = planted_subjects
    gica = GroupICA(4, algorithm="fastica", n_runs=3, random_state=RANDOM_STATE,
                    device="cpu").fit(subjects)
    assert gica.stability_.shape == (4,) and gica.stability_.min() > 0.9
    assert match_components(gica.components_, maps)[2].min() > 0.95


def test_prereduced_input(planted_subjects):
    subjects, maps, _ = planted_subjects
    from pipeline.ica.pca import preprocess_subject, subject_pca

    reduced = [subject_pca(preprocess_subject(s, "remove_mean"), 8).reduced for s in subjects]
    gica = GroupICA(4, subject_reduction=False, random_state=RANDOM_STATE, device="cpu").fit(reduced)
    assert match_components(gica.components_, maps)[2].min() > 0.95


def test_errors(planted_subjects):
    subjects, _, _ = planted_subjects
    with pytest.raises(ValueError, match=r"'n_components'=60 must be at most n_volumes - 1 = 59"):
        GroupICA(60, device="cpu").fit(subjects)
    with pytest.raises(ValueError, match=r"stacked subject components \(2 subjects x kept PCs = 6\)"):
        GroupICA(7, n_subject_components=3, device="cpu").fit(subjects[:2])
    with pytest.raises(ValueError, match=r"'n_subject_components' must be an int in \[1, n_volumes - 1"):
        GroupICA(4, n_subject_components=80, device="cpu").fit(subjects)
    with pytest.raises(ValueError, match=r"'subjects\[1\]' must have 1500 voxels"):
        GroupICA(4, device="cpu").fit([subjects[0], subjects[1][:, :100]])
    with pytest.raises(ValueError, match=r"'subjects\[0\]' must be a 2-D array"):
        GroupICA(4, device="cpu").fit([np.zeros(10)])
    with pytest.raises(TypeError, match="'subjects' must be a non-empty list"):
        GroupICA(4, device="cpu").fit([])
    with pytest.raises(ValueError, match="'algorithm' must be one of"):
        GroupICA(4, algorithm="jade").fit(subjects)
    with pytest.raises(ValueError, match="'n_runs' must be an int >= 1"):
        GroupICA(4, n_runs=0).fit(subjects)
    with pytest.raises(ValueError, match="'n_components' must be an int >= 1"):
        GroupICA(0).fit(subjects)


def _clean(subject):
    """Percent signal change and confound regression (motion, CSF, WM, quadratic drift)."""
    bold = subject.bold.astype(np.float64)
    psc = (bold / bold.mean(axis=0) - 1.0) * 100.0
    conf = subject.confounds
    cols = [c for c in conf.columns if c.startswith(("trans_", "rot_")) and "power2" not in c]
    design = conf[cols + ["csf", "white_matter"]].fillna(0.0).to_numpy()
    tt = np.linspace(-1, 1, len(design))
    design = np.column_stack([np.ones_like(tt), tt, tt**2, design])
    return psc - design @ np.linalg.lstsq(design, psc, rcond=None)[0]


@pytest.mark.integration
def test_simulator_bar_every_scale():
    """Issue bar: mean |r| with the planted maps >= 0.9 at every scale (default cohort)."""
    from pipeline.simulate import simulate_cohort

    cohort = simulate_cohort(random_state=0)
    data = [_clean(s) for s in cohort.subjects]
    for scale in cohort.scales:
        gica = GroupICA(scale, random_state=RANDOM_STATE, device="cpu").fit(data)
        r = match_components(gica.components_, cohort.group_maps[scale])[2]
        assert r.mean() >= 0.9, (scale, r)
