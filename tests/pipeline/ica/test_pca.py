"""Subject PCA and memory-light group PCA against an explicit SVD."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ica.pca import group_pca, preprocess_subject, subject_pca, total_variance

RANDOM_STATE = 42  # same as conftest.RANDOM_STATE (tests are not a package)


def _low_rank_blocks(n_voxels, n_blocks=5, rows=12, rank=6, seed=RANDOM_STATE):
    rng = np.random.RandomState(seed)
    maps = rng.randn(rank, n_voxels)
    blocks = []
    for _ in range(n_blocks):
        blk = (rng.randn(rows, rank) * np.arange(rank, 0, -1)) @ maps + 0.3 * rng.randn(rows, n_voxels)
        blocks.append(blk - blk.mean(axis=1, keepdims=True))
    return blocks


def test_subject_pca_whitens_and_reconstructs():
    rng = np.random.RandomState(RANDOM_STATE)
    data = rng.randn(40, 5) @ rng.randn(5, 800) + 0.01 * rng.randn(40, 800)
    res = subject_pca(data, 5)
    centred = data - data.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(np.cov(res.reduced), np.eye(5), atol=1e-8)
    np.testing.assert_allclose(res.dewhitening @ res.reduced, centred, atol=0.05)
    exact = np.linalg.eigvalsh(centred @ centred.T / 799)[::-1][:5]
    np.testing.assert_allclose(res.eigenvalues, exact, rtol=1e-10)


@pytest.mark.parametrize(("method", "n_voxels"), [("mpowit", 300), ("mpowit", 5000),
                                                  ("randomized", 5000)])
def test_group_pca_matches_exact_svd(method, n_voxels):
    blocks = _low_rank_blocks(n_voxels)
    stacked = np.vstack(blocks)
    _, sing, vt = np.linalg.svd(stacked, full_matrices=False)
    k = 6
    loaders = [lambda b=b: b for b in blocks]  # one block loaded at a time
    res = group_pca(loaders, k, method=method, tol=1e-10, random_state=RANDOM_STATE,
                    device="cpu")
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues, sing[:k] ** 2 / (n_voxels - 1), rtol=1e-6)
    # cosines of the principal angles between estimated and exact subspaces
    cosines = np.linalg.svd(res.reduced @ vt[:k].T / np.sqrt(n_voxels - 1), compute_uv=False)
    assert cosines.min() > 1 - 1e-8
    # whitening/dewhitening blocks reproduce the rank-k reconstruction
    recon = np.vstack(res.dewhitening) @ res.reduced
    u, s, v = np.linalg.svd(stacked, full_matrices=False)
    np.testing.assert_allclose(recon, (u[:, :k] * s[:k]) @ v[:k], atol=1e-6)
    white = sum(w @ b for w, b in zip(res.whitening, blocks))
    np.testing.assert_allclose(white, res.reduced, atol=1e-6)


def test_preprocess_variance_norm_matches_gift_formula():
    rng = np.random.RandomState(RANDOM_STATE)
    data = rng.randn(30, 20) + np.linspace(0, 3, 30)[:, None]
    out = preprocess_subject(data, "variance_norm")
    from scipy.signal import detrend

    ref = detrend(data, axis=0) / detrend(data, axis=0).std(axis=0, ddof=1)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    np.testing.assert_allclose(preprocess_subject(data, "remove_mean").mean(axis=0), 0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_false_centres_in_place_with_the_same_result(dtype):
    """preprocess_subject and subject_pca with copy=False: same bits, the run held once."""
    data = (np.random.RandomState(RANDOM_STATE).randn(30, 400) + 5).astype(dtype)
    ref_pre = preprocess_subject(data, "remove_mean")
    ref = subject_pca(ref_pre, 6, device="cpu")
    work = data.copy()
    pre = preprocess_subject(work, "remove_mean", copy=False)
    assert pre is work  # overwritten, not copied
    np.testing.assert_array_equal(pre, ref_pre)
    res = subject_pca(pre, 6, device="cpu", copy=False)
    for got, want in zip(res, ref):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(work.mean(axis=1), 0, atol=1e-4)  # centred per volume, in place
    np.testing.assert_array_equal(ref_pre, preprocess_subject(data, "remove_mean"))  # copy=True
    frozen = data.copy()
    frozen.flags.writeable = False  # a read-only array is copied, never written
    np.testing.assert_array_equal(preprocess_subject(frozen, "remove_mean", copy=False), ref_pre)
    np.testing.assert_array_equal(frozen, data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_total_variance_equals_numpy_by_blocks(dtype):
    data = np.random.RandomState(RANDOM_STATE).randn(37, 300).astype(dtype) * 3 + 1
    want = float(np.var(data, axis=1, ddof=1).sum())
    itemsize = np.dtype(dtype).itemsize
    for block_bytes in (300 * itemsize * 5, 2**30):  # 5 volumes a block (8 blocks), or one
        assert total_variance(data, block_bytes=block_bytes) == want


def test_group_pca_errors():
    blocks = _low_rank_blocks(200, n_blocks=2, rows=5)
    with pytest.raises(ValueError, match=r"'n_components' must be an int in \[1, min\(stacked rows=10"):
        group_pca(blocks, 11, device="cpu")
    with pytest.raises(ValueError, match=r"'n_components' must be an int in \[1, min\(stacked rows=10"):
        group_pca(_low_rank_blocks(5000, n_blocks=2, rows=5), 11, device="cpu")
    with pytest.raises(TypeError, match="'blocks' must be a sequence"):
        group_pca((b for b in blocks), 2)
    with pytest.raises(ValueError, match="'blocks' must contain at least one block"):
        group_pca([], 2)
    with pytest.raises(ValueError, match=r"'blocks\[1\]' must have 200 columns"):
        group_pca([blocks[0], blocks[1][:, :50]], 2, device="cpu")
    with pytest.raises(ValueError, match=r"'blocks\[0\]' must be a 2-D array"):
        group_pca([np.zeros(5)], 1, device="cpu")
    with pytest.raises(ValueError, match="'n_iter' must be an int >= 1"):
        group_pca(blocks, 2, n_iter=0, device="cpu")
    with pytest.raises(ValueError, match="'method' must be one of"):
        group_pca(blocks, 2, method="svd", device="cpu")


def test_subject_pca_errors():
    data = np.random.RandomState(0).randn(10, 50)
    with pytest.raises(ValueError, match=r"'n_components' must be an int in \[1, n_volumes - 1 = 9\]"):
        subject_pca(data, 10)
    rank2 = np.random.RandomState(0).randn(10, 2) @ np.random.RandomState(1).randn(2, 50)
    with pytest.raises(ValueError, match="must not exceed the rank of the data"):
        subject_pca(rank2, 5)
    with pytest.raises(ValueError, match="'method' must be one of"):
        preprocess_subject(data, "zscore")


def test_float32_input_is_reduced_in_float32():
    rng = np.random.RandomState(RANDOM_STATE)
    data = rng.randn(40, 5) @ rng.randn(5, 3000) + 0.1 * rng.randn(40, 3000)
    ref = subject_pca(preprocess_subject(data, "remove_mean"), 8, device="cpu")
    res = subject_pca(preprocess_subject(data.astype(np.float32), "remove_mean"), 8, device="cpu")
    assert res.reduced.dtype == np.float32 and res.whitening.dtype == np.float64
    np.testing.assert_allclose(res.eigenvalues, ref.eigenvalues, rtol=1e-4)
    # the 5 signal components (the other 3 span noise of near-equal eigenvalues)
    signs = np.sign(np.sum(res.reduced[:5] * ref.reduced[:5], axis=1))
    np.testing.assert_allclose(res.reduced[:5] * signs[:, None], ref.reduced[:5], atol=1e-3)
    # the float32 group PCA (exact path) matches the float64 one
    blocks = [b.astype(np.float32) for b in _low_rank_blocks(3000)]
    g32 = group_pca(blocks, 6, device="cpu")
    g64 = group_pca([b.astype(np.float64) for b in blocks], 6, device="cpu")
    assert g32.reduced.dtype == np.float32
    np.testing.assert_allclose(g32.eigenvalues, g64.eigenvalues, rtol=1e-4)
    cosines = np.linalg.svd(g32.reduced @ g64.reduced.T / 2999, compute_uv=False)
    assert cosines.min() > 1 - 1e-5
    np.testing.assert_allclose(np.cov(g32.reduced), np.eye(6), atol=1e-4)


class _CountingLoaders:
    """Loader callables that count how often each block is read."""

    def __init__(self, blocks):
        self.blocks = blocks
        self.reads = [0] * len(blocks)
        self.loaders = [self._loader(i) for i in range(len(blocks))]

    def _loader(self, i):
        def load():
            self.reads[i] += 1
            return self.blocks[i]
        return load


@pytest.mark.parametrize("method", ["mpowit", "randomized"])
def test_streamed_group_pca_reports_passes_and_matches_exact_eigenvalues(method):
    """Over EXACT_MAX_VOXELS loaders stream: each pass reads every block once; eigenvalues exact."""
    from pipeline.ica.pca import EXACT_MAX_VOXELS

    n_voxels = EXACT_MAX_VOXELS + 904
    blocks = [b.astype(np.float32) for b in _low_rank_blocks(n_voxels, n_blocks=8, rows=10,
                                                              rank=12)]
    counter = _CountingLoaders(blocks)
    k = 8
    res = group_pca(counter.loaders, k, method=method, random_state=RANDOM_STATE, device="cpu")
    assert res.converged and res.n_passes == res.n_iter + 1
    assert res.n_passes <= 11  # a small, reported number of passes
    # every block read once per pass (blocks[0] too, first read for the number of voxels)
    assert counter.reads == [res.n_passes] * 8
    stacked = np.vstack(blocks).astype(np.float64)
    exact = np.linalg.eigvalsh(stacked @ stacked.T)[::-1][:k] / (n_voxels - 1)
    np.testing.assert_allclose(res.eigenvalues, exact, rtol=1e-6)
    if method == "mpowit":
        assert res.change < 1e-6
    assert len(res.dewhitening) == 8 and res.dewhitening[3].shape == (10, k)
    white = sum(w @ b.astype(np.float64) for w, b in zip(res.whitening, blocks))
    np.testing.assert_allclose(white, res.reduced, atol=1e-6)


def test_lazy_sequence_of_blocks_is_streamed_not_stacked():
    from pipeline.ica._lazy import LazySequence

    blocks = _low_rank_blocks(5000, n_blocks=4, rows=8)
    counter = _CountingLoaders(blocks)
    lazy = LazySequence(4, lambda i: counter.loaders[i]())
    res = group_pca(lazy, 5, random_state=RANDOM_STATE, device="cpu")
    assert res.n_iter > 1 and counter.reads == [res.n_passes] * 4
    listed = group_pca(blocks, 5, random_state=RANDOM_STATE, device="cpu")
    assert listed.n_iter == 1 and listed.n_passes == 1  # in memory: stacked, exact
    np.testing.assert_allclose(res.eigenvalues, listed.eigenvalues, rtol=1e-6)
