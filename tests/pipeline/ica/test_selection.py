"""The selection scores (brain-edge energy, low/high-frequency power) and select_networks."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ica.selection import DEFAULT_THRESHOLDS, edge_fraction, power_ratio, select_networks

T_R = 2.0


def test_criteria_applied_only_where_there_are_scores():
    stability = np.array([0.9, 0.5, 0.95, 0.85])
    edge = np.array([0.1, 0.1, 0.7, 0.2])
    sel = select_networks(4, stability=stability, edge=edge, ratio=np.full(4, np.nan))
    assert sel.passed.tolist() == [True, False, False, True] == sel.keep.tolist()
    assert not sel.fallback
    assert sel.criteria == ["stability >= 0.8", "edge fraction <= 0.5"]  # ratio all NaN
    loose = select_networks(4, stability=stability, edge=edge,
                            thresholds={"max_edge_fraction": None})
    assert loose.passed.tolist() == [True, False, True, True]
    assert loose.criteria == ["stability >= 0.8"]
    assert select_networks(2).criteria == [] and select_networks(2).keep.all()
    assert DEFAULT_THRESHOLDS["min_power_ratio"] == 1.5


def test_no_network_passing_keeps_all_and_says_so():
    with pytest.warns(UserWarning, match=r"No network of model order 3 passed the selection "
                                         r"criteria \(stability >= 0.8, power ratio >= 1.5\); "
                                         r"all 3 are kept \(SelectionFallback"):
        sel = select_networks(3, stability=np.array([0.5, 0.6, 0.7]),
                              ratio=np.array([2.0, 1.0, 3.0]))
    assert sel.fallback and sel.keep.all() and not sel.passed.any()


def test_edge_fraction():
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    coords = np.argwhere(mask)
    on_edge = (coords[:, 0] == 1).astype(float)  # one face of the mask
    in_core = np.exp(-((coords - 3.5) ** 2).sum(1) / 2.0)
    frac, share = edge_fraction(np.stack([on_edge, in_core]), mask)
    assert frac[0] == pytest.approx(1.0) and frac[1] == pytest.approx(0.0)
    assert share == pytest.approx(1 - 4**3 / 6**3)
    with pytest.raises(ValueError, match=r"'maps' must have one column per in-mask voxel \(216\)"):
        edge_fraction(np.zeros((1, 10)), mask)


def test_power_ratio():
    t = np.arange(200) * T_R
    tc = np.column_stack([np.sin(2 * np.pi * 0.03 * t), np.sin(2 * np.pi * 0.2 * t),
                          np.random.RandomState(0).randn(200)])
    ratio = power_ratio(tc, T_R)
    assert ratio[0] > 100 and ratio[1] < 0.01 and 0.5 < ratio[2] < 2.0
    with pytest.raises(ValueError, match="leaves no frequency bin"):
        power_ratio(tc, 5.0)
