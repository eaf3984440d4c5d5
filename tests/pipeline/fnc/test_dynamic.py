"""Tests for pipeline.fnc.dynamic: GIFT windows, planted changes and states, metrics, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import linear_sum_assignment

from pipeline.exceptions import ConvergenceWarning
from pipeline.fnc.dynamic import sliding_window_fnc, tapered_window, vec_to_sym
from pipeline.fnc.states import DynamicFNC, kmeans_l1, state_metrics, subject_exemplars

from .conftest import RANDOM_STATE, correlated_signals, random_corr, state_timecourses


def _mround(x):
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _gift_loop_reference(x, wsize, alpha):
    """Literal, loop-based transcription of icatb_compute_dfnc (1-based indices)."""
    n_tp = x.shape[0]
    n_t = n_tp + (n_tp % 2)
    m = n_t // 2
    w = _mround(wsize / 2)
    gw = np.array([math.exp(-((k - m) ** 2) / (2 * alpha * alpha)) for k in range(n_t)])
    b = np.zeros(n_t)
    for k in range(m - w + 1, m + w + 1):  # MATLAB b((m-w+1):(m+w)) = 1
        b[k - 1] = 1.0
    c = np.convolve(gw, b)
    c = c / c.max()
    c = c[m : len(c) - m + 1][:n_tp]  # MATLAB c(m+1:end-m+1), then c(1:nT1)
    out = []
    for ii in range(1, n_tp - wsize + 1):
        shift = _mround(-n_tp / 2) + _mround(wsize / 2) + ii
        a_shift = np.array([c[(k - shift) % n_tp] for k in range(n_tp)])  # circshift
        win = x * a_shift[:, None]
        r = np.corrcoef(win, rowvar=False)
        n = r.shape[0]
        # icatb_mat2vec: strict lower triangle, MATLAB column-major order
        out.append([r[i, j] for j in range(n) for i in range(j + 1, n)])
    out = np.array(out)
    return 0.5 * (np.log(1e-8 + 1 + out) - np.log(1e-8 + 1 - out))


@pytest.mark.parametrize(("n_volumes", "window"), [(60, 20), (61, 15), (45, 30)])
def test_sliding_window_matches_gift_transcription(rng, n_volumes, window):
    x = rng.standard_normal((n_volumes, 4))
    ours = sliding_window_fnc(x, window=window, sigma=3)
    ref = _gift_loop_reference(x, window, 3)
    assert ours.shape == (n_volumes - window, 6)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_tapered_window_is_gaussian_smoothed_rectangle():
    taper = tapered_window(200, 30, 3.0)
    box = np.zeros(200)
    box[85:115] = 1.0
    ref = gaussian_filter1d(box, 3.0, mode="constant", truncate=12)
    np.testing.assert_allclose(taper, ref / ref.max(), atol=1e-6)
    assert taper.argmax() in (99, 100)


def test_sliding_window_recovers_planted_change(rng):
    pos = np.array([[1.0, 0.8], [0.8, 1.0]])
    neg = np.array([[1.0, -0.8], [-0.8, 1.0]])
    x = np.vstack([correlated_signals(pos, 150, rng), correlated_signals(neg, 150, rng)])
    dfnc = sliding_window_fnc(x, window=30, sigma=3)[:, 0]
    # windows are centred near (index + 15); GIFT's first windows wrap around the end
    centres = np.arange(1, dfnc.size + 1) + 14
    assert np.median(dfnc[(centres > 30) & (centres < 120)]) > 0.8
    assert np.median(dfnc[(centres > 180) & (centres < 270)]) < -0.8
    sign_change = np.flatnonzero(np.diff(np.sign(dfnc[30:250])))[0] + 30
    assert abs(centres[sign_change] - 150) <= 10


def test_graphical_lasso_option(rng):
    corr = np.eye(5)
    corr[0, 1] = corr[1, 0] = 0.7
    x = correlated_signals(corr, 120, rng)
    dense = sliding_window_fnc(x, window=40)
    sparse, alpha = sliding_window_fnc(
        x, window=40, method="graphical lasso", alphas=(0.1, 0.3), return_alpha=True
    )
    assert alpha in (0.1, 0.3)
    assert sparse.shape == dense.shape
    # the L1 penalty shrinks the null pairs toward 0 more than the planted pair
    assert np.abs(sparse[:, 1:]).mean() < np.abs(dense[:, 1:]).mean()
    assert sparse[:, 0].mean() > 0.3
    fixed = sliding_window_fnc(x, window=40, method="graphical lasso", alpha=0.35)
    assert np.all(np.isfinite(fixed))


def test_sliding_window_errors(rng):
    x = rng.standard_normal((50, 3))
    with pytest.raises(ValueError, match="must be shorter than the run"):
        sliding_window_fnc(x, window=50)
    with pytest.raises(ValueError, match="must be shorter than the run"):
        sliding_window_fnc(x, window=80)
    with pytest.raises(ValueError, match="at least 3 rows"):
        sliding_window_fnc(x[:2], window=2)
    with pytest.raises(ValueError, match="'window' must be an int >= 2"):
        sliding_window_fnc(x, window=1)
    with pytest.raises(ValueError, match="'sigma' must be a positive"):
        sliding_window_fnc(x, window=10, sigma=0)
    with pytest.raises(ValueError, match="NaN"):
        sliding_window_fnc(np.where(x > 2, np.nan, x), window=10)
    with pytest.raises(ValueError, match="2-D array"):
        sliding_window_fnc(x[:, 0], window=10)
    with pytest.raises(ValueError, match="'method' must be one of"):
        sliding_window_fnc(x, window=10, method="mutual information")
    flat = x.copy()
    flat[:, 2] = 0.0  # a constant times the taper is not constant; all-zero is
    with pytest.raises(ValueError, match="constant network"):
        sliding_window_fnc(flat, window=10)


def test_vec_to_sym_roundtrip(rng):
    mat = vec_to_sym(np.arange(1, 11.0))
    iu = np.triu_indices(5, 1)
    np.testing.assert_array_equal(mat[iu], np.arange(1, 11.0))
    np.testing.assert_array_equal(mat, mat.T)
    with pytest.raises(ValueError, match="is not n\\*\\(n-1\\)/2"):
        vec_to_sym(np.ones(7))


def test_subject_exemplars_are_local_maxima():
    dev_profile = np.array([0.0, 1, 3, 1, 0, 2, 2, 2, 0, 5])
    dfnc = np.outer(dev_profile, [1.0, -1.0])  # across-pair SD proportional to profile
    # maxima: index 2, the middle of the flat peak 5..7 (6), and the right end 9
    np.testing.assert_array_equal(subject_exemplars(dfnc), [2, 6, 9])
    assert subject_exemplars(np.ones((5, 3))).size == 0


def test_state_metrics_hand_computed():
    met = state_metrics(np.array([0, 0, 1, 1, 1, 0, 2, 2]), 4)
    np.testing.assert_allclose(met["fraction"], [3 / 8, 3 / 8, 2 / 8, 0])
    np.testing.assert_allclose(met["mean_dwell"], [1.5, 3, 2, 0])
    assert met["n_transitions"] == 3
    expected = np.array(
        [[1 / 3, 1 / 3, 1 / 3, 0], [1 / 3, 2 / 3, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(met["transition_matrix"], expected)
    with pytest.raises(ValueError, match="ints in \\[0, 2\\)"):
        state_metrics(np.array([0, 2]), 2)


def test_kmeans_l1_medians_and_errors(rng):
    centres = np.array([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
    labels_true = np.repeat(np.arange(3), 40)
    x = centres[labels_true] + rng.laplace(size=(120, 2))
    got, labels, inertia = kmeans_l1(x, 3, random_state=RANDOM_STATE)
    for j in range(3):
        np.testing.assert_allclose(got[j], np.median(x[labels == j], axis=0))
    assert inertia == pytest.approx(np.abs(x - got[labels]).sum())
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(labels_true, labels) == 1.0
    with pytest.raises(ValueError, match="'n_clusters' must be an int in \\[1, n_samples = 120\\]"):
        kmeans_l1(x, 0)
    with pytest.raises(ValueError, match="'init' must have shape"):
        kmeans_l1(x, 3, init=np.zeros((2, 2)))
    with pytest.warns(ConvergenceWarning, match="Increase max_iter"):
        kmeans_l1(x + rng.standard_normal(x.shape) * 5, 6, max_iter=1, random_state=0)


@pytest.fixture(scope="module")
def planted_states():
    gen = np.random.default_rng(RANDOM_STATE)
    corrs = np.stack([random_corr(6, gen, strength=0.85) for _ in range(3)])
    tcs, truth = state_timecourses(corrs, n_subjects=8, n_segments=6, segment=60, rng=gen)
    return corrs, tcs, truth


@pytest.mark.parametrize("selection", ["silhouette", "elbow"])
def test_dynamic_fnc_recovers_planted_states(planted_states, selection):
    corrs, tcs, _ = planted_states
    est = DynamicFNC(
        window=30, selection=selection, max_states=6, random_state=RANDOM_STATE
    ).fit(tcs)
    assert est.n_states_ == 3
    iu = np.triu_indices(6, 1)
    true_vecs = np.arctanh(corrs[:, iu[0], iu[1]])
    sim = np.corrcoef(np.vstack([est.cluster_centers_, true_vecs]))[:3, 3:]
    rows, cols = linear_sum_assignment(-sim)
    assert sim[rows, cols].min() >= 0.8


def test_dynamic_fnc_states_and_metrics(planted_states):
    corrs, tcs, truth = planted_states
    est = DynamicFNC(n_states=3, window=30, random_state=RANDOM_STATE).fit(tcs)
    assert est.selection_scores_ == {}
    assert est.state_matrices_.shape == (3, 6, 6)
    n_windows = tcs[0].shape[0] - 30
    assert all(s.shape == (n_windows,) for s in est.states_)
    # window i (1-based) is centred near volume i + 14: compare with the planted state there
    centre = np.arange(1, n_windows + 1) + 14
    true_win = np.concatenate([t[centre] for t in truth])
    pred = np.concatenate(est.states_)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(true_win, pred) > 0.6
    met = est.metrics_
    np.testing.assert_allclose(met["fraction"].sum(axis=1), 1.0)
    assert met["transition_matrix"].shape == (8, 3, 3)
    np.testing.assert_allclose(met["transition_matrix"].sum(axis=2), 1.0)
    # planted segments last 60 volumes: dwell times are long, transitions few
    assert np.median(met["n_transitions"]) <= 15
    assert np.nanmax(met["mean_dwell"]) > 20
    new = est.predict(tcs[:2])
    np.testing.assert_array_equal(new[0], est.states_[0])
    assert est.metrics(tcs[:2])["fraction"].shape == (2, 3)


def test_dynamic_fnc_errors(rng):
    tcs = [rng.standard_normal((60, 4)) for _ in range(2)]
    with pytest.raises(ValueError, match="'selection' must be one of"):
        DynamicFNC(selection="gap").fit(tcs)
    with pytest.raises(ValueError, match="min_states < max_states"):
        DynamicFNC(min_states=5, max_states=3, window=20).fit(tcs)
    with pytest.raises(TypeError, match="non-empty list"):
        DynamicFNC(window=20).fit([])
    with pytest.raises(ValueError, match="same number of networks"):
        DynamicFNC(n_states=2, window=20).fit([tcs[0], rng.standard_normal((60, 5))])
    with pytest.raises(ValueError, match="must be shorter than the run"):
        DynamicFNC(n_states=2, window=60).fit(tcs)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DynamicFNC().predict(tcs)


def test_dynamic_fnc_precomputed_windows_match_timecourses():
    rng = np.random.default_rng(RANDOM_STATE)
    tcs = [rng.standard_normal((90, 5)) for _ in range(4)]
    from_tcs = DynamicFNC(n_states=2, window=20, random_state=0).fit(tcs)
    windows = [sliding_window_fnc(x, window=20) for x in tcs]
    from_windows = DynamicFNC(n_states=2, precomputed=True, random_state=0).fit(windows)
    np.testing.assert_allclose(from_windows.cluster_centers_, from_tcs.cluster_centers_)
    with pytest.raises(ValueError, match="must be a 2-D array"):
        DynamicFNC(n_states=2, precomputed=True).fit([np.zeros(5)])


def test_dynamic_fnc_holds_precomputed_windows_once():
    """A (participants, windows, pairs) float64 array is pooled without a copy (a large cohort's
    windows are the group level's largest table), with the same states as a list of runs."""
    rng = np.random.default_rng(RANDOM_STATE)
    windows = np.ascontiguousarray(np.stack([
        sliding_window_fnc(rng.standard_normal((90, 5)), window=20) for _ in range(6)]))
    est = DynamicFNC(n_states=3, precomputed=True, random_state=0).fit(windows)
    assert all(np.shares_memory(run, windows) for run in est.dfnc_)
    from_list = DynamicFNC(n_states=3, precomputed=True, random_state=0).fit(list(windows.copy()))
    np.testing.assert_array_equal(est.cluster_centers_, from_list.cluster_centers_)
    assert all(np.array_equal(a, b) for a, b in zip(est.states_, from_list.states_, strict=True))


def test_member_median_by_column_blocks_equals_numpy(rng):
    from pipeline.fnc.states import _member_median

    x = rng.standard_normal((301, 37))
    members = rng.random(301) < 0.6
    expected = np.median(x[members], axis=0)
    for block_bytes in (1, 8 * 200 * 5, 2**30):  # one column, a few columns, all at once
        np.testing.assert_array_equal(_member_median(x, members, block_bytes), expected)


def test_state_count_rule_caps_candidates_by_windows(rng):
    """min_windows_per_state: about that many pooled windows per candidate state."""
    tcs = [rng.standard_normal((60, 4)) for _ in range(3)]  # 3 x 40 windows of 20 volumes
    est = DynamicFNC(window=20, random_state=0).fit(tcs)
    assert est.min_windows_per_state == 20 and est.max_states_ == 120 // 20 == 6
    assert max(est.selection_scores_) <= 6 and 2 <= est.n_states_ <= 6
    wide = DynamicFNC(window=20, min_windows_per_state=None, random_state=0).fit(tcs)
    assert wide.max_states_ == 10
    n_exemplars = sum(i.size for i in wide.exemplar_indices_)
    assert max(wide.selection_scores_) == min(10, n_exemplars - 1) > 6
    # the rule never leaves fewer than two candidates (min_states + 1 at least)
    assert DynamicFNC(window=20, min_windows_per_state=100, random_state=0).fit(tcs).max_states_ == 3
    assert DynamicFNC(n_states=2, window=20, random_state=0).fit(tcs).max_states_ is None
    with pytest.raises(ValueError, match=r"'min_windows_per_state' must be None or an int >= 1\. "
                                         r"Got 0"):
        DynamicFNC(window=20, min_windows_per_state=0).fit(tcs)
