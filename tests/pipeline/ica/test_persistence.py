"""pipeline.ica.persistence: the subject-PCA and group-model files, their schema and checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.exceptions import InputDataError
from pipeline.ica.multiscale import fit_multiscale_subject_pcas
from pipeline.ica.pca import subject_pca
from pipeline.ica.persistence import (
    MODEL_VERSION,
    SUBJECT_PCA_VERSION,
    load_run_model,
    load_subject_pca,
    read_subject_pcas,
    save_group_model,
    save_subject_pca,
    subject_pca_grid,
    subject_pca_sidecar,
)

RANDOM_STATE = 42
SHAPE = (6, 6, 5)


def _save_run(path, rng, voxels, n_volumes=40, n_components=8):
    maps = rng.laplace(size=(3, voxels.size))
    data = rng.randn(n_volumes, 3) @ maps + 0.3 * rng.randn(n_volumes, voxels.size)
    res = subject_pca(data - data.mean(axis=0), n_components, device="cpu")
    save_subject_pca(path, res, voxels=voxels, shape=SHAPE, affine=np.eye(4),
                     sample_mask=np.arange(n_volumes))
    subject_pca_sidecar(path).write_text(json.dumps({"SourceFile": str(path)}))
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    rng = np.random.RandomState(RANDOM_STATE)
    root = tmp_path_factory.mktemp("pca")
    voxels = np.arange(int(np.prod(SHAPE)))
    files, results = [], []
    for s in range(4):
        path = root / f"sub-0{s}_desc-pca.npz"
        results.append(_save_run(path, rng, voxels[s:]))  # masks differ by a few voxels
        files.append(path)
    return files, results


def test_subject_pca_round_trip(runs):
    files, results = runs
    arrays, meta = load_subject_pca(files[1])
    assert int(arrays["format_version"]) == SUBJECT_PCA_VERSION
    assert arrays["reduced"].dtype == np.float32
    np.testing.assert_array_equal(arrays["reduced"], results[1].reduced.astype(np.float32))
    np.testing.assert_array_equal(arrays["dewhitening"], results[1].dewhitening)
    assert arrays["voxels"][0] == 1 and tuple(arrays["shape"]) == SHAPE
    assert meta == {"SourceFile": str(files[1])}
    grid = subject_pca_grid(files[2])
    assert grid.shape == SHAPE and grid.voxels[0] == 2 and grid.mask.sum() == grid.voxels.size
    lazy = read_subject_pcas(files, np.arange(3, 20))
    assert lazy["n_voxels"] == 17 and len(lazy["reduced"]) == 4
    np.testing.assert_array_equal(lazy["reduced"][2], arrays_of(files[2])["reduced"][:, 1:18])
    np.testing.assert_array_equal(lazy["whitening"][0], results[0].whitening)


def arrays_of(path):
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def test_group_model_round_trip(runs):
    files, _ = runs
    # evenly spread maps on a 6x6x5 box put ~70% of their energy on its edge: no network
    # passes, all are kept (the model stores the fallback's kept networks)
    with pytest.warns(UserWarning, match="SelectionFallback"):
        result = fit_multiscale_subject_pcas(files, [2, 3], random_state=RANDOM_STATE,
                                             device="cpu")
    path = files[0].parent / "model.npz"
    save_group_model(path, result)
    stored = arrays_of(path)
    assert int(stored["format_version"]) == MODEL_VERSION
    assert stored["model_orders"].tolist() == [2, 3]
    assert stored["voxels"].tolist() == result.group_mask.voxels.tolist()
    run = load_run_model(path, 3, 2)
    est = result.estimators[3]
    np.testing.assert_array_equal(run.unmixing, est.unmixing_)
    np.testing.assert_array_equal(run.group_whitening, est.group_whitening_[2])
    np.testing.assert_array_equal(run.group_dewhitening, est.group_dewhitening_[2])
    np.testing.assert_array_equal(run.kept, result.kept(3))
    assert result.selection_fallback[3] and run.kept.tolist() == [0, 1, 2]
    assert run.group_mask.shape == SHAPE
    np.testing.assert_array_equal(run.group_mask.affine, np.eye(4))
    with pytest.raises(InputDataError, match=r"has no model order 5 or run 0 \(orders: \[2, 3\]\)"):
        load_run_model(path, 5, 0)
    result.group_mask = None
    with pytest.raises(ValueError, match="must carry its group mask"):
        save_group_model(path, result)


def test_files_of_another_layout_are_refused(tmp_path, runs):
    files, _ = runs
    old = tmp_path / "sub-01_desc-pca.npz"
    np.savez(old, reduced=np.zeros((2, 3), np.float32), voxels=np.arange(3),
             shape=np.asarray(SHAPE), affine=np.eye(4))
    subject_pca_sidecar(old).write_text("{}")
    fix = "rerun the participant level with --model-orders"
    with pytest.raises(InputDataError, match=rf"is not a subject PCA of format version 1 "
                                             rf"\(found: none; .*\); {fix}"):
        subject_pca_grid(old)
    with pytest.raises(InputDataError, match=r"is not a subject PCA of format version 1"):
        load_subject_pca(old)
    with pytest.raises(InputDataError, match=r"is not a group ICA model of format version 1 "
                                             r"\(found: 7;.*\); rerun the group level"):
        np.savez(tmp_path / "model.npz", format_version=np.asarray(7))
        load_run_model(tmp_path / "model.npz", 2, 0)
    no_sidecar = tmp_path / "sub-02_desc-pca.npz"
    no_sidecar.write_bytes(files[0].read_bytes())
    with pytest.raises(InputDataError, match=rf"has no sidecar sub-02_desc-pca.json; {fix}"):
        load_subject_pca(no_sidecar)


def test_nothing_in_a_file_runs_code(tmp_path):
    """Object arrays (pickles) are refused; a file that is not an archive too."""
    evil = tmp_path / "sub-03_desc-pca.npz"
    np.savez(evil, format_version=np.asarray(SUBJECT_PCA_VERSION),
             voxels=np.array([object()], dtype=object), shape=np.asarray(SHAPE),
             affine=np.eye(4))
    with pytest.raises(InputDataError, match=r"sub-03_desc-pca.npz holds data msica does not "
                                             r"read \(.*allow_pickle=False.*\); rerun"):
        subject_pca_grid(evil)
    garbage = tmp_path / "model.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(InputDataError, match=r"model.npz is not a readable group ICA model"):
        load_run_model(garbage, 2, 0)
