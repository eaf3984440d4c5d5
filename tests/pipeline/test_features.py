"""Tests for pipeline.features: table layout, values, joins, speed, planted group effects."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.exceptions import InputDataError
from pipeline.features import (
    RunTimecourses,
    dfnc_metrics_table,
    edge_labels,
    edge_scale_pairs,
    join_participants,
    network_covariance_table,
    static_fnc_table,
    timecourse_features,
    timecourse_table,
)
from pipeline.fnc.names import network_labels
from pipeline.fnc.static import StaticFNC
from pipeline.fnc.timecourse import detrend, postprocess, spectra, spectral_stats

RANDOM_STATE = 42
LABELS = network_labels(4, 2) + network_labels(10, 3)  # s4-N1, s4-N2, s10-N1..N3


@pytest.fixture
def rng():
    return np.random.default_rng(RANDOM_STATE)


def _sym(rng, n_sub, n):
    a = rng.standard_normal((n_sub, n, n))
    a = (a + a.transpose(0, 2, 1)) / 2
    a[:, np.arange(n), np.arange(n)] = 0
    return a


def test_static_table_columns_and_values(rng):
    fnc = _sym(rng, 3, 5)
    ids = ["sub-01", "sub-02", "sub-03"]
    table = static_fnc_table(fnc, LABELS, ids)
    assert table.index.name == "participant_id"
    assert list(table.index) == ids
    assert table.shape == (3, 10)
    assert table.columns[0] == "s4-N1__s4-N2"
    assert "s4-N2__s10-N3" in table.columns
    # every column equals the matching matrix entry
    lookup = {lab: i for i, lab in enumerate(LABELS)}
    for col in table.columns:
        a, b = col.split("__")
        np.testing.assert_array_equal(table[col].to_numpy(), fnc[:, lookup[a], lookup[b]])
    assert edge_labels(LABELS) == list(table.columns)


def test_static_table_scale_pairs(rng):
    fnc = _sym(rng, 2, 5)
    within = static_fnc_table(fnc, LABELS, ["a", "b"], scale_pairs=[(10, 10)])
    assert list(within.columns) == ["s10-N1__s10-N2", "s10-N1__s10-N3", "s10-N2__s10-N3"]
    cross = static_fnc_table(fnc, LABELS, ["a", "b"], scale_pairs=[(10, 4)])
    assert cross.shape[1] == 6
    assert set(edge_scale_pairs(cross.columns)) == {("4", "10")}
    with pytest.raises(ValueError, match="No edge matches"):
        static_fnc_table(fnc, LABELS, ["a", "b"], scale_pairs=[(7, 7)])


def test_static_table_from_estimator(rng):
    tcs = [{4: rng.standard_normal((50, 2)), 10: rng.standard_normal((50, 3))} for _ in range(4)]
    est = StaticFNC().fit(tcs)
    table = static_fnc_table(est.transform(tcs), est.labels_, [f"sub-{i}" for i in range(4)])
    assert list(table.columns) == edge_labels(LABELS)


def test_join_participants(rng):
    fnc = _sym(rng, 3, 5)
    parts = pd.DataFrame(
        {
            "participant_id": ["sub-03", "sub-01", "sub-02"],
            "age": [30, 10, 20],
            "diagnosis": list("pcc"),
        }
    )
    table = static_fnc_table(fnc, LABELS, ["sub-01", "sub-02", "sub-03"], participants=parts)
    assert list(table.columns[:2]) == ["age", "diagnosis"]
    assert table["age"].tolist() == [10, 20, 30]
    with pytest.warns(UserWarning, match="no row in participants.tsv"):
        out = join_participants(table.iloc[:, 2:].rename(index={"sub-01": "sub-99"}), parts)
    assert np.isnan(out.loc["sub-99", "age"])
    with pytest.raises(ValueError, match="'participant_id' column or index"):
        join_participants(table, parts.drop(columns="participant_id"))
    with pytest.raises(ValueError, match="duplicated participant_id"):
        join_participants(table, pd.concat([parts, parts]))
    with pytest.raises(ValueError, match="clash with feature names"):
        join_participants(table.iloc[:, 2:], parts.rename(columns={"age": "s4-N1__s4-N2"}))


def test_static_table_errors(rng):
    fnc = _sym(rng, 2, 5)
    with pytest.raises(ValueError, match="n_participants, n_nodes, n_nodes"):
        static_fnc_table(np.zeros((2, 5, 4)), LABELS, ["a", "b"])
    with pytest.raises(ValueError, match="one entry per node"):
        static_fnc_table(fnc, LABELS[:4], ["a", "b"])
    with pytest.raises(ValueError, match="one entry per participant"):
        static_fnc_table(fnc, LABELS, ["a"])
    with pytest.raises(ValueError, match="must be unique"):
        static_fnc_table(fnc, LABELS, ["a", "a"])
    with pytest.raises(ValueError, match="does not start with 's<scale>-'"):
        static_fnc_table(fnc, ["x"] * 5, ["a", "b"], scale_pairs=[(4, 4)])
    with pytest.raises(ValueError, match="is not an edge name"):
        edge_scale_pairs(["age"])


def test_dfnc_metrics_table():
    metrics = {
        "fraction": np.array([[0.5, 0.5], [1.0, 0.0]]),
        "mean_dwell": np.array([[2.0, 3.0], [10.0, 0.0]]),
        "n_transitions": np.array([4, 0]),
        "transition_matrix": np.array([[[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.0, 1.0]]]),
    }
    table = dfnc_metrics_table(metrics, ["sub-01", "sub-02"])
    assert list(table.columns) == [
        "dfnc_fraction_state1", "dfnc_fraction_state2", "dfnc_dwell_state1", "dfnc_dwell_state2",
        "dfnc_n_transitions", "dfnc_tm_state1_state1", "dfnc_tm_state1_state2",
        "dfnc_tm_state2_state1", "dfnc_tm_state2_state2",
    ]
    assert table.loc["sub-01", "dfnc_tm_state2_state1"] == 0.2
    bad = dict(metrics, mean_dwell=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="Inconsistent metric shapes"):
        dfnc_metrics_table(bad, ["sub-01", "sub-02"])


def test_timecourse_table_amplitude_and_falff(rng):
    t = np.arange(128) * 2.0
    slow = np.sin(2 * np.pi * 0.03 * t)[None, :, None]
    fast = np.sin(2 * np.pi * 0.2 * t)[None, :, None]
    tcs = np.concatenate([3 * slow + 0.1 * rng.standard_normal((2, 128, 1)),
                          fast + 0.1 * rng.standard_normal((2, 128, 1))], axis=2)
    table = timecourse_table(tcs, ["s2-N1", "s2-N2"], ["sub-01", "sub-02"], t_r=2.0)
    np.testing.assert_allclose(table["amplitude_s2-N1"], tcs[:, :, 0].std(axis=1, ddof=1))
    assert (table["falff_s2-N1"] > 10 * table["falff_s2-N2"]).all()
    spec, freqs = spectra(tcs[1], 2.0)
    dyn, falff = spectral_stats(spec, freqs)
    np.testing.assert_allclose(table.loc["sub-02", ["falff_s2-N1", "falff_s2-N2"]], falff)
    dyn_cols = ["dynamic_range_s2-N1", "dynamic_range_s2-N2"]
    np.testing.assert_allclose(table.loc["sub-02", dyn_cols], dyn)
    mixed = timecourse_table([tcs[0], tcs[1][:100]], ["s2-N1", "s2-N2"], ["a", "b"], t_r=2.0)
    np.testing.assert_allclose(mixed.iloc[0], table.iloc[0])
    with pytest.raises(ValueError, match="one per node label"):
        timecourse_table(tcs, ["s2-N1"], ["a", "b"], t_r=2.0)
    with pytest.raises(ValueError, match="NaN"):
        timecourse_table(np.full((1, 20, 2), np.nan), ["a", "b"], ["a"], t_r=2.0)


def test_planted_group_effect_detected_with_fdr(rng):
    """t-tests over edges + Benjamini-Hochberg recover planted patient/control differences."""
    n_nodes, n_sub, n_vol = 12, 40, 200
    base = np.full((n_nodes, n_nodes), 0.2) + 0.8 * np.eye(n_nodes)
    effect = np.zeros_like(base)
    planted = [(0, 1), (2, 7), (4, 9), (5, 11), (3, 6)]
    for a, b in planted:
        effect[a, b] = effect[b, a] = 0.35
    labels = network_labels(12, n_nodes)
    dx = np.arange(n_sub) % 2 == 1
    mats = []
    for patient in dx:
        corr = base + (effect if patient else 0)
        x = rng.standard_normal((n_vol, n_nodes)) @ np.linalg.cholesky(corr).T
        mats.append(x)
    est = StaticFNC().fit({12: mats[0]})
    fnc = est.transform([{12: x} for x in mats])
    ids = [f"sub-{i:02d}" for i in range(n_sub)]
    parts = pd.DataFrame({"participant_id": ids, "diagnosis": np.where(dx, "patient", "control")})
    table = static_fnc_table(fnc, labels, ids, participants=parts)
    edges = table.columns[1:]
    pat = table["diagnosis"] == "patient"
    pvals = stats.ttest_ind(table.loc[pat, edges], table.loc[~pat, edges]).pvalue
    significant = stats.false_discovery_control(pvals) < 0.05
    truth = np.isin(edges, [f"{labels[a]}__{labels[b]}" for a, b in planted])
    assert significant[truth].mean() == 1.0
    assert significant[~truth].mean() <= 0.05


def test_group_table_for_1000_participants(rng):
    """1000 participants x 105 networks: all 5460 edges in place (timed in benchmarks/fnc.py)."""
    n_sub, n = 1000, 105
    fnc = np.zeros((n_sub, n, n))
    iu = np.triu_indices(n, 1)
    fnc[:, iu[0], iu[1]] = rng.standard_normal((n_sub, iu[0].size))
    labels = network_labels(25, 25) + network_labels(80, 80)
    ids = [f"sub-{i:04d}" for i in range(n_sub)]
    parts = pd.DataFrame({"participant_id": ids, "age": np.arange(n_sub)})
    table = static_fnc_table(fnc, labels, ids, participants=parts)
    assert table.shape == (n_sub, 1 + 5460)
    np.testing.assert_array_equal(table.iloc[:, 1:].to_numpy(), fnc[:, iu[0], iu[1]])


def _run(rng, pid, t_r, n_volumes, *, trend=0.0):
    """A run with scales 10 (3 networks) and 4 (2 networks, 'DMN' and 'VIS'), finest given first."""
    ramp = trend * np.linspace(-1, 1, n_volumes)[:, None] + 5.0 * trend
    tables = {10: pd.DataFrame(rng.standard_normal((n_volumes, 3)) + ramp,
                               columns=["N1", "N2", "N3"]),
              4: pd.DataFrame(rng.standard_normal((n_volumes, 2)) + ramp, columns=["DMN", "VIS"])}
    return RunTimecourses(pid, t_r, tables, detrend_order=3, source=f"{pid}_run.tsv")


def test_timecourse_features_group_runs_by_tr_and_average_participants(rng):
    runs = [_run(rng, "sub-02", 2.0, 120), _run(rng, "sub-01", 2.0, 120),
            _run(rng, "sub-01", 2.0, 100), _run(rng, "sub-03", 2.5, 90)]
    participants = pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"],
                                 "site": ["a", "a", "b"]})
    table, labels = timecourse_features(iter(runs), participants=participants)
    assert labels == ["s4-DMN", "s4-VIS", "s10-N1", "s10-N2", "s10-N3"]  # coarse scale first
    assert list(table.index) == ["sub-01", "sub-02", "sub-03"]
    assert list(table.columns[:2]) == ["site", "amplitude_s4-DMN"]

    def by_hand(run):
        tcs = np.hstack([detrend(run.timecourses[s].to_numpy(), order=3) for s in (4, 10)])
        return timecourse_table([tcs], labels, ["x"], run.t_r).iloc[0]

    np.testing.assert_allclose(table.loc["sub-03", table.columns[1:]], by_hand(runs[3]))
    np.testing.assert_allclose(table.loc["sub-01", table.columns[1:]],
                               (by_hand(runs[1]) + by_hand(runs[2])) / 2)


def test_timecourse_features_detrend_each_run(rng):
    """GIFT's detrending removes an offset and a linear ramp exactly: features do not move."""
    flat = [_run(np.random.default_rng(1), "sub-01", 2.0, 120)]
    ramped = [_run(np.random.default_rng(1), "sub-01", 2.0, 120, trend=4.0)]
    np.testing.assert_allclose(timecourse_features(ramped)[0], timecourse_features(flat)[0],
                               rtol=1e-9)
    undetrended = RunTimecourses("sub-01", 2.0, ramped[0].timecourses, detrend_order=0)
    assert not np.allclose(timecourse_features([undetrended])[0], timecourse_features(flat)[0])


