"""Tests of the simulator against its own planted ground truth and independent references."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import FastICA
from sklearn.utils.extmath import randomized_svd

from pipeline.simulate import SimulatedCohort, simulate_cohort

RANDOM_STATE = 42
SMALL = {"n_subjects": 8, "n_sites": 2, "n_volumes": 60, "grid_mm": 8.0}


@pytest.fixture(scope="module")
def small():
    return simulate_cohort(**SMALL, random_state=RANDOM_STATE)


@pytest.fixture(scope="module")
def default():
    return simulate_cohort(random_state=0)


def test_shapes_and_types(small):
    c = small
    assert isinstance(c, SimulatedCohort)
    assert c.mask.dtype == bool and c.mask.ndim == 3 and c.affine.shape == (4, 4)
    n_vox = int(c.mask.sum())
    assert c.scales == (4, 10) and c.t_r == 2.0
    for scale in c.scales:
        assert c.group_maps[scale].shape == (scale, n_vox)
    assert list(c.labels.columns) == ["index", "scale", "label", "parent"]
    assert len(c.labels) == sum(c.scales)
    assert list(c.participants.columns) == [
        "participant_id", "site", "age", "sex", "diagnosis", "medication", "response"]
    assert list(c.participants["participant_id"][:2]) == ["sub-01", "sub-02"]
    assert set(c.participants["site"]) == {"site1", "site2"}
    p = c.participants
    assert (p.loc[p.diagnosis == "control", ["medication", "response"]] == "n/a").all().all()
    assert set(p.loc[p.diagnosis == "patient", "medication"]) == {"medA", "medB"}
    assert set(p.loc[p.diagnosis == "patient", "response"]) == {"responder", "non-responder"}
    for col in ["target", "level", "scale_a", "label_a", "scale_b", "label_b", "delta"]:
        assert col in c.effects.columns
    assert c.state_fnc.shape == (3, 10, 10)
    assert len(c.subjects) == 8
    s = c.subjects[0]
    assert s.bold.shape == (60, n_vox) and s.bold.dtype == np.float32
    assert 700 < float(s.bold.mean()) < 1400  # BOLD-like baseline
    assert s.timecourses[4].shape == (60, 4) and s.timecourses[10].shape == (60, 10)
    assert s.maps[10].shape == (10, n_vox)
    assert s.states.shape == (60,) and set(np.unique(s.states)) <= {0, 1, 2}
    for col in ["trans_x", "rot_z", "framewise_displacement", "csf", "white_matter",
                "global_signal", "a_comp_cor_00", "a_comp_cor_04"]:
        assert col in s.confounds.columns
    assert np.isnan(s.confounds["framewise_displacement"].iloc[0])


def test_nested_maps_and_parent_timecourses(small):
    c = small
    coarse, fine = c.scales
    labels = c.labels
    kids = labels[labels.scale == fine]
    for i, lab in enumerate(labels[labels.scale == coarse]["label"]):
        members = np.flatnonzero(kids["parent"].to_numpy() == lab)
        assert len(members) >= 1
        summed = c.group_maps[fine][members].sum(0)
        assert np.corrcoef(summed, c.group_maps[coarse][i])[0, 1] > 0.999
    # Siblings share their parent's time course: correlated more than across parents.
    parent = kids["parent"].to_numpy()
    within, across = [], []
    for s in c.subjects:
        r = np.corrcoef(s.timecourses[fine].T)
        for a, b in zip(*np.triu_indices(fine, 1)):
            (within if parent[a] == parent[b] else across).append(r[a, b])
    assert np.mean(within) > 0.35
    assert np.mean(within) > np.mean(across) + 0.3


def test_states_are_blocks(small):
    s = small.subjects[0].states
    changes = np.flatnonzero(np.diff(s)) + 1
    lengths = np.diff(np.concatenate([[0], changes, [len(s)]]))
    assert np.all(lengths[:-1] >= 20)  # only the last block can be cut by the run end
    assert np.all(s[changes] != s[changes - 1])


def test_state_fnc_matches_timecourses():
    c = simulate_cohort(n_subjects=4, n_volumes=400, grid_mm=10.0, n_states=1,
                        effect_size=0.0, random_state=RANDOM_STATE)
    emp = np.mean([np.corrcoef(s.timecourses[10].T) for s in c.subjects], axis=0)
    iu = np.triu_indices(10, 1)
    assert np.corrcoef(emp[iu], c.state_fnc[0][iu])[0, 1] > 0.9
    assert np.abs(emp - c.state_fnc[0]).max() < 0.25


def test_reproducible(small):
    again = simulate_cohort(**SMALL, random_state=RANDOM_STATE)
    other = simulate_cohort(**SMALL, random_state=RANDOM_STATE + 1)
    np.testing.assert_array_equal(again.subjects[3].bold, small.subjects[3].bold)
    pd.testing.assert_frame_equal(again.effects, small.effects)
    pd.testing.assert_frame_equal(again.subjects[3].confounds, small.subjects[3].confounds)
    assert not np.allclose(other.subjects[3].bold, small.subjects[3].bold)


def _group_ica(cohort, scale, order):
    """Spatial FastICA on the PCA-reduced, temporally concatenated group data."""
    data = np.vstack([s.bold - s.bold.mean(axis=0) for s in cohort.subjects]).astype(np.float64)
    _, _, vt = randomized_svd(data, order, n_oversamples=20, n_iter=10, random_state=0)
    ica = FastICA(n_components=order, whiten="unit-variance", max_iter=1000, random_state=0)
    maps = ica.fit_transform(vt.T).T
    truth = cohort.group_maps[scale]
    r = np.abs(np.corrcoef(np.vstack([maps, truth]))[:order, order:])
    rows, cols = linear_sum_assignment(-r)
    return r[rows, cols]


@pytest.mark.parametrize("scale_pos", [0, 1])
def test_group_ica_recovers_maps_at_each_scale(default, scale_pos):
    """The bar of the group-ICA stage: order == n networks of a scale, mean |r| >= 0.9."""
    scale = default.scales[scale_pos]
    matched = _group_ica(default, scale, scale)
    assert matched.mean() >= 0.9, matched.round(2)
    assert matched.min() >= 0.8, matched.round(2)


def test_group_ica_low_order_merges_siblings(default):
    """At the coarse order, the fine maps are not recovered one by one."""
    coarse, fine = default.scales
    data = np.vstack([s.bold - s.bold.mean(axis=0) for s in default.subjects]).astype(np.float64)
    _, _, vt = randomized_svd(data, coarse, n_oversamples=20, n_iter=10, random_state=0)
    maps = FastICA(n_components=coarse, whiten="unit-variance", max_iter=1000,
                   random_state=0).fit_transform(vt.T).T
    r = np.abs(np.corrcoef(np.vstack([maps, default.group_maps[fine]]))[:coarse, coarse:])
    assert np.median(r.max(axis=0)) < 0.8


def _fdr(p, q=0.05):
    order = np.argsort(p)
    ok = p[order] <= q * np.arange(1, len(p) + 1) / len(p)
    out = np.zeros(len(p), dtype=bool)
    if ok.any():
        out[order[: np.max(np.flatnonzero(ok)) + 1]] = True
    return out


def _static_fnc_tests(cohort):
    """Per target: planted pairs found and false positives among unaffected pairs."""
    nodes = len(cohort.labels)
    iu = np.triu_indices(nodes, 1)
    z = np.array([np.arctanh(np.corrcoef(np.hstack([s.timecourses[k] for k in cohort.scales]).T)[iu])
                  for s in cohort.subjects])
    truth = np.array([s.fnc[iu] for s in cohort.subjects])
    p = cohort.participants
    out = {}
    for target, eff in cohort.effects.groupby("target"):
        g1 = (p[target] == eff["level"].iloc[0]).to_numpy()
        g0 = (p[target] == eff["reference"].iloc[0]).to_numpy()
        _, pval = stats.ttest_ind(z[g1], z[g0])
        sig = _fdr(pval)
        planted = np.zeros(len(pval), dtype=bool)
        for a, b in zip(eff["node_a"], eff["node_b"]):
            a, b = min(a, b), max(a, b)
            planted[(iu[0] == a) & (iu[1] == b)] = True
        affected = np.abs(truth[g1].mean(0) - truth[g0].mean(0)) > 0.05
        out[target] = (int(sig[planted].sum()), int(planted.sum()), sig[~affected].mean())
    return out


def test_planted_effects_detected_by_fdr_ttests(default):
    res = _static_fnc_tests(default)
    print(res)
    # fraction of all planted edges found (3 diagnosis, 1 medication, 1 response edge)
    recovered = sum(h for h, _, _ in res.values()) / sum(n for _, n, _ in res.values())
    assert recovered >= 0.8
    assert all(fp <= 0.05 for _, _, fp in res.values())


def test_null_cohort_has_no_effects():
    c = simulate_cohort(n_subjects=24, n_volumes=60, grid_mm=10.0, effect_size=0.0,
                        random_state=RANDOM_STATE)
    assert np.allclose(c.effects["delta"], 0.0)
    res = _static_fnc_tests(c)
    assert all(fp <= 0.05 for _, _, fp in res.values())


def test_effects_table_directions(small):
    e = small.effects
    assert set(e["target"]) == {"diagnosis", "medication", "response"}
    assert ((e["delta"] > 0) == (e["direction"] == "increase")).all()
    assert (np.sign(e["delta"]) == np.sign(e["delta_latent"])).all()
    assert (e["scale_a"] != e["scale_b"]).any() and (e["scale_a"] == e["scale_b"]).any()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_subjects": 3}, ValueError, "'n_subjects' must be an int >= 4"),
        ({"n_subjects": 4.0}, TypeError, "'n_subjects' must be of type"),
        ({"n_sites": 9, "n_subjects": 8}, ValueError, "'n_sites' must be <= n_subjects"),
        ({"n_sites": 0}, ValueError, "'n_sites' must be an int >= 1"),
        ({"n_volumes": 10}, ValueError, "'n_volumes' must be an int >= 30"),
        ({"n_states": 0}, ValueError, "'n_states' must be an int >= 1"),
        ({"t_r": 0.0}, ValueError, "'t_r' must be in"),
        ({"t_r": "2"}, TypeError, "'t_r' must be of type"),
        ({"grid_mm": 1.0}, ValueError, "'grid_mm' must be in"),
        ({"grid_mm": None}, TypeError, "'grid_mm' must be of type"),
        ({"effect_size": -1.0}, ValueError, "'effect_size' must be >= 0"),
        ({"effect_size": "big"}, TypeError, "'effect_size' must be of type"),
        ({"scales": (10, 4)}, ValueError, "'scales' must be a sequence of at least two"),
        ({"scales": (5,)}, ValueError, "'scales' must be a sequence of at least two"),
        ({"scales": 4}, TypeError, "'scales' must be of type"),
        ({"effect_size": 50.0}, ValueError, "'effect_size' is too large"),
    ],
)
def test_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        simulate_cohort(**{"n_volumes": 40, "grid_mm": 10.0, **kwargs})


def test_states_long_balanced_and_distinct(default):
    """Dwell times outlast a 30-TR dFNC window; every run visits every state about equally;
    the planted states are distinct (finest-scale matrices correlate < 0.6 with each other)."""
    for s in default.subjects:
        changes = np.flatnonzero(np.diff(s.states)) + 1
        lengths = np.diff(np.concatenate([[0], changes, [len(s.states)]]))
        assert np.all(lengths[:-1] >= 40)
        occupancy = np.bincount(s.states, minlength=3) / len(s.states)
        assert np.all(np.abs(occupancy - 1 / 3) <= 0.15), occupancy
    iu = np.triu_indices(default.state_fnc.shape[1], 1)
    r = np.corrcoef(default.state_fnc[:, iu[0], iu[1]])[np.triu_indices(3, 1)]
    assert r.max() < 0.6, r.round(2)
