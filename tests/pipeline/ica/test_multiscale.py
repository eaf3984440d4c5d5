"""Multi-scale fits, selection criteria, parents, template matching and export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.ica._matching import match_components
from pipeline.ica.multiscale import (
    assign_parents,
    edge_fraction,
    export_template,
    fit_multiscale,
    match_to_template,
    power_ratio,
)

RANDOM_STATE = 42  # same as conftest.RANDOM_STATE (tests are not a package)
T_R = 2.0


def _box_mask(n=12):
    mask = np.zeros((n, n, n), dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    return mask


def _slow(rng, n_volumes, n):
    """Low-frequency time courses (moving average of white noise)."""
    x = rng.randn(n_volumes + 8, n)
    kernel = np.ones(8) / 8
    return np.column_stack([np.convolve(x[:, j], kernel, mode="valid")[:n_volumes]
                            for j in range(n)])


@pytest.fixture(scope="module")
def nested():
    """2 coarse networks, each the union of 2 fine ones (disjoint blobs in the core)."""
    rng = np.random.RandomState(RANDOM_STATE)
    mask = _box_mask()
    coords = np.argwhere(mask)
    centers = np.array([[3, 3, 3], [3, 8, 3], [8, 3, 8], [8, 8, 8]])
    fine = np.stack([np.exp(-((coords - c) ** 2).sum(1) / 2.0) for c in centers])
    fine[fine < 0.05] = 0.0
    coarse = np.stack([fine[0] + fine[1], fine[2] + fine[3]])
    parent_of_fine = np.array([0, 0, 1, 1])
    subjects = []
    for _ in range(6):
        shared = _slow(rng, 120, 2)
        own = _slow(rng, 120, 4)
        tc = np.sqrt(0.6) * shared[:, parent_of_fine] + np.sqrt(0.4) * own
        tc /= tc.std(axis=0)
        subjects.append(tc @ fine + 0.05 * rng.randn(120, fine.shape[1]))
    return subjects, mask, fine, coarse, parent_of_fine


def test_parents_and_recovery_on_nested_maps(nested):
    subjects, mask, fine, coarse, parent_of_fine = nested
    res = fit_multiscale(subjects, [4, 2], mask=mask, t_r=T_R, random_state=RANDOM_STATE,
                         device="cpu")
    assert res.model_orders == (2, 4)
    assert match_components(res.components[2], coarse)[2].min() > 0.9
    rows, cols, r = match_components(res.components[4], fine)
    assert r.min() > 0.9
    table = res.labels
    assert list(table.columns[:4]) == ["index", "scale", "component", "label"]
    # the parent of each fine network is the coarse network containing it
    coarse_rows, coarse_cols, _ = match_components(res.components[2], coarse)
    label_of_coarse = {c: f"N{r_ + 1}" for r_, c in zip(coarse_rows, coarse_cols)}
    fine_table = table[table["scale"] == 4].set_index("component")
    for est_row, true_col in zip(rows, cols):
        assert fine_table.loc[est_row, "parent"] == label_of_coarse[parent_of_fine[true_col]]
    assert (table.loc[table["scale"] == 2, "parent"] == "n/a").all()
    # slow, compact, core-located networks pass the spatial and temporal criteria
    assert table["keep"].all()
    assert (table["power_ratio"] > 1.5).all() and (table["edge_fraction"] < 0.5).all()
    maps, exported = export_template(res)
    assert maps.shape == (6, fine.shape[1]) and exported["index"].tolist() == list(range(1, 7))
    np.testing.assert_allclose(maps[0], res.components[2][0])


def test_edge_fraction():
    mask = _box_mask(8)
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


def test_assign_parents_respects_keep():
    rng = np.random.RandomState(0)
    coarse = rng.randn(2, 100)
    fine = coarse[[0, 0, 1]] + 0.1 * rng.randn(3, 100)
    parent, r = assign_parents(fine, coarse)
    assert parent.tolist() == [0, 0, 1] and r.min() > 0.9
    parent, _ = assign_parents(fine, coarse, np.array([True, False]))
    assert parent.tolist() == [0, 0, 0]


def test_match_to_template():
    rng = np.random.RandomState(0)
    template = rng.randn(3, 200)
    labels = pd.DataFrame({"label": ["a", "b", "c"], "domain": ["SC", "DM", "VI"]})
    comps = np.vstack([-template[2], template[0] + 5 * rng.randn(200)])
    out = match_to_template(comps, template, labels)
    assert out.loc[0, "template_label"] == "c" and out.loc[0, "r"] == pytest.approx(1.0)
    assert bool(out.loc[0, "matched"]) and not bool(out.loc[1, "matched"])
    one = match_to_template(comps, template, labels, one_to_one=True)
    assert one["template_index"].tolist()[0] == 2
    with pytest.raises(ValueError, match=r"one row per template map \(3\)"):
        match_to_template(comps, template, labels.iloc[:2])


def test_errors(nested):
    subjects, mask, *_ = nested
    with pytest.raises(ValueError, match="'model_orders' must be a non-empty list of distinct"):
        fit_multiscale(subjects, [2, 2])
    with pytest.raises(ValueError, match=r"'thresholds' keys must be among .* unknown \['max_r'\]"):
        fit_multiscale(subjects, [2], thresholds={"max_r": 1})
