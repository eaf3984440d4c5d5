"""The estimator methods shared by the linear ICAs (:class:`~pipeline.ica.fastica.TorchFastICA`,
:class:`~pipeline.ica.infomax.Infomax`).

Both learn ``components_`` (unmixing including the whitening or sphering),
``mixing_`` (its pseudo-inverse) and ``mean_``, and compute the sources of the
training data in ``_fit``; everything else follows from those.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["check_w_init", "function_form"]


class _UnmixingMixin:
    """``fit``, ``fit_transform``, ``transform``, ``inverse_transform`` from ``_fit(X) -> sources``.

    A mixin, not an estimator: put it first among the bases of a
    ``TransformerMixin, BaseEstimator`` subclass that defines ``_fit``.
    """

    def fit(self, X, y=None):
        """Estimate the unmixing matrix.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; in spatial ICA, voxels x reduced components.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit and return the sources, of shape (n_samples, n_components)."""
        return self._fit(X)

    def transform(self, X):
        """Sources of ``X``, shape (n_samples, n_components)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return (X - self.mean_) @ self.components_.T

    def inverse_transform(self, X):
        """Map sources back to the data space, shape (n_samples, n_features)."""
        check_is_fitted(self)
        return np.asarray(X, dtype=np.float64) @ self.mixing_.T + self.mean_


def function_form(estimator: _UnmixingMixin, X: Any, return_n_iter: bool):
    """Fit ``estimator`` on ``X``; return what the function forms (``fastica``, ``infomax``) return.

    Parameters
    ----------
    estimator : TorchFastICA or Infomax
        Unfitted.
    X : array-like of shape (n_samples, n_features)
    return_n_iter : bool
        Also return the number of iterations.

    Returns
    -------
    tuple
        ``(components_, sources)``, and ``n_iter_`` last when ``return_n_iter``.
    """
    sources = estimator._fit(X)
    if return_n_iter:
        return estimator.components_, sources, estimator.n_iter_
    return estimator.components_, sources


def check_w_init(w_init: Any, size: int, dim: str) -> np.ndarray:
    """Return the initial unmixing ``w_init`` as float64, checked to be ``size x size``.

    Parameters
    ----------
    w_init : array-like
        The estimator's ``w_init`` parameter (not ``None``).
    size : int
        Number of rows and columns it must have.
    dim : str
        What ``size`` counts, for the message (``"n_components"``, ``"n_features"``).

    Returns
    -------
    ndarray of shape (size, size)

    Raises
    ------
    ValueError
        If the shape is not ``(size, size)``.

    Examples
    --------
    >>> check_w_init([[1, 0], [0, 1]], 2, "n_features").dtype
    dtype('float64')
    """
    w_init = np.asarray(w_init, dtype=np.float64)
    if w_init.shape != (size, size):
        raise ValueError(
            f"'w_init' must have shape ({dim}, {dim})=({size}, {size}). Got {w_init.shape}."
        )
    return w_init
