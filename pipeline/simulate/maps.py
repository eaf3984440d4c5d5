"""Spatial side of the simulator: the brain mask grid and smooth network maps.

Networks are bilateral Gaussian blobs on an MNI-like grid. The finest networks
are the building blocks; a network at a coarser scale is the normalized sum of
its children, so the maps of all scales are nested by construction.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

__all__ = [
    "NetworkLayout",
    "assign_children",
    "combine_children",
    "load_grid_mask",
    "place_networks",
    "render_maps",
]

#: Minimal distance (mm) from a blob centre to the edge of the brain mask.
_EDGE_MARGIN_MM = 14.0


@functools.lru_cache(maxsize=4)
def _mask_on_grid(grid_mm: float) -> tuple[np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_brain_mask

    src = load_mni152_brain_mask(resolution=2)
    src_data = np.asarray(src.get_fdata(), dtype=np.float64)
    src_aff = src.affine
    # World bounding box of the source mask, then a grid of step grid_mm on it.
    idx = np.argwhere(src_data > 0)
    lo = src_aff[:3, :3] @ idx.min(0) + src_aff[:3, 3]
    hi = src_aff[:3, :3] @ idx.max(0) + src_aff[:3, 3]
    lo, hi = np.minimum(lo, hi) - grid_mm, np.maximum(lo, hi) + grid_mm
    shape = tuple(int(np.ceil((h - l) / grid_mm)) + 1 for l, h in zip(lo, hi))
    affine = np.diag([grid_mm, grid_mm, grid_mm, 1.0])
    affine[:3, 3] = lo
    ijk = np.indices(shape).reshape(3, -1).astype(np.float64)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    src_ijk = np.linalg.solve(src_aff[:3, :3], world - src_aff[:3, 3:4])
    # Fraction of the target voxel covered by brain: smooth the source mask by
    # a box of the target size, then interpolate at the target centres.
    width = max(1, int(round(grid_mm / abs(src_aff[0, 0]))))
    frac = ndimage.uniform_filter(src_data, size=width, mode="constant")
    vals = ndimage.map_coordinates(frac, src_ijk, order=1, mode="constant", cval=0.0)
    mask = (vals.reshape(shape) >= 0.5)
    return mask, affine


def load_grid_mask(grid_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Return nilearn's MNI152 brain mask resampled to an isotropic grid.

    Parameters
    ----------
    grid_mm : float
        Voxel size of the output grid, in mm.

    Returns
    -------
    mask : ndarray of shape (nx, ny, nz), dtype bool
        Voxels whose box is at least half inside the 2 mm MNI152 brain mask.
    affine : ndarray of shape (4, 4)
        Voxel-to-MNI (mm) affine, diagonal with step ``grid_mm``.

    Notes
    -----
    The mask ships with nilearn (``load_mni152_brain_mask(resolution=2)``); no
    download. Results are cached per ``grid_mm``; copies are returned.
    """
    mask, affine = _mask_on_grid(float(grid_mm))
    return mask.copy(), affine.copy()


class NetworkLayout:
    """Centres and widths of the finest networks and their hierarchy.

    Parameters
    ----------
    centers : ndarray of shape (n_fine, 3)
        Left-hemisphere (or midline) blob centres in mm; each network also has
        the mirror blob at ``x -> -x``.
    sigmas : ndarray of shape (n_fine,)
        Gaussian widths in mm.
    parents : list of ndarray
        ``parents[j]`` maps each network of scale ``j + 1`` to its parent at
        scale ``j`` (indices).
    """

    def __init__(self, centers: np.ndarray, sigmas: np.ndarray, parents: list[np.ndarray]):
        self.centers = centers
        self.sigmas = sigmas
        self.parents = parents


