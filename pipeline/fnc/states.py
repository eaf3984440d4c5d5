"""Group dFNC states: exemplar windows, city-block k-means, and state metrics.

Re-implements GIFT's ``icatb_post_process_dfnc`` (subject exemplars, city-block
k-means started from the exemplar centroids) and
``icatb_dfnc_statevector_stats`` (fraction of time, mean dwell time, number of
transitions, transition matrix) on numpy arrays.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from pipeline._docs import fill_doc
from pipeline._validation import check_array_2d, check_in_allowed, check_int, check_random_state
from pipeline.exceptions import ConvergenceWarning
from pipeline.fnc.dynamic import sliding_window_fnc, vec_to_sym

__all__ = ["DynamicFNC", "kmeans_l1", "state_metrics", "subject_exemplars"]

LOGGER = logging.getLogger("msica.fnc")


def subject_exemplars(dfnc: Any) -> np.ndarray:
    """Windows at local maxima of the across-pair standard deviation (GIFT).

    Parameters
    ----------
    dfnc : array-like of shape (n_windows, n_pairs)

    Returns
    -------
    ndarray of int
        Sorted window indices (GIFT ``icatb_extrema`` maxima: flat peaks give
        their middle element; the ends count when they are maxima).
    """
    dev = np.std(np.asarray(dfnc, dtype=np.float64), axis=1, ddof=1)
    n = dev.size
    d = np.diff(dev)
    if n < 2 or not np.any(d):
        return np.array([], dtype=int)
    a = np.flatnonzero(d != 0)
    lm = np.flatnonzero(np.diff(a) != 1) + 1
    a = a.copy()
    a[lm] = a[lm] - (a[lm] - a[lm - 1]) // 2
    a = np.append(a, n - 1)
    b = (np.diff(dev[a]) > 0).astype(int)
    xb = np.diff(b)
    imax = a[np.flatnonzero(xb == -1) + 1]
    imin = a[np.flatnonzero(xb == 1) + 1]
    if imax.size == 0 and imin.size == 0:
        return np.array([0 if dev[0] > dev[-1] else n - 1])
    if imax.size == 0:
        imax = np.array([0, n - 1])
    elif imin.size > 0:
        if imax[0] < imin[0]:
            imin = np.r_[0, imin]
        else:
            imax = np.r_[0, imax]
        if imax[-1] <= imin[-1]:
            imax = np.r_[imax, n - 1]
    return np.unique(imax)


def _kmeanspp(x: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    centers = [x[rng.randint(x.shape[0])]]
    dmin = cdist(x, centers[0][None], "cityblock")[:, 0]
    for _ in range(1, k):
        p = dmin / dmin.sum() if dmin.sum() > 0 else np.full(x.shape[0], 1 / x.shape[0])
        centers.append(x[rng.choice(x.shape[0], p=p)])
        dmin = np.minimum(dmin, cdist(x, centers[-1][None], "cityblock")[:, 0])
    return np.array(centers)


def _member_median(x: np.ndarray, members: np.ndarray, block_bytes: int = 32 * 2**20) -> np.ndarray:
    """Column-wise median of the rows ``members`` of ``x``, a block of columns at a time.

    The same values as ``np.median(x[members], axis=0)``, without copying every
    member row (twice, with the median's partition) when one state holds most
    of a large cohort's windows.
    """
    n_members = max(int(np.count_nonzero(members)), 1)
    step = max(1, block_bytes // (8 * n_members))
    return np.concatenate([np.median(x[members, start:start + step], axis=0)
                           for start in range(0, x.shape[1], step)])


def _kmeans_l1_once(
    x: np.ndarray, centers: np.ndarray, max_iter: int
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    centers = centers.copy()
    dist = cdist(x, centers, "cityblock")
    labels = dist.argmin(axis=1)
    for _ in range(max_iter):
        for j in range(centers.shape[0]):
            members = labels == j
            if not members.any():  # MATLAB 'singleton': re-seed at the farthest point
                far = int(np.argmax(dist[np.arange(x.shape[0]), labels]))
                labels[far] = j
                members = labels == j
            centers[j] = _member_median(x, members)
        dist = cdist(x, centers, "cityblock")
        new = dist.argmin(axis=1)
        if np.array_equal(new, labels):
            return centers, labels, float(dist[np.arange(x.shape[0]), labels].sum()), True
        labels = new
    return centers, labels, float(dist[np.arange(x.shape[0]), labels].sum()), False


@fill_doc
def kmeans_l1(
    X: Any,
    n_clusters: int,
    *,
    init: Any = None,
    n_init: int = 5,
    max_iter: int = 150,
    random_state: Any = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means with the city-block (L1) distance, as MATLAB's ``kmeans(..., 'cityblock')``.

    Centroids are component-wise medians; starts are k-means++ (L1) unless
    ``init`` is given; the replicate with the smallest total distance wins.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int
    init : array-like of shape (n_clusters, n_features), optional
        Starting centroids (one run).
    n_init : int, default=5
    max_iter : int, default=150
    %(random_state)s

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of shape (n_samples,)
    inertia : float
        Sum of L1 distances to the assigned centroid.

    Raises
    ------
    ValueError
        If ``n_clusters`` is not in [1, n_samples] or ``init`` has the wrong shape.
    """
    x = check_array_2d("X", X)
    check_int("n_clusters", n_clusters, 1, x.shape[0], bound="n_samples",
              fix="Use fewer states or more participants/windows.")
    rng = check_random_state(random_state)
    if init is not None:
        starts = [check_array_2d("init", init)]
        if starts[0].shape != (n_clusters, x.shape[1]):
            raise ValueError(
                f"'init' must have shape {(n_clusters, x.shape[1])}. Got {starts[0].shape}."
            )
    else:
        starts = [_kmeanspp(x, n_clusters, rng) for _ in range(max(1, int(n_init)))]
    best = None
    n_failed = 0
    for start in starts:
        res = _kmeans_l1_once(x, start, max_iter)
        n_failed += not res[3]
        if best is None or res[2] < best[2]:
            best = res
    if n_failed:
        warnings.warn(
            f"L1 k-means did not converge in {max_iter} iterations for {n_failed} of "
            f"{len(starts)} starts. Increase max_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return best[0], best[1], best[2]


def state_metrics(states: Any, n_states: int) -> dict[str, Any]:
    """Per-participant state-vector statistics (GIFT ``icatb_dfnc_statevector_stats``).

    Parameters
    ----------
    states : array-like of int, shape (n_windows,)
        State of each window, 0-based.
    n_states : int

    Returns
    -------
    dict
        ``fraction`` (n_states,) fraction of windows in each state;
        ``mean_dwell`` (n_states,) mean run length in windows (0 if never
        visited); ``n_transitions`` int; ``transition_matrix``
        (n_states, n_states) row-normalised transition probabilities (a state
        never left before the last window gets 1 on the diagonal, as in GIFT).
    """
    a = np.asarray(states)
    if a.ndim != 1 or a.size == 0 or np.any(a < 0) or np.any(a >= n_states):
        raise ValueError(
            f"'states' must be a non-empty 1-D array of ints in [0, {n_states}). Got {a!r}."
        )
    a = a.astype(int)
    fraction = np.bincount(a, minlength=n_states) / a.size
    change = np.flatnonzero(np.diff(a)) + 1
    starts = np.r_[0, change]
    lengths = np.diff(np.r_[starts, a.size])
    run_state = a[starts]
    n_runs = np.bincount(run_state, minlength=n_states)
    total = np.bincount(run_state, weights=lengths, minlength=n_states)
    mean_dwell = np.divide(total, n_runs, out=np.zeros(n_states), where=n_runs > 0)
    tm = np.zeros((n_states, n_states))
    np.add.at(tm, (a[:-1], a[1:]), 1.0)
    leaving = np.bincount(a[:-1], minlength=n_states).astype(float)
    rows = tm.sum(axis=1) > 0
    tm[rows] /= leaving[rows, None]
    tm[~rows, :] = 0.0
    tm[np.flatnonzero(~rows), np.flatnonzero(~rows)] = 1.0
    return {
        "fraction": fraction,
        "mean_dwell": mean_dwell,
        "n_transitions": int(change.size),
        "transition_matrix": tm,
    }


def _choose_k(
    exemplars: np.ndarray, ks: list[int], selection: str, n_init: int, max_iter: int, seeds: Any
) -> tuple[int, dict[int, float]]:
    from sklearn.metrics import silhouette_score

    scores: dict[int, float] = {}
    inertias = []
    for k, seed in zip(ks, seeds):
        _, labels, inertia = kmeans_l1(
            exemplars, k, n_init=n_init, max_iter=max_iter, random_state=int(seed)
        )
        inertias.append(inertia)
        if selection == "silhouette":
            ok = 1 < np.unique(labels).size < exemplars.shape[0]
            scores[k] = silhouette_score(exemplars, labels, metric="cityblock") if ok else -1.0
    if selection == "silhouette":
        return max(scores, key=scores.get), scores
    # elbow: largest distance below the chord joining the first and last points
    w = np.asarray(inertias)
    kk = np.asarray(ks, dtype=float)
    kn = (kk - kk[0]) / max(kk[-1] - kk[0], 1)
    wn = (w - w[-1]) / max(w[0] - w[-1], np.finfo(float).tiny)
    gap = (1 - kn) - wn
    scores = dict(zip(ks, gap.tolist()))
    return ks[int(np.argmax(gap))], scores


@fill_doc
class DynamicFNC(BaseEstimator):
    """Group dFNC states: sliding windows, exemplar L1 k-means, state metrics.

    Parameters
    ----------
    n_states : int or None, default=None
        Number of states; None chooses it on the exemplars over
        ``range(min_states, max_states + 1)`` with ``selection``.
    min_states, max_states : int, default=2, 10
    min_windows_per_state : int or None, default=20
        The state-count rule: when ``n_states`` is None, candidates stop at
        ``max(min_states + 1, n_windows // min_windows_per_state)`` (``n_windows``
        pooled over participants) if that is below ``max_states``, so that a
        small cohort is not split into more states than it has windows to
        estimate their L1 medians from (about this many windows per state).
        With 20, a cohort of 24 runs of 120 windows is not limited; 4 runs of
        40 windows are (8 states at most). None tries up to ``max_states``.
        The bound used is ``max_states_``.
    selection : {"elbow", "silhouette"}, default="elbow"
        How ``n_states=None`` is chosen on the pooled exemplars: ``"elbow"``
        takes the knee of the total L1 within-cluster distance (largest gap
        below the chord from the first to the last candidate); ``"silhouette"``
        the largest mean silhouette with the city-block metric. GIFT's
        ``icatb_optimal_clusters`` averages several criteria; msica offers
        these two explicitly.
    window : int, default=30
    sigma : float, default=3.0
    method : {"correlation", "graphical lasso"}, default="correlation"
        See :func:`sliding_window_fnc`.
    n_init : int, default=5
        k-means replicates on the exemplars (GIFT ``kmeans_num_replicates``).
    max_iter : int, default=150
    precomputed : bool, default=False
        ``X`` holds each participant's sliding-window FNC, shape
        (n_windows, n_pairs) (e.g. read back from ``desc-dfnc_timeseries.tsv``),
        instead of time courses; ``window``, ``sigma`` and ``method`` are then
        unused.
    %(random_state)s

    Attributes
    ----------
    dfnc_ : list of ndarray of shape (n_windows, n_pairs)
    exemplar_indices_ : list of ndarray
        Exemplar windows of each participant.
    n_states_ : int
    max_states_ : int or None
        Largest candidate number of states after the state-count rule (None
        when ``n_states`` is given).
    selection_scores_ : dict
        Score per candidate number of states (empty when ``n_states`` is given).
    cluster_centers_ : ndarray of shape (n_states, n_pairs)
        Final centroids (medians) after clustering all windows.
    state_matrices_ : ndarray of shape (n_states, n_networks, n_networks)
    states_ : list of ndarray of shape (n_windows,)
        0-based state of every window of each participant.
    inertia_ : float
    metrics_ : dict
        ``fraction`` (n_participants, n_states), ``mean_dwell``
        (n_participants, n_states), ``n_transitions`` (n_participants,),
        ``transition_matrix`` (n_participants, n_states, n_states).

    Notes
    -----
    As in GIFT's ``icatb_post_process_dfnc`` with ``kmeans_start='subject
    exemplars'``: each participant's exemplars are the windows at local maxima
    of the across-pair standard deviation; L1 k-means (``n_init`` replicates)
    clusters the pooled exemplars; its centroids start one L1 k-means run on all
    windows of all participants.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tcs = [rng.standard_normal((80, 4)) for _ in range(3)]
    >>> est = DynamicFNC(n_states=2, window=20, random_state=0).fit(tcs)
    >>> est.cluster_centers_.shape, est.metrics_["fraction"].shape
    ((2, 6), (3, 2))
    """

    def __init__(
        self,
        n_states: int | None = None,
        *,
        min_states: int = 2,
        max_states: int = 10,
        min_windows_per_state: int | None = 20,
        selection: str = "elbow",
        window: int = 30,
        sigma: float = 3.0,
        method: str = "correlation",
        n_init: int = 5,
        max_iter: int = 150,
        precomputed: bool = False,
        random_state: Any = None,
    ) -> None:
        self.n_states = n_states
        self.min_states = min_states
        self.max_states = max_states
        self.min_windows_per_state = min_windows_per_state
        self.selection = selection
        self.window = window
        self.sigma = sigma
        self.method = method
        self.n_init = n_init
        self.max_iter = max_iter
        self.precomputed = precomputed
        self.random_state = random_state

    def _dfnc(self, X: Any) -> list[np.ndarray]:
        if isinstance(X, np.ndarray) and X.ndim == 3:
            X = list(X)  # views: a float64 array is not copied (see fit)
        if not isinstance(X, (list, tuple)) or len(X) == 0:
            raise TypeError(
                "DynamicFNC expects a non-empty list of (n_volumes, n_networks) arrays, one "
                f"per participant. Got {type(X).__name__}."
            )
        if self.precomputed:
            out = [check_array_2d(f"X[{i}]", x, min_rows=2) for i, x in enumerate(X)]
        else:
            out = [
                sliding_window_fnc(x, window=self.window, sigma=self.sigma, method=self.method)
                for x in X
            ]
        if len({d.shape[1] for d in out}) != 1:
            raise ValueError("All participants must have the same number of networks.")
        return out

    def fit(self, X: Any, y: Any = None) -> DynamicFNC:
        """Compute every participant's dFNC, cluster states and their metrics.

        Parameters
        ----------
        X : list of array-like of shape (n_volumes, n_networks)
        y : None
            Ignored.

        Returns
        -------
        self
        """
        check_in_allowed("selection", self.selection, ["elbow", "silhouette"])
        check_in_allowed("method", self.method, ["correlation", "graphical lasso"])
        if self.n_states is None and not 2 <= self.min_states < self.max_states:
            raise ValueError(
                "'min_states' and 'max_states' must satisfy 2 <= min_states < max_states. "
                f"Got {self.min_states}, {self.max_states}."
            )
        rule = self.min_windows_per_state
        if rule is not None and (isinstance(rule, bool) or not isinstance(rule, (int, np.integer))
                                 or rule < 1):
            raise ValueError(f"'min_windows_per_state' must be None or an int >= 1. Got {rule!r}.")
        rng = check_random_state(self.random_state)
        pooled, self.dfnc_ = self._pooled(X)
        self.exemplar_indices_ = [subject_exemplars(d) for d in self.dfnc_]
        exemplars = np.vstack([d[i] for d, i in zip(self.dfnc_, self.exemplar_indices_)])
        self.selection_scores_ = {}
        self.max_states_ = None
        if self.n_states is None:
            self.max_states_ = self.max_states
            if rule is not None:
                n_windows = sum(d.shape[0] for d in self.dfnc_)
                self.max_states_ = min(self.max_states, max(self.min_states + 1, n_windows // rule))
            ks = list(range(self.min_states, min(self.max_states_, exemplars.shape[0] - 1) + 1))
            if len(ks) < 2:
                raise ValueError(
                    f"Only {exemplars.shape[0]} exemplar windows: too few to choose the number "
                    "of states. Pass n_states or more participants."
                )
            seeds = rng.randint(np.iinfo(np.int32).max, size=len(ks))
            self.n_states_, self.selection_scores_ = _choose_k(
                exemplars, ks, self.selection, self.n_init, self.max_iter, seeds
            )
            LOGGER.info("DynamicFNC: %s chose %d states", self.selection, self.n_states_)
        else:
            self.n_states_ = int(self.n_states)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        start, _, _ = kmeans_l1(
            exemplars, self.n_states_, n_init=self.n_init, max_iter=self.max_iter,
            random_state=seed,
        )
        centers, labels, inertia = kmeans_l1(
            pooled, self.n_states_, init=start, max_iter=self.max_iter
        )
        self.cluster_centers_ = centers
        self.inertia_ = inertia
        self.state_matrices_ = vec_to_sym(centers)
        bounds = np.cumsum([0] + [d.shape[0] for d in self.dfnc_])
        self.states_ = [labels[bounds[i] : bounds[i + 1]] for i in range(len(self.dfnc_))]
        self.metrics_ = self._metrics(self.states_)
        return self

    def _pooled(self, X: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        """All windows as one ``(n_windows, n_pairs)`` array, and each participant's as its views.

        The windows are held once: a precomputed float64 array of shape
        ``(n_participants, n_windows, n_pairs)`` is pooled without a copy, a list
        is copied once into the pooled array.
        """
        windows = self._dfnc(X)
        bounds = np.cumsum([d.shape[0] for d in windows])[:-1]
        if (self.precomputed and isinstance(X, np.ndarray) and X.dtype == np.float64
                and X.flags.c_contiguous):
            pooled = X.reshape(-1, X.shape[2])
        else:
            pooled = np.vstack(windows)
        return pooled, np.split(pooled, bounds)

    def _metrics(self, states: list[np.ndarray]) -> dict[str, np.ndarray]:
        per = [state_metrics(s, self.n_states_) for s in states]
        return {key: np.array([p[key] for p in per]) for key in per[0]}

    def predict(self, X: Any) -> list[np.ndarray]:
        """State of every window of new participants (nearest L1 centroid).

        Parameters
        ----------
        X : list of array-like of shape (n_volumes, n_networks)

        Returns
        -------
        list of ndarray of shape (n_windows,)
        """
        check_is_fitted(self, "cluster_centers_")
        return [
            cdist(d, self.cluster_centers_, "cityblock").argmin(axis=1) for d in self._dfnc(X)
        ]

    def metrics(self, X: Any) -> dict[str, np.ndarray]:
        """State metrics of new participants (see ``metrics_``)."""
        return self._metrics(self.predict(X))
