"""Everything learned before the model, in one site-aware transformer refitted per fold.

The design matrix of msica's classifiers has three blocks of columns::

    [protected covariates (n_protect) | confounds (n_confounds) | features]

:class:`FoldPreprocessor` turns it into the standardized features the model
sees: connectivity kind (:mod:`pipeline.classify.connectivity`; the features
as given when ``kind`` is None), site harmonization with the protected
covariates kept (:mod:`pipeline.classify.harmonize`), confound regression
(:class:`~pipeline.classify.confounds.ConfoundRegressor`) and scaling. Each
step is fitted on the rows given to ``fit`` only; ``transform`` needs the
sites of its rows for harmonization and nothing else (no labels).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed
from pipeline.classify.confounds import ConfoundRegressor
from pipeline.classify.connectivity import CONNECTIVITY_KINDS, ConnectivityFeatures
from pipeline.classify.harmonize import HARMONIZERS, ComBat

__all__ = ["FoldPreprocessor"]


@fill_doc
class FoldPreprocessor(TransformerMixin, BaseEstimator):
    """Connectivity kind, harmonization, confound regression and scaling, fitted on training rows.

    Parameters
    ----------
    kind : str or None, default=None
        Connectivity kind computed from vectorised covariances in the feature
        block (see :data:`~pipeline.classify.connectivity.CONNECTIVITY_KINDS`);
        None uses the feature columns as they are.
    harmonize : {"none", "combat"}, default="none"
    n_protect : int, default=0
        Leading columns: covariates ComBat keeps; dropped from the output, and
        unused without harmonization.
    n_confounds : int, default=0
        Next columns: confounds regressed out (dropped from the output).
    %(device)s

    Attributes
    ----------
    connectivity_ : ConnectivityFeatures or None
    harmonizer_ : ComBat or None
    confounds_ : ConfoundRegressor
    scaler_ : StandardScaler
    n_features_out_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).randn(40, 5)
    >>> FoldPreprocessor(n_confounds=1).fit_transform(X).shape
    (40, 4)
    """

    def __init__(self, kind=None, harmonize="none", n_protect=0, n_confounds=0, device="auto"):
        self.kind = kind
        self.harmonize = harmonize
        self.n_protect = n_protect
        self.n_confounds = n_confounds
        self.device = device

    def _blocks(self, X):
        a, b = self.n_protect, self.n_protect + self.n_confounds
        return X[:, :a], X[:, a:b], X[:, b:]

    def fit(self, X, y=None, sites=None):
        """Fit every step on these (training) rows; ``sites`` for harmonization."""
        self._fit_transform(X, sites, fit=True)
        return self

    def fit_transform(self, X, y=None, sites=None):
        """Fit on ``X`` and return its preprocessed features."""
        return self._fit_transform(X, sites, fit=True)

    def transform(self, X, sites=None):
        """Preprocessed features of ``X`` (sites unseen in training are harmonized on their own)."""
        check_is_fitted(self)
        return self._fit_transform(X, sites, fit=False)

    def _fit_transform(self, X, sites, fit):
        X = validate_data(self, X, dtype=np.float64, reset=fit)
        if fit:
            for name in ("n_protect", "n_confounds"):
                value = getattr(self, name)
                if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
                        or value < 0:
                    raise ValueError(f"'{name}' must be a non-negative int. Got {value!r}.")
            if self.n_protect + self.n_confounds >= X.shape[1]:
                raise ValueError(
                    f"'n_protect' + 'n_confounds' ({self.n_protect + self.n_confounds}) must "
                    f"leave at least one feature column of the {X.shape[1]}.")
            check_in_allowed("harmonize", self.harmonize, HARMONIZERS)
            if self.kind is not None:
                check_in_allowed("kind", self.kind, CONNECTIVITY_KINDS)
        protect, confounds, features = self._blocks(X)
        if self.kind is not None:
            if fit:
                self.connectivity_ = ConnectivityFeatures(kind=self.kind, device=self.device)
                self.connectivity_.fit(features)
            features = self.connectivity_.transform(features)
        elif fit:
            self.connectivity_ = None
        if self.harmonize == "combat":
            stacked = np.hstack([protect, features])
            if fit:
                self.harmonizer_ = ComBat(n_covariates=self.n_protect).fit(stacked, sites=sites)
            features = self.harmonizer_.transform(stacked, sites=sites)
        elif fit:
            self.harmonizer_ = None
        stacked = np.hstack([confounds, features])
        if fit:
            self.confounds_ = ConfoundRegressor(n_confounds=self.n_confounds).fit(stacked)
        features = self.confounds_.transform(stacked)
        if fit:
            self.scaler_ = StandardScaler().fit(features)
            self.n_features_out_ = features.shape[1]
        return self.scaler_.transform(features)
