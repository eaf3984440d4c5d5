"""Confound regression fitted on training folds only (age, sex, site, motion).

Confounds travel as the first ``n_confounds`` columns of the design matrix, so
a :class:`ConfoundRegressor` can sit inside a scikit-learn pipeline and be refit
in every cross-validation fold: the regression weights are learned from the
training participants and applied unchanged to the test participants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._validation import check_int
from pipeline.exceptions import InputDataError

__all__ = ["ConfoundRegressor", "encode_confounds"]


def encode_confounds(
    participants: pd.DataFrame,
    columns,
    *,
    categories: dict | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Numeric design of confound columns (categorical ones one-hot encoded).

    Parameters
    ----------
    participants : pandas.DataFrame
        Indexed by participant_id (rows in the order wanted).
    columns : sequence of str
        Confound columns, e.g. ``("age", "sex", "site", "mean_fd")``. Numeric
        columns are kept as they are; other columns are one-hot encoded with one
        indicator per category.
    categories : dict or None, default=None
        ``{column: [categories]}`` learned earlier (e.g. at training time); a
        category not in the list gets all-zero indicators (no adjustment). When
        None, categories are read from ``participants``.

    Returns
    -------
    design : pandas.DataFrame of shape (n_participants, n_encoded)
    categories : dict
        Categories used for each categorical column (store to encode new data).

    Raises
    ------
    ValueError
        If a column is missing.
    InputDataError
        If a confound value is missing (NaN) for some participant.
    """
    categories = {} if categories is None else dict(categories)
    blocks = []
    for column in columns:
        if column not in participants.columns:
            raise ValueError(
                f"confound {column!r} is not a column of the participants table "
                f"{list(participants.columns)}. Add it or remove it from 'confounds'."
            )
        values = participants[column]
        if values.isna().any():
            bad = values.index[values.isna()][:5].tolist()
            raise InputDataError(
                f"confound {column!r} is missing for {int(values.isna().sum())} participants "
                f"(first: {bad}). Fill it in, drop those participants, or drop the confound."
            )
        numeric = column not in categories and pd.api.types.is_numeric_dtype(values) \
            and not pd.api.types.is_bool_dtype(values)
        if numeric:
            blocks.append(values.astype(float).rename(column).to_frame())
            continue
        labels = values.astype(str)
        cats = categories.setdefault(column, sorted(labels.unique()))
        onehot = pd.DataFrame({f"{column}[{c}]": (labels == c).astype(float) for c in cats},
                              index=participants.index)
        blocks.append(onehot)
    design = pd.concat(blocks, axis=1) if blocks else pd.DataFrame(index=participants.index)
    return design, categories


class ConfoundRegressor(TransformerMixin, BaseEstimator):
    """Regress confounds out of features with weights learned on the training rows.

    The first ``n_confounds`` columns of ``X`` are confounds (numeric, e.g. from
    :func:`encode_confounds`); the other columns are features. ``fit`` solves the
    least-squares regression of every feature on ``[1, confounds]`` (minimum-norm
    solution, so redundant one-hot columns are harmless); ``transform`` returns
    the features minus the confound part (the intercept is kept, so feature means
    are preserved) and drops the confound columns.

    Parameters
    ----------
    n_confounds : int, default=0
        Number of leading confound columns; 0 passes the features through.

    Attributes
    ----------
    coef_ : ndarray of shape (n_confounds, n_features_out)
        Confound weights of each feature.
    confound_mean_ : ndarray of shape (n_confounds,)
        Training means of the confounds (the reference the features are adjusted to).
    n_features_in_ : int

    Notes
    -----
    A site that is absent from the training rows has an all-zero indicator
    there, gets weight 0, and so is not adjusted at test time: with
    leave-one-site-out splits site regression only removes differences among
    the training sites.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> age = rng.randn(50, 1); feats = 3 * age + 0.1 * rng.randn(50, 2)
    >>> out = ConfoundRegressor(n_confounds=1).fit_transform(np.hstack([age, feats]))
    >>> bool(abs(np.corrcoef(age[:, 0], out[:, 0])[0, 1]) < 0.1)
    True
    """

    def __init__(self, n_confounds=0):
        self.n_confounds = n_confounds

    def _split(self, X):
        return X[:, : self.n_confounds], X[:, self.n_confounds:]

    def fit(self, X, y=None):
        """Learn the confound weights of every feature on these (training) rows."""
        X = validate_data(self, X, dtype=np.float64)
        check_int("n_confounds", self.n_confounds, 0, X.shape[1] - 1, bound="n_columns - 1",
                  fix="At least one feature column must remain.")
        C, F = self._split(X)
        self.confound_mean_ = C.mean(axis=0)
        if self.n_confounds == 0:
            self.coef_ = np.zeros((0, F.shape[1]))
            return self
        Cc = C - self.confound_mean_
        self.coef_ = np.linalg.lstsq(Cc, F - F.mean(axis=0), rcond=None)[0]
        return self

    def transform(self, X):
        """Features minus their confound part (confound columns dropped)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        C, F = self._split(X)
        if self.n_confounds == 0:
            return F.copy()
        return F - (C - self.confound_mean_) @ self.coef_

    def get_feature_names_out(self, input_features=None):
        """Names of the feature columns (the confound columns are dropped)."""
        check_is_fitted(self)
        if input_features is None:
            input_features = getattr(self, "feature_names_in_",
                                     [f"x{i}" for i in range(self.n_features_in_)])
        return np.asarray(input_features, dtype=object)[self.n_confounds:]