def test_timecourse_features_errors(rng):
    other = _run(rng, "sub-02", 2.0, 120)
    other.timecourses[4].columns = ["DMN", "AUD"]
    with pytest.raises(InputDataError, match=r"sub-02_run.tsv has other networks than the first "
                                             r"run; rerun the participant level"):
        timecourse_features([_run(rng, "sub-01", 2.0, 120), other])
    with pytest.raises(ValueError, match="'runs' must hold at least one run"):
        timecourse_features([])


def test_run_postprocessed_follows_node_labels_and_the_runs_own_settings(rng):
    run = _run(rng, "sub-01", 2.0, 120, trend=2.0)
    out = run.postprocessed()
    assert out.shape == (120, len(run.node_labels()))
    np.testing.assert_allclose(out[:, :2], postprocess(run.timecourses[4].to_numpy(), 2.0,
                                                       detrend_order=3))  # coarse scale first
    light = RunTimecourses("sub-01", 2.0, run.timecourses, detrend_order=1, despike=False,
                           lowpass_hz=0.05)
    np.testing.assert_allclose(light.postprocessed()[:, 2:], postprocess(
        run.timecourses[10].to_numpy(), 2.0, detrend_order=1, despike=False, lowpass_hz=0.05))
    assert not np.allclose(light.postprocessed(), out)


def test_network_covariance_table_averages_a_participants_runs(rng):
    from pipeline.classify.connectivity import network_covariances

    runs = [_run(rng, "sub-02", 2.0, 120), _run(rng, "sub-01", 2.0, 100),
            _run(rng, "sub-01", 2.0, 140)]
    table = network_covariance_table(runs)
    expected = network_covariances([(r.participant_id, r.postprocessed()) for r in runs],
                                   runs[0].node_labels())
    pd.testing.assert_frame_equal(table, expected)
    assert list(table.index) == ["sub-01", "sub-02"]
    other = _run(rng, "sub-03", 2.0, 120)
    other.timecourses[10].columns = ["N1", "N2", "N9"]
    with pytest.raises(InputDataError, match="sub-03_run.tsv has other networks"):
        network_covariance_table([runs[0], other])
    with pytest.raises(ValueError, match="'runs' must hold at least one run"):
        network_covariance_table([])
