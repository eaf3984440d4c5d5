"""Automated feature selection: a vectorized univariate screen and stability selection.

The screen ranks features once per training fold; every candidate number of
features ``k`` is then a slice of that ranking, so choosing ``k`` by inner
cross-validation costs one ranking per fold instead of one per candidate.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._docs import fill_doc
from pipeline._validation import check_random_state, derive_seeds

__all__ = ["RankedSelector", "StabilitySelector", "anova_f_scores", "resolve_k"]


def anova_f_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-way ANOVA F statistic of every column of ``X`` against the classes ``y``.

    For two classes this is the squared two-sample t statistic (pooled variance).
    Computed in one pass with matrix products (no loop over features).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Class labels (any hashable values); at least two classes.

    Returns
    -------
    ndarray of shape (n_features,)
        F statistics; columns that are constant within every class get ``inf``
        when class means differ and ``0`` when they do not.

    Raises
    ------
    ValueError
        If ``y`` has fewer than two classes or as many classes as samples.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [0.2, 0.0], [1.0, 1.0], [1.2, 0.0]])
    >>> anova_f_scores(X, [0, 0, 1, 1]).round(1)
    array([50.,  0.])
    """
    X = np.asarray(X, dtype=np.float64)
    classes, codes = np.unique(np.asarray(y), return_inverse=True)
    n_samples, n_classes = X.shape[0], len(classes)
    if n_classes < 2 or n_classes >= n_samples:
        raise ValueError(
            "'y' must have at least 2 classes and more samples than classes for an F test. "
            f"Got {n_classes} class(es) for {n_samples} sample(s)."
        )
    onehot = np.zeros((n_samples, n_classes))
    onehot[np.arange(n_samples), codes] = 1.0
    counts = onehot.sum(axis=0)
    grand = X.mean(axis=0)
    centered = X - grand
    class_means = (onehot.T @ centered) / counts[:, None]
    ss_between = counts @ (class_means**2)
    ss_total = np.einsum("ij,ij->j", centered, centered)
    ss_within = np.maximum(ss_total - ss_between, 0.0)
    df_between, df_within = n_classes - 1, n_samples - n_classes
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (ss_between / df_between) / (ss_within / df_within)
    tiny = 1e-12 * np.maximum(ss_total, 1e-300)
    f = np.where(ss_within <= tiny, np.where(ss_between > tiny, np.inf, 0.0), f)
    return f


def resolve_k(k, n_features: int) -> int:
    """Number of features meant by ``k`` for ``n_features`` columns.

    Parameters
    ----------
    k : int, float in (0, 1] or "all"
        A count, a fraction of the features (rounded up), or every feature.
    n_features : int

    Returns
    -------
    int in [1, n_features]

    Raises
    ------
    ValueError
        If ``k`` is an int outside [1, n_features], a float outside (0, 1], or
        another value.
    """
    if isinstance(k, str) and k == "all":
        return n_features
    if isinstance(k, numbers.Integral) and not isinstance(k, bool):
        if not 1 <= k <= n_features:
            raise ValueError(
                f"'k' must be in [1, n_features={n_features}]. Got {k}. Lower k, pass a "
                "fraction in (0, 1] or 'all'."
            )
        return int(k)
    if isinstance(k, numbers.Real) and not isinstance(k, bool):
        if not 0 < k <= 1:
            raise ValueError(f"'k' as a fraction must be in (0, 1]. Got {k}.")
        return max(1, math.ceil(k * n_features))
    raise ValueError(f"'k' must be an int, a float in (0, 1] or 'all'. Got {k!r}.")


class RankedSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features with the largest ANOVA F statistic (ranked once).

    Like :class:`sklearn.feature_selection.SelectKBest` with ``f_classif``, but
    the full ranking is stored, so :meth:`top` gives any other ``k`` without
    refitting; msica's inner cross-validation uses this to try many ``k`` per fold.

    Parameters
    ----------
    k : int, float in (0, 1] or "all", default=0.1
        Number of features kept, or a fraction of them (rounded up).

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        F statistics.
    ranking_ : ndarray of shape (n_features_in_,)
        Column indices from best to worst (ties broken by column order).
    k_ : int
        Number of features kept.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(40, 6); y = np.repeat([0, 1], 20); X[y == 1, 3] += 2
    >>> RankedSelector(k=1).fit(X, y).get_support(indices=True)
    array([3])
    """

    def __init__(self, k=0.1):
        self.k = k

    def fit(self, X, y):
        """Rank the columns of ``X`` by their F statistic against ``y``."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.k_ = resolve_k(self.k, X.shape[1])
        self.scores_ = anova_f_scores(X, y)
        order_key = np.where(np.isnan(self.scores_), -np.inf, self.scores_)
        self.ranking_ = np.argsort(-order_key, kind="stable")
        return self

    def top(self, k) -> np.ndarray:
        """Column indices of the best ``k`` features (``k`` as in the constructor)."""
        check_is_fitted(self)
        return self.ranking_[: resolve_k(k, self.n_features_in_)]

    def _get_support_mask(self):
        check_is_fitted(self)
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.ranking_[: self.k_]] = True
        return mask