def _farthest_points(points: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """Indices of ``n`` rows of ``points`` chosen by farthest-point sampling."""
    chosen = [int(rng.randint(len(points)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return np.asarray(chosen)


def assign_children(scales: tuple[int, ...]) -> list[np.ndarray]:
    """Parent index (at scale ``j``) of every network at scale ``j + 1``.

    Children are spread as evenly as possible over the parents, in order.
    """
    parents = []
    for coarse, fine in zip(scales[:-1], scales[1:]):
        parents.append((np.arange(fine) * coarse) // fine)
    return parents


def place_networks(mask: np.ndarray, affine: np.ndarray, scales: tuple[int, ...],
                   rng: np.random.RandomState, sigma_mm: float = 8.0) -> NetworkLayout:
    """Choose blob centres so that the children of one parent lie together.

    Centres of the coarsest networks are spread over the left hemisphere by
    farthest-point sampling; each finer network is placed within the region of
    its parent (the Voronoi cell of the parent centre), again spread out.
    """
    ijk = np.argwhere(mask)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    depth = ndimage.distance_transform_edt(mask) * abs(affine[0, 0])
    deep = depth[mask] >= _EDGE_MARGIN_MM
    left = xyz[:, 0] <= -4.0
    cand = xyz[deep & left]
    parents = assign_children(scales)
    centers = cand[_farthest_points(cand, scales[0], rng)]
    for j, par in enumerate(parents):
        owner = np.argmin(
            np.linalg.norm(cand[:, None, :] - centers[None, :, :], axis=2), axis=1
        )
        new = np.zeros((scales[j + 1], 3))
        for p in range(scales[j]):
            kids = np.flatnonzero(par == p)
            region = cand[owner == p]
            near = region[np.linalg.norm(region - centers[p], axis=1) <= 30.0]
            region = near if len(near) >= len(kids) else region
            if len(kids) == 1:
                new[kids[0]] = centers[p]
            else:
                new[kids] = region[_farthest_points(region, len(kids), rng)]
        centers = new
    sigmas = sigma_mm * rng.uniform(0.9, 1.1, size=len(centers))
    return NetworkLayout(centers=centers, sigmas=sigmas, parents=parents)


def render_maps(mask: np.ndarray, affine: np.ndarray, centers: np.ndarray,
                sigmas: np.ndarray, *, mirror_centers: np.ndarray | None = None) -> np.ndarray:
    """Evaluate bilateral Gaussian blobs on the in-mask voxels.

    Parameters
    ----------
    mask : ndarray of shape (nx, ny, nz), dtype bool
    affine : ndarray of shape (4, 4)
    centers : ndarray of shape (n_networks, 3)
        Left blob centres (mm).
    sigmas : ndarray of shape (n_networks,)
    mirror_centers : ndarray of shape (n_networks, 3), optional
        Right blob centres; default mirrors ``centers`` at ``x = 0``.

    Returns
    -------
    ndarray of shape (n_networks, n_voxels)
        Maps with peak 1 (values below 1 % of the peak are set to 0).
    """
    xyz = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    if mirror_centers is None:
        mirror_centers = centers * np.array([-1.0, 1.0, 1.0])
    maps = np.empty((len(centers), len(xyz)))
    for k, (c_l, c_r, s) in enumerate(zip(centers, mirror_centers, sigmas)):
        d_l = np.sum((xyz - c_l) ** 2, axis=1)
        d_r = np.sum((xyz - c_r) ** 2, axis=1)
        m = np.exp(-0.5 * d_l / s**2) + np.exp(-0.5 * d_r / s**2)
        m /= m.max()
        m[m < 0.01] = 0.0
        maps[k] = m
    return maps


def combine_children(fine_maps: np.ndarray, parent_of: np.ndarray, n_parents: int) -> np.ndarray:
    """Coarse maps as the sum of their children, scaled to peak 1."""
    out = np.zeros((n_parents, fine_maps.shape[1]))
    np.add.at(out, parent_of, fine_maps)
    peak = np.abs(out).max(axis=1, keepdims=True)
    return out / np.where(peak > 0, peak, 1.0)
