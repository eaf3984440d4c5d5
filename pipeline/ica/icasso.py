"""ICASSO: stability of ICA estimates over repeated runs (Himberg et al. 2004).

The ICA is run ``n_runs`` times on the same group-PCA-reduced data, with
different random starts and/or a bootstrap of the voxels (the rows of GIFT's
``voxels x components`` group PCA matrix). All ``n_runs * n_components``
spatial maps are clustered by absolute correlation with average-linkage
agglomerative clustering into ``n_components`` clusters. Each cluster gives

- a *stability index* ``Iq = mean intra-cluster |r| - mean extra-cluster |r|``
  (1 for a source found identically in every run, near 0 or below for noise),
- a *centrotype*: the member with the largest summed similarity to the other
  members, used as the estimate (as GIFT does).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import ortho_group
from sklearn.base import BaseEstimator

from pipeline._docs import fill_doc
from pipeline._validation import (
    check_array_2d,
    check_in_allowed,
    check_int,
    check_random_state,
    derive_seeds,
)
from pipeline.exceptions import ConvergenceWarning
from pipeline.ica._matching import abs_correlation
from pipeline.ica.fastica import TorchFastICA
from pipeline.ica.infomax import Infomax, fit_runs

__all__ = ["ICASSO", "cluster_stability", "unmix"]

LOGGER = logging.getLogger("msica.ica")

ALGORITHMS = ("infomax", "fastica")
MODES = ("randinit", "bootstrap", "both")


def unmix(
    reduced: np.ndarray,
    algorithm: str = "infomax",
    *,
    random_state: Any = None,
    device: Any = "auto",
    random_init: bool = False,
    bootstrap: bool = False,
    ica_params: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """One spatial ICA of whitened reduced data.

    Parameters
    ----------
    reduced : ndarray of shape (n_components, n_voxels)
        Whitened group-PCA data.
    algorithm : {"infomax", "fastica"}
    random_state, device
        As in :class:`ICASSO`.
    random_init : bool
        Start Infomax from a random orthogonal matrix (FastICA always does).
    bootstrap : bool
        Estimate the unmixing on voxels drawn with replacement; the sources
        are then computed on all voxels.
    ica_params : dict or None
        Extra parameters of :class:`~pipeline.ica.infomax.Infomax` or
        :class:`~pipeline.ica.fastica.TorchFastICA`.

    Returns
    -------
    sources : ndarray of shape (n_components, n_voxels)
    unmixing : ndarray of shape (n_components, n_components)
        ``sources = unmixing @ reduced``.
    n_iter : int
    converged : bool
    """
    est, fit_data = _make_run(reduced, algorithm, random_state=random_state, device=device,
                              random_init=random_init, bootstrap=bootstrap, ica_params=ica_params)
    with warnings.catch_warnings():  # reported by the caller, from ``converged``
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(fit_data.T)
    return (*_run_result(est, reduced), est.converged_)


def _make_run(reduced, algorithm, *, random_state, device, random_init, bootstrap, ica_params):
    """The unfitted estimator of one run and the (n_components, n_voxels) data it fits."""
    check_in_allowed("algorithm", algorithm, ALGORITHMS)
    rng = check_random_state(random_state)
    params = dict(ica_params or {})
    n_comp, n_voxels = reduced.shape
    fit_data = reduced
    if bootstrap:
        fit_data = reduced[:, rng.randint(0, n_voxels, size=n_voxels)]
    seed = int(rng.randint(np.iinfo(np.int32).max))
    if algorithm == "infomax":
        if random_init and n_comp > 1:
            params.setdefault("w_init", ortho_group.rvs(n_comp, random_state=rng))
        return Infomax(random_state=seed, device=device, **params), fit_data
    return TorchFastICA(whiten=False, random_state=seed, device=device, **params), fit_data


def _run_result(est, reduced) -> tuple[np.ndarray, np.ndarray, int]:
    """Sources on all voxels, unmixing and iterations of a fitted run."""
    unmixing = est.components_
    centred = reduced - est.mean_[:, None]
    return unmixing @ centred, unmixing, int(est.n_iter_)


def cluster_stability(
    maps: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Average-linkage clustering of maps by |r| and ICASSO's stability index.

    Parameters
    ----------
    maps : ndarray of shape (n_maps, n_voxels)
        All estimates from all runs.
    n_clusters : int
        Number of clusters (the model order).

    Returns
    -------
    labels : ndarray of shape (n_maps,)
        Cluster of each map, 0-based.
    stability : ndarray of shape (n_found,)
        ``Iq`` per cluster (``n_found <= n_clusters``).
    centrotypes : ndarray of shape (n_found,)
        Index into ``maps`` of each cluster's centrotype.
    similarity : ndarray of shape (n_maps, n_maps)
        The |r| matrix.

    Notes
    -----
    ``Iq = mean(|r| within, diagonal excluded) - mean(|r| to non-members)``.
    A singleton cluster has no internal support: its internal mean is 0.
    """
    sim = abs_correlation(maps, maps)
    np.fill_diagonal(sim, 1.0)
    dist = np.clip(1.0 - sim, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    link = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(link, t=n_clusters, criterion="maxclust") - 1
    found = np.unique(labels)
    stability = np.empty(found.size)
    centrotypes = np.empty(found.size, dtype=int)
    for i, lab in enumerate(found):
        members = np.flatnonzero(labels == lab)
        others = np.flatnonzero(labels != lab)
        block = sim[np.ix_(members, members)]
        n_m = members.size
        intra = (block.sum() - n_m) / (n_m * (n_m - 1)) if n_m > 1 else 0.0
        extra = sim[np.ix_(members, others)].mean() if others.size else 0.0
        stability[i] = intra - extra
        centrotypes[i] = members[np.argmax(block.sum(axis=1))]
    return labels, stability, centrotypes, sim


@fill_doc
class ICASSO(BaseEstimator):
    """Repeated ICA runs, clustering and stability (ICASSO) on reduced data.

    Parameters
    ----------
    n_runs : int, default=10
        Number of ICA runs (at least 2).
    algorithm : {"infomax", "fastica"}, default="infomax"
    mode : {"randinit", "bootstrap", "both"}, default="randinit"
        ``"randinit"``: random initial unmixing per run; ``"bootstrap"``:
        the unmixing is estimated on voxels resampled with replacement;
        ``"both"``: both at once.
    %(ica_params)s
    %(random_state)s
    %(device)s

    Attributes
    ----------
    components_ : ndarray of shape (n_found, n_voxels)
        Centrotype maps, sorted by decreasing stability, sign flipped so
        each map's skewness is positive. ``n_found`` is the model order unless
        the clustering merged clusters.
    mixing_ : ndarray of shape (n_components, n_found)
        Least-squares mixing: ``reduced ~= mixing_ @ components_``.
    stability_ : ndarray of shape (n_found,)
        ``Iq`` of each component's cluster.
    cluster_sizes_ : ndarray of shape (n_found,)
        Number of estimates in each cluster (``n_runs`` for a clean source).
    run_components_ : ndarray of shape (n_runs, n_components, n_voxels)
        Every run's maps (float32).
    labels_ : ndarray of shape (n_runs * n_components,)
        Cluster of each run's map, indexed like ``stability_``.
    n_iter_ : ndarray of shape (n_runs,)
        ICA iterations per run.
    n_converged_ : int
        Runs that met their tolerance.

    Warns
    -----
    ConvergenceWarning
        Once per fit, when some runs did not converge.

    References
    ----------
    Himberg J, Hyvarinen A, Esposito F (2004). Validating the independent
    components of neuroimaging time series via clustering and visualization.
    NeuroImage 22:1214-1222.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> S = rng.laplace(size=(3, 3000))
    >>> Z = np.linalg.qr(rng.randn(3, 3))[0] @ (S / S.std(1, keepdims=True))
    >>> ic = ICASSO(n_runs=3, algorithm="fastica", random_state=0, device="cpu").fit(Z)
    >>> ic.components_.shape, bool(ic.stability_.min() > 0.9)
    ((3, 3000), True)
    """

    def __init__(
        self,
        n_runs=10,
        *,
        algorithm="infomax",
        mode="randinit",
        ica_params=None,
        random_state=None,
        device="auto",
    ):
        self.n_runs = n_runs
        self.algorithm = algorithm
        self.mode = mode
        self.ica_params = ica_params
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        """Run the ICAs and cluster them.

        Parameters
        ----------
        X : array-like of shape (n_components, n_voxels)
            Whitened reduced data (``GroupICA.group_pca_components_``): rows
            are components, columns are voxels.
        y : None
            Ignored.

        Returns
        -------
        self : ICASSO

        Raises
        ------
        ValueError
            If ``n_runs < 2`` or ``X`` has more rows than columns.
        """
        check_int("n_runs", self.n_runs, 2,
                  fix="ICASSO compares runs; use a single ICA (GroupICA with n_runs=1) instead.")
        check_in_allowed("algorithm", self.algorithm, ALGORITHMS)
        check_in_allowed("mode", self.mode, MODES)
        X = check_array_2d("X", X)
        n_comp, n_voxels = X.shape
        if n_comp >= n_voxels:
            raise ValueError(
                f"'X' must be (n_components, n_voxels) with fewer components than voxels. "
                f"Got shape {X.shape}; pass the transpose."
            )
        seeds = derive_seeds(self.random_state, self.n_runs)
        made = [
            _make_run(X, self.algorithm, random_state=int(seed), device=self.device,
                      random_init=self.mode in ("randinit", "both"),
                      bootstrap=self.mode in ("bootstrap", "both"), ica_params=self.ica_params)
            for seed in seeds
        ]
        # Non-convergence is counted here and reported once, below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.algorithm == "infomax":  # all runs at once, batched
                shared = X.T
                fit_runs([est for est, _ in made],
                         [shared if data is X else data.T for _, data in made])
            else:
                for est, data in made:
                    est.fit(data.T)
        runs = np.empty((self.n_runs, n_comp, n_voxels), dtype=np.float32)
        n_iter = np.empty(self.n_runs, dtype=int)
        for r, (est, _) in enumerate(made):
            runs[r], _, n_iter[r] = _run_result(est, X)
        n_conv = sum(est.converged_ for est, _ in made)
        flat = runs.reshape(self.n_runs * n_comp, n_voxels).astype(np.float64)
        labels, stability, centro, _ = cluster_stability(flat, n_comp)
        order = np.argsort(-stability, kind="stable")
        found = np.unique(labels)
        remap = np.empty(found.max() + 1, dtype=int)
        remap[found[order]] = np.arange(found.size)
        maps = flat[centro[order]]
        maps = maps - maps.mean(axis=1, keepdims=True)
        skew = (maps**3).mean(axis=1)
        maps *= np.where(skew < 0, -1.0, 1.0)[:, None]
        self.components_ = maps
        self.mixing_ = X @ np.linalg.pinv(maps)
        self.stability_ = stability[order]
        self.cluster_sizes_ = np.bincount(remap[labels], minlength=found.size)
        self.labels_ = remap[labels]
        self.run_components_ = runs
        self.n_iter_ = n_iter
        self.n_converged_ = n_conv
        if found.size < n_comp:
            LOGGER.info("ICASSO found %d clusters for %d components.", found.size, n_comp)
        if n_conv < self.n_runs:
            warnings.warn(
                f"{self.n_runs - n_conv} of {self.n_runs} ICASSO runs did not converge "
                f"(iterations per run: {n_iter.tolist()}). Increase max_iter in ica_params.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self
