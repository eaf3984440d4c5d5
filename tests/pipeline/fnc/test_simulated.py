"""FNC on pipeline.simulate cohorts of the default size: planted effects and dFNC states.

Default size: 24 participants (2 sites), 150 volumes, scales (4, 10), 3 states
(a coarser grid than the default only to save time: the true time courses do
not depend on it).
Reproduce the printed numbers with
``pytest -s -q tests/pipeline/fnc/test_simulated.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment

from pipeline.features import static_fnc_table
from pipeline.fnc.states import DynamicFNC
from pipeline.fnc.static import StaticFNC

from .conftest import RANDOM_STATE

simulate = pytest.importorskip("pipeline.simulate")


@pytest.fixture(scope="module")
def cohort():
    return simulate.simulate_cohort(grid_mm=12.0, random_state=0)


def _upper(mats: np.ndarray) -> np.ndarray:
    iu = np.triu_indices(mats.shape[-1], 1)
    return mats[..., iu[0], iu[1]]


def _fdr(pvals: np.ndarray) -> np.ndarray:
    try:
        from statsmodels.stats.multitest import fdrcorrection
    except ImportError:
        return stats.false_discovery_control(pvals)
    return fdrcorrection(pvals)[1]


def test_dfnc_recovers_simulated_states(cohort):
    """Silhouette picks the simulated number of states; matched centroids correlate >= 0.8.

    The state matrices share the hierarchy's structure (siblings, ancestors) and
    correlate about 0.7 with each other over all nodes, so each centroid must
    also correlate clearly more with its own state than with any other. (The
    elbow criterion picks 4 states on this cohort: its knee is shallow.)
    """
    tcs = [np.hstack([s.timecourses[sc] for sc in cohort.scales]) for s in cohort.subjects]
    est = DynamicFNC(selection="silhouette", max_states=8, window=30,
                     random_state=RANDOM_STATE).fit(tcs)
    truth = np.arctanh(np.clip(_upper(cohort.state_fnc_all), -0.999, 0.999))
    n_true = truth.shape[0]
    print(f"silhouette scores: { {k: round(v, 3) for k, v in est.selection_scores_.items()} }")
    assert est.n_states_ == n_true
    sim = np.corrcoef(np.vstack([est.cluster_centers_, truth]))[:n_true, n_true:]
    rows, cols = linear_sum_assignment(-sim)
    matched = sim[rows, cols]
    is_match = np.zeros_like(sim, dtype=bool)
    is_match[rows, cols] = True
    other = np.where(is_match, -np.inf, sim)[rows].max(axis=1)
    print(f"matched centroid-state r: {matched.round(3)}, best unmatched: {other.round(3)}")
    assert matched.min() >= 0.8
    assert np.all(matched - other >= 0.05)
    # window labels follow the planted state at the window centre (GIFT's window
    # ``i`` is centred on volume ``i + 1 + window / 2``)
    mapping = dict(zip(rows, cols))
    centre = 1 + est.window // 2
    agree = [np.mean(np.array([mapping[k] for k in lab]) == s.states[centre:centre + len(lab)])
             for lab, s in zip(est.states_, cohort.subjects)]
    print(f"window-state agreement: {np.mean(agree):.3f}")
    assert np.mean(agree) >= 0.7


def test_planted_effects_are_the_significant_edges(cohort):
    """Static FNC table, two-sample t-tests on every edge, FDR per target (q < 0.05).

    Planted edges: the pairs of ``cohort.effects`` (3 diagnosis, 1 medication,
    1 response). Null edges: those whose expected correlation does not differ
    between the two groups (|delta| < 0.02, from the simulator's
    per-participant expected FNC).
    """
    tcs = [s.timecourses for s in cohort.subjects]
    est = StaticFNC().fit(tcs)
    table = static_fnc_table(est.transform(tcs), est.labels_,
                             cohort.participants["participant_id"],
                             participants=cohort.participants)
    edges = [c for c in table.columns if "__" in c]
    iu = np.triu_indices(len(cohort.labels), 1)
    assert len(edges) == iu[0].size
    z = table[edges].to_numpy()
    expected = np.stack([s.fnc[iu] for s in cohort.subjects])
    hits, n_planted, false_pos, n_null = 0, 0, 0, 0
    for target, eff in cohort.effects.groupby("target"):
        g1 = (table[target] == eff["level"].iloc[0]).to_numpy()
        g0 = (table[target] == eff["reference"].iloc[0]).to_numpy()
        test = stats.ttest_ind(z[g1], z[g0])
        significant = _fdr(test.pvalue) < 0.05
        planted = np.zeros(iu[0].size, dtype=bool)
        for a, b, delta in zip(eff["node_a"], eff["node_b"], eff["delta"]):
            k = np.flatnonzero((iu[0] == min(a, b)) & (iu[1] == max(a, b)))[0]
            planted[k] = True
            if significant[k]:  # a detected planted edge has the planted sign
                assert np.sign(test.statistic[k]) == np.sign(delta)
        null = (np.abs(expected[g1].mean(0) - expected[g0].mean(0)) < 0.02) & ~planted
        hits += int(significant[planted].sum())
        n_planted += int(planted.sum())
        false_pos += int(significant[null].sum())
        n_null += int(null.sum())
        print(f"{target}: planted edges recovered {significant[planted].sum()}/{planted.sum()}, "
              f"false positives {significant[null].sum()}/{null.sum()}")
    recall, fpr = hits / n_planted, false_pos / n_null
    print(f"recall {recall:.2f}, false-positive rate {fpr:.3f} ({n_null} null edges)")
    assert n_null >= 50
    assert recall >= 0.8
    assert fpr <= 0.05
