"""Match components to references by absolute spatial correlation (Hungarian).

ICA recovers sources only up to order, sign and scale. Comparing an estimate
with a reference therefore needs (1) a correlation that ignores sign and scale
and (2) an assignment that ignores order. :func:`match_components` does both:
it builds the |Pearson r| matrix between every estimated and every reference
map and solves the linear assignment problem on it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline._validation import check_array_2d

__all__ = ["abs_correlation", "match_components"]


def abs_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute Pearson correlation between the rows of ``a`` and the rows of ``b``.

    Parameters
    ----------
    a : ndarray of shape (n_a, n_voxels)
    b : ndarray of shape (n_b, n_voxels)

    Returns
    -------
    ndarray of shape (n_a, n_b)
        ``|r|`` in ``[0, 1]``; a constant row gives 0 against everything.

    Raises
    ------
    ValueError
        If the two inputs do not have the same number of columns.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    >>> abs_correlation(x, -x).round(2)
    array([[1. , 0.5],
           [0.5, 1. ]])
    """
    a = check_array_2d("a", a)
    b = check_array_2d("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"'a' and 'b' must have the same number of columns (voxels). "
            f"Got {a.shape[1]} and {b.shape[1]}; mask both with the same mask."
        )
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    na[na == 0] = np.inf
    nb[nb == 0] = np.inf
    return np.abs((a / na) @ (b / nb).T)


def match_components(
    estimated: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of estimated to reference maps by maximal total |r|.

    Parameters
    ----------
    estimated : ndarray of shape (n_estimated, n_voxels)
        Estimated spatial maps (any sign, scale and order).
    reference : ndarray of shape (n_reference, n_voxels)
        Reference maps (ground truth or a template).

    Returns
    -------
    row_idx : ndarray of shape (n_pairs,)
        Indices into ``estimated``.
    col_idx : ndarray of shape (n_pairs,)
        Indices into ``reference``; ``n_pairs = min(n_estimated, n_reference)``.
    abs_r : ndarray of shape (n_pairs,)
        ``|r|`` of each matched pair.

    Notes
    -----
    The assignment maximises the sum of ``|r|`` (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`). Pairs are returned sorted by
    ``col_idx`` when ``n_reference <= n_estimated``, else by ``row_idx``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> ref = rng.randn(3, 50)
    >>> rows, cols, r = match_components(-2 * ref[[2, 0, 1]], ref)
    >>> rows.tolist(), cols.tolist(), bool(np.allclose(r, 1))
    ([1, 2, 0], [0, 1, 2], True)
    """
    corr = abs_correlation(estimated, reference)
    row_idx, col_idx = linear_sum_assignment(corr, maximize=True)
    if corr.shape[1] <= corr.shape[0]:
        order = np.argsort(col_idx)
        row_idx, col_idx = row_idx[order], col_idx[order]
    return row_idx, col_idx, corr[row_idx, col_idx]