@fill_doc
class StabilitySelector(SelectorMixin, BaseEstimator):
    """Stability selection with L1-penalized logistic regression (Meinshausen & Bühlmann).

    Features are standardized, then an L1 logistic model is fitted on
    ``n_resamples`` random subsamples of ``sample_fraction`` of the participants
    (stratified by class); a feature is kept when it is non-zero in at least a
    ``threshold`` fraction of the fits.

    Parameters
    ----------
    C : float, default=0.1
        Inverse L1 penalty of each fit (smaller keeps fewer features).
    n_resamples : int, default=30
    sample_fraction : float in (0, 1), default=0.5
    threshold : float in (0, 1], default=0.6
        Minimal selection frequency.
    min_features : int, default=1
        When fewer than ``min_features`` features reach ``threshold``, the
        ``min_features`` most frequently selected are kept (as documented here,
        and visible in ``selection_frequency_``).
    prescreen : int or None, default=None
        Rank by F statistic first and run the L1 fits on the best ``prescreen``
        features only (fast on wide tables); the others get frequency 0.
    %(random_state)s

    Attributes
    ----------
    selection_frequency_ : ndarray of shape (n_features_in_,)
        Fraction of subsample fits in which each feature was non-zero.
    n_features_in_ : int

    References
    ----------
    .. [1] Meinshausen N, Bühlmann P (2010). Stability selection. J R Stat Soc B 72(4).
    """

    def __init__(self, C=0.1, n_resamples=30, sample_fraction=0.5, threshold=0.6,
                 min_features=1, prescreen=None, random_state=None):
        self.C = C
        self.n_resamples = n_resamples
        self.sample_fraction = sample_fraction
        self.threshold = threshold
        self.min_features = min_features
        self.prescreen = prescreen
        self.random_state = random_state

    def fit(self, X, y):
        """Count how often each feature is selected across subsamples."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        if not 0 < self.sample_fraction < 1:
            raise ValueError(f"'sample_fraction' must be in (0, 1). Got {self.sample_fraction}.")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"'threshold' must be in (0, 1]. Got {self.threshold}.")
        n_samples, n_features = X.shape
        columns = np.arange(n_features)
        if self.prescreen is not None and self.prescreen < n_features:
            columns = RankedSelector(k=int(self.prescreen)).fit(X, y).top(int(self.prescreen))
        Z = X[:, columns]
        std = Z.std(axis=0)
        Z = (Z - Z.mean(axis=0)) / np.where(std > 0, std, 1.0)
        classes, codes = np.unique(y, return_inverse=True)
        seeds = derive_seeds(self.random_state, self.n_resamples)
        counts = np.zeros(len(columns))
        for seed in seeds:
            rng = check_random_state(seed)
            rows = np.concatenate([
                rng.choice(np.flatnonzero(codes == c),
                           max(1, int(round(self.sample_fraction * np.sum(codes == c)))),
                           replace=False)
                for c in range(len(classes))
            ])
            if len(np.unique(codes[rows])) < 2:
                continue
            model = LogisticRegression(C=self.C, l1_ratio=1.0,
                                       solver="liblinear" if len(classes) == 2 else "saga",
                                       max_iter=200, tol=1e-3, random_state=int(seed))
            model.fit(Z[rows], codes[rows])
            counts += np.any(model.coef_ != 0, axis=0)
        freq = np.zeros(n_features)
        freq[columns] = counts / self.n_resamples
        self.selection_frequency_ = freq
        return self

    def _get_support_mask(self):
        check_is_fitted(self)
        mask = self.selection_frequency_ >= self.threshold
        n_min = min(int(self.min_features), self.n_features_in_)
        if mask.sum() < n_min:
            mask = np.zeros_like(mask)
            mask[np.argsort(-self.selection_frequency_, kind="stable")[:n_min]] = True
        return mask
