"""Multi-scale fits, selection criteria, parents, template matching and export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.ica._matching import match_components
from pipeline.ica.multiscale import (
    assign_parents,
    export_template,
    fit_multiscale,
    match_to_template,
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


def test_selection_fallback_is_recorded(nested):
    """A threshold nothing meets: every network kept, and the labels and result say so."""
    subjects, mask, _, _, _ = nested
    with pytest.warns(UserWarning, match=r"passed the selection criteria \(edge fraction "
                                         r"<= -1\)") as record:
        res = fit_multiscale(subjects, [2, 4], mask=mask, thresholds={"max_edge_fraction": -1},
                             random_state=RANDOM_STATE, device="cpu")
    assert [str(w.message).split(" passed")[0] for w in record] == [  # one per scale
        "No network of model order 2", "No network of model order 4"]
    assert res.selection_fallback == {2: True, 4: True}
    assert not res.labels["passed"].any() and res.labels["keep"].all()
    assert res.kept(4).tolist() == [0, 1, 2, 3] and len(res.scale_labels(4)) == 4
    normal = fit_multiscale(subjects, [2, 4], mask=mask, t_r=T_R, random_state=RANDOM_STATE,
                            device="cpu")
    assert normal.selection_fallback == {2: False, 4: False}
    assert (normal.labels["passed"] == normal.labels["keep"]).all()
    table = normal.scale_labels(4)
    assert table["index"].tolist() == list(range(1, len(table) + 1))
    assert table["component"].tolist() == normal.kept(4).tolist()


def test_group_mask_is_the_intersection_on_one_grid():
    from pipeline.exceptions import InputDataError
    from pipeline.ica.multiscale import group_mask
    from pipeline.ica.persistence import GroupMask

    a = GroupMask(np.array([0, 3, 4, 7]), (2, 2, 2), np.eye(4))
    b = GroupMask(np.array([3, 4, 6, 7]), (2, 2, 2), np.eye(4))
    common = group_mask([("a", a), ("b", b)])
    assert common.voxels.tolist() == [3, 4, 7]
    assert common.mask.sum() == 3 and common.mask.reshape(-1)[[3, 4, 7]].all()
    shifted = GroupMask(b.voxels, (2, 2, 2), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(InputDataError, match=r"b is on grid \(2, 2, 2\), not \(2, 2, 2\) like a"):
        group_mask([("a", a), ("b", shifted)])
    with pytest.raises(InputDataError, match="share no voxel"):
        group_mask([("a", a), ("c", GroupMask(np.array([1, 2]), (2, 2, 2), np.eye(4)))])
    with pytest.raises(ValueError, match="at least one run's mask"):
        group_mask([])


def test_fit_on_subject_pca_files_equals_fit_in_memory(nested, tmp_path):
    """Files read one at a time inside the group mask give the in-memory fit on those voxels."""
    from pipeline.ica.multiscale import fit_multiscale_subject_pcas
    from pipeline.ica.pca import preprocess_subject, subject_pca
    from pipeline.ica.persistence import save_subject_pca

    subjects, mask, _, _, _ = nested
    voxels = np.flatnonzero(mask)
    files, reduced = [], []
    for s, data in enumerate(subjects):
        own = voxels if s else voxels[5:]  # the first run misses 5 voxels of the mask
        res = subject_pca(preprocess_subject(data if s else data[:, 5:], "remove_mean"), 8,
                          device="cpu")
        path = tmp_path / f"sub-0{s}_desc-pca.npz"
        save_subject_pca(path, res, voxels=own, shape=mask.shape, affine=np.eye(4),
                         sample_mask=np.arange(data.shape[0]))
        files.append(path)
        reduced.append((res, own))
    result = fit_multiscale_subject_pcas(files, [2, 4], t_r=T_R, random_state=RANDOM_STATE,
                                         device="cpu")
    assert result.group_mask.voxels.tolist() == voxels[5:].tolist()
    arrays = {"reduced": [r.reduced.astype(np.float32)[:, np.searchsorted(v, voxels[5:])]
                          for r, v in reduced],
              "whitening": [r.whitening for r, _ in reduced],
              "dewhitening": [r.dewhitening for r, _ in reduced], "n_voxels": voxels.size - 5}
    eager = fit_multiscale(arrays, [2, 4], mask=result.group_mask.mask, t_r=T_R,
                           random_state=RANDOM_STATE, device="cpu")
    np.testing.assert_allclose(result.components[4], eager.components[4])
    pd.testing.assert_frame_equal(result.labels, eager.labels)
