"""Connectivity features beyond Pearson correlation, learned inside the folds where they learn.

Every participant's time series are reduced once to a Ledoit-Wolf shrinkage
covariance of the z-scored series (:func:`participant_covariances`); the
classifier's feature columns are these matrices, vectorised
(:func:`covariances_to_vectors`). Each connectivity *kind* is then a
transformer on those columns (:class:`ConnectivityFeatures`), so a kind that
learns from data (the tangent space learns its reference, the geometric mean
of the training participants' covariances) is refitted in every training fold
while the costly per-participant part is done only once.

The kinds follow :class:`nilearn.connectome.ConnectivityMeasure` applied to
z-scored series (its default ``LedoitWolf(store_precision=False)``
covariance estimator, the same matrix functions and the same vectorisation,
including the ``sqrt(2)`` scaling of a kept diagonal). They are listed in one
table, :data:`CONNECTIVITY_KINDS`, with what the command line, the methods
text and the references need.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.covariance import ledoit_wolf
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, resolve_device
from pipeline.exceptions import ConvergenceWarning, InputDataError
from pipeline.fnc.names import EDGE_SEP, edge_name

__all__ = [
    "CONNECTIVITY_KINDS",
    "ConnectivityFeatures",
    "ConnectivityKind",
    "covariance_table",
    "covariances_to_vectors",
    "geometric_mean",
    "n_nodes_of",
    "network_covariances",
    "node_labels_of",
    "participant_covariances",
    "vectors_to_covariances",
]


def _spectral(function, values, vectors):
    """``V f(w) V^T`` for a stack of symmetric eigendecompositions."""
    return (vectors * function(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def _check_spd(values, where):
    if np.any(~(values > 0)):
        raise InputDataError(
            f"{where} is not positive definite (smallest eigenvalue {float(np.min(values)):.3g}). "
            "Check for constant or duplicated time series (e.g. an all-zero ROI)."
        )


def n_nodes_of(n_columns: int) -> int:
    """Number of nodes ``p`` of vectorised covariances with ``p (p + 1) / 2`` columns.

    Raises
    ------
    ValueError
        If ``n_columns`` is not a triangular number.

    Examples
    --------
    >>> n_nodes_of(6)
    3
    """
    p = int(round((np.sqrt(8 * n_columns + 1) - 1) / 2))
    if p * (p + 1) // 2 != n_columns or p < 1:
        raise ValueError(
            f"{n_columns} columns are not the lower triangle (diagonal included) of a square "
            "matrix; pass the output of covariances_to_vectors."
        )
    return p


def covariances_to_vectors(covariances) -> np.ndarray:
    """Lower triangles (diagonal included, row by row) of a stack of symmetric matrices.

    Parameters
    ----------
    covariances : array-like of shape (n_participants, n_nodes, n_nodes)

    Returns
    -------
    ndarray of shape (n_participants, n_nodes * (n_nodes + 1) / 2)
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    rows, cols = np.tril_indices(covariances.shape[-1])
    return covariances[..., rows, cols]


def vectors_to_covariances(vectors) -> np.ndarray:
    """Inverse of :func:`covariances_to_vectors`: symmetric matrices from lower triangles.

    Returns
    -------
    ndarray of shape (n_participants, n_nodes, n_nodes)
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    p = n_nodes_of(vectors.shape[-1])
    rows, cols = np.tril_indices(p)
    out = np.zeros((*vectors.shape[:-1], p, p))
    out[..., rows, cols] = vectors
    out[..., cols, rows] = vectors
    return out


def _pair_names(labels, discard_diagonal=False) -> list[str]:
    rows, cols = np.tril_indices(len(labels), k=-1 if discard_diagonal else 0)
    return [edge_name(labels[j], labels[i]) for i, j in zip(rows, cols, strict=True)]


def covariance_table(covariances, node_labels: Sequence[str], participant_ids) -> pd.DataFrame:
    """Vectorised covariances as a table: one row per participant, columns ``"<a>__<b>"``.

    The columns are the lower triangle with the diagonal (``"<a>__<a>"``), in
    the order of :func:`covariances_to_vectors`; this is the input of
    :class:`ConnectivityFeatures` and of the classifiers' connectivity kinds.

    Returns
    -------
    pandas.DataFrame
        Index ``participant_id``.
    """
    vectors = covariances_to_vectors(covariances)
    return pd.DataFrame(vectors, columns=_pair_names(list(node_labels)),
                        index=pd.Index(list(participant_ids), name="participant_id"))


def node_labels_of(columns) -> list[str]:
    """Node labels of a :func:`covariance_table`, read from its diagonal columns.

    Raises
    ------
    ValueError
        If the columns are not those of a covariance table.
    """
    columns = [str(c) for c in columns]
    labels = [c.split(EDGE_SEP)[0] for c in columns
              if c.partition(EDGE_SEP)[0] == c.partition(EDGE_SEP)[2]]
    if _pair_names(labels) != columns:
        raise ValueError("the feature columns are not a covariance table (lower triangle with "
                         "the diagonal '<a>__<a>'); pass covariance_table(...) output with "
                         "connectivity kinds, or kinds=None for edge features.")
    return labels


def participant_covariances(series: Sequence[np.ndarray]) -> np.ndarray:
    """Ledoit-Wolf covariance of each participant's z-scored time series.

    The series are z-scored per column (sample SD, as nilearn's
    ``standardize="zscore_sample"``), so the covariances are on the scale of
    correlations and scanner gain differences between sites do not enter.

    Parameters
    ----------
    series : sequence of ndarray of shape (n_volumes_i, n_nodes)
        One array per participant (runs may differ in length).

    Returns
    -------
    ndarray of shape (n_participants, n_nodes, n_nodes)

    Raises
    ------
    InputDataError
        If a participant has a constant column (an empty ROI or network), or
        the participants differ in the number of nodes.
    """
    out = []
    for index, ts in enumerate(series):
        ts = np.asarray(ts, dtype=np.float64)
        if out and ts.shape[1] != out[0].shape[0]:
            raise InputDataError(
                f"time series {index} has {ts.shape[1]} nodes but the first has "
                f"{out[0].shape[0]}; use the same networks or atlas for every participant."
            )
        sd = ts.std(axis=0, ddof=1)
        if np.any(~(sd > 0)):
            raise InputDataError(
                f"time series {index} has {int(np.sum(~(sd > 0)))} constant column(s) "
                f"(first: {int(np.flatnonzero(~(sd > 0))[0])}); leave this participant out or "
                "fix the atlas (a region outside the brain mask?)."
            )
        out.append(ledoit_wolf((ts - ts.mean(axis=0)) / sd)[0])
    return np.stack(out)


def network_covariances(runs, node_labels: Sequence[str]) -> pd.DataFrame:
    """Covariance table of participants from their runs' network time courses.

    Each run's covariance (:func:`participant_covariances`) is computed on its
    own; the runs of one participant are averaged (their covariances are on the
    scale of correlations, so runs of different lengths weigh alike).

    Parameters
    ----------
    runs : sequence of (str, ndarray of shape (n_volumes, n_nodes))
        ``(participant_id, time courses)`` per run, every scale's networks side
        by side (multi-scale FNC).
    node_labels : sequence of str
        Node names (``s<scale>-<label>``).

    Returns
    -------
    pandas.DataFrame
        :func:`covariance_table` of the participants, sorted by participant_id.
    """
    covs = participant_covariances([tcs for _, tcs in runs])
    ids = sorted({pid for pid, _ in runs})
    owner = np.array([pid for pid, _ in runs])
    mean = np.stack([covs[owner == pid].mean(axis=0) for pid in ids])
    return covariance_table(mean, node_labels, ids)


#: Range of the Barzilai-Borwein step of :func:`geometric_mean`: in whitened coordinates the
#: Hessian of the Karcher cost is at least the identity (non-positive curvature), so steps
#: above 1 overshoot; the floor keeps a poor step estimate from stalling the descent.
BB_STEP_RANGE = (0.1, 1.0)


@fill_doc
def geometric_mean(covariances, *, max_iter: int = 30, tol: float = 1e-7, device="cpu"):
    """Riemannian (geometric) mean of SPD matrices, batched in torch.

    Riemannian gradient descent from the arithmetic mean, as nilearn's
    ``_geometric_mean`` (Fletcher & Joshi), with the same stopping rule
    (``||mean log|| / n_nodes**2 < tol``, checked at the current mean before
    stepping on), but with Barzilai-Borwein step sizes (Barzilai & Borwein
    1988; the "BB2" step ``<s, y> / <y, y>`` of the last move ``s`` and the
    change ``y`` of the gradient in whitened coordinates, in
    :data:`BB_STEP_RANGE`, halved when the gradient norm grows) in place of
    nilearn's fixed unit step: on 300 ABIDE participants x 200 ROIs it stops
    after 5 iterations instead of 8. The per-matrix work is done as stacked
    eigendecompositions in float32 (float64 from the iteration where float32's
    precision stops the gradient norm from decreasing before ``tol``) and the
    mean of the matrix logarithms as one matrix product per iteration. The
    result agrees with nilearn's to about 1e-5, far below what changes a
    classifier.

    Parameters
    ----------
    covariances : ndarray of shape (n_matrices, n_nodes, n_nodes)
    max_iter : int, default=30
    tol : float, default=1e-7
    %(device)s

    Returns
    -------
    mean : ndarray of shape (n_nodes, n_nodes)
        float64.
    n_iter : int
        Iterations run (gradient evaluations).

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` is reached before ``tol``.
    """
    import torch

    covs = np.asarray(covariances, dtype=np.float64)
    n, p = covs.shape[0], covs.shape[-1]
    device = resolve_device(device)

    def spectral(function, values, vectors):
        return (vectors * function(values)[..., None, :]) @ vectors.transpose(-1, -2)

    with torch.no_grad():
        stack = torch.as_tensor(covs, dtype=torch.float32, device=device)
        gmean = stack.mean(dim=0)
        step, norm, previous = 1.0, np.inf, None
        n_iter = 0
        for n_iter in range(1, max_iter + 1):
            values, vectors = torch.linalg.eigh(gmean)
            inv_sqrt = spectral(torch.rsqrt, values, vectors)
            sqrt = spectral(torch.sqrt, values, vectors)
            wvals, wvecs = torch.linalg.eigh(inv_sqrt @ stack @ inv_sqrt)
            if n_iter == 1:
                _check_spd(wvals.cpu().numpy(), "a participant's covariance")
            # mean of V log(w) V^T over the stack as one matrix product (p x n*p x p): the
            # negative Riemannian gradient at gmean, in whitened coordinates
            left = (wvecs * torch.log(wvals)[:, None, :]).transpose(0, 1).reshape(p, n * p)
            logs_mean = left @ wvecs.transpose(0, 1).reshape(p, n * p).T / n
            logs_mean = (logs_mean + logs_mean.T) / 2
            norm = float(torch.linalg.norm(logs_mean))
            if norm / p**2 < tol:
                break
            if previous is not None:
                last_logs, last_step, last_norm = previous
                if norm > last_norm and stack.dtype == torch.float32:
                    # float32's precision reached before tol (small matrices): go on in float64
                    stack, gmean, previous = stack.double(), gmean.double(), None
                    continue
                move = last_step * last_logs
                change = last_logs - logs_mean
                curvature = float((move * change).sum())
                if norm > last_norm:
                    step = last_step / 2.0
                elif curvature > 0:
                    step = float(np.clip(curvature / float((change * change).sum()),
                                         *BB_STEP_RANGE))
            lvals, lvecs = torch.linalg.eigh(logs_mean)
            gmean = sqrt @ spectral(torch.exp, lvals * step, lvecs) @ sqrt
            previous = (logs_mean, step, norm)
        mean = gmean.double().cpu().numpy()
    if norm / p**2 >= tol:
        warnings.warn(f"The geometric mean did not reach tol={tol} in max_iter={max_iter} "
                      "iterations; increase max_iter.", ConvergenceWarning, stacklevel=2)
    return (mean + mean.T) / 2, n_iter


def _lower(matrices, discard_diagonal: bool) -> np.ndarray:
    """nilearn's ``sym_matrix_to_vec``: lower triangle, a kept diagonal divided by sqrt(2)."""
    p = matrices.shape[-1]
    rows, cols = np.tril_indices(p, k=-1 if discard_diagonal else 0)
    out = matrices[..., rows, cols]
    if not discard_diagonal:
        out = out / np.where(rows == cols, np.sqrt(2.0), 1.0)
    return out


def _correlation(covs, state):
    sd = np.sqrt(np.einsum("nii->ni", covs))
    corr = covs / sd[:, :, None] / sd[:, None, :]
    corr[:, np.arange(covs.shape[-1]), np.arange(covs.shape[-1])] = 1.0
    return corr


def _partial_correlation(covs, state):
    precision = np.linalg.inv(covs)
    d = np.sqrt(np.einsum("nii->ni", precision))
    partial = -precision / d[:, :, None] / d[:, None, :]
    partial[:, np.arange(covs.shape[-1]), np.arange(covs.shape[-1])] = 1.0
    return partial


def _covariance(covs, state):
    return covs


def _tangent(covs, state):
    whitening = state["whitening"]
    values, vectors = np.linalg.eigh(whitening @ covs @ whitening)
    return _spectral(np.log, values, vectors)


def _fit_tangent(covs, *, max_iter, tol, device):
    mean, n_iter = geometric_mean(covs, max_iter=max_iter, tol=tol, device=device)
    values, vectors = np.linalg.eigh(mean)
    return {"mean": mean, "whitening": _spectral(lambda w: 1.0 / np.sqrt(w), values, vectors),
            "n_iter": n_iter}


@dataclass(frozen=True)
class ConnectivityKind:
    """One connectivity kind: how to compute it and how to describe it.

    Attributes
    ----------
    name : str
        Name on the command line and in sidecars.
    transform : callable
        ``(covariances (n, p, p), state) -> matrices (n, p, p)``.
    discard_diagonal : bool
        Whether the diagonal is left out of the features (it is constant).
    fit : callable or None
        ``(training covariances) -> state`` for kinds that learn from data.
    description : str
        Methods text.
    references : mapping of str to str
        The works behind the kind (key -> reference text), cited after ``description``
        in the methods text.
    """

    name: str
    transform: Callable
    discard_diagonal: bool
    fit: Callable | None = None
    description: str = ""
    references: Mapping[str, str] = field(default_factory=dict)

    @property
    def learns(self) -> bool:
        """Whether the kind learns from the training participants (refitted per fold)."""
        return self.fit is not None


_LEDOIT_WOLF = {"ledoit2004": "Ledoit O, Wolf M. A well-conditioned estimator for "
                             "large-dimensional covariance matrices. J Multivar Anal. "
                             "2004;88(2):365-411."}

#: The connectivity kinds, by name (the registry: one entry and one function per kind).
CONNECTIVITY_KINDS: dict[str, ConnectivityKind] = {
    kind.name: kind for kind in (
        ConnectivityKind(
            "correlation", _correlation, True,
            description="correlation of the Ledoit-Wolf covariance of the z-scored time series",
            references=_LEDOIT_WOLF),
        ConnectivityKind(
            "partial_correlation", _partial_correlation, True,
            description="partial correlation from the inverse of the Ledoit-Wolf covariance",
            references={**_LEDOIT_WOLF, "varoquaux2013": (
                "Varoquaux G, Craddock RC. Learning and comparing functional connectomes "
                "across subjects. NeuroImage. 2013;80:405-415.")}),
        ConnectivityKind(
            "covariance", _covariance, False,
            description="Ledoit-Wolf shrinkage covariance of the z-scored time series",
            references=_LEDOIT_WOLF),
        ConnectivityKind(
            "tangent", _tangent, False, fit=_fit_tangent,
            description="tangent-space embedding of the Ledoit-Wolf covariances at their "
                        "geometric mean over the training participants of each fold",
            references={**_LEDOIT_WOLF, "varoquaux2010": (
                "Varoquaux G, Baronnet F, Kleinschmidt A, Fillard P, Thirion B. Detection of "
                "brain functional-connectivity difference in post-stroke patients using "
                "group-level covariance modeling. MICCAI 2010, LNCS 6361:200-208."),
                "dadi2019": (
                "Dadi K, Rahim M, Abraham A, et al. Benchmarking functional connectome-based "
                "predictive models for resting-state fMRI. NeuroImage. 2019;192:115-134.")}),
    )
}


@fill_doc
class ConnectivityFeatures(TransformerMixin, BaseEstimator):
    """One connectivity kind computed from vectorised per-participant covariances.

    ``X`` holds one row per participant: the lower triangle (diagonal included)
    of its covariance (:func:`covariances_to_vectors` of
    :func:`participant_covariances`). ``fit`` learns what the kind learns from
    the rows it is given (for ``"tangent"``, the geometric mean and its
    whitening); ``transform`` returns the kind's matrices vectorised as
    nilearn's ``ConnectivityMeasure(vectorize=True)`` does, the constant
    diagonal of correlations left out.

    Parameters
    ----------
    kind : {"correlation", "partial_correlation", "covariance", "tangent"}, default="tangent"
    max_iter : int, default=30
        Geometric-mean iterations (tangent).
    tol : float, default=1e-7
        Geometric-mean tolerance (tangent), as in nilearn.
    %(device)s
        Used by the geometric mean (tangent).

    Attributes
    ----------
    mean_ : ndarray of shape (n_nodes, n_nodes) or None
        Reference of the tangent space (geometric mean of the training rows).
    whitening_ : ndarray of shape (n_nodes, n_nodes) or None
        ``mean_ ** -1/2``.
    n_iter_ : int
        Geometric-mean iterations run (0 for kinds that learn nothing).
    n_nodes_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> covs = participant_covariances([rng.randn(50, 4) for _ in range(6)])
    >>> ConnectivityFeatures(kind="correlation").fit_transform(
    ...     covariances_to_vectors(covs)).shape
    (6, 6)
    """

    def __init__(self, kind="tangent", max_iter=30, tol=1e-7, device="auto"):
        self.kind = kind
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, X, y=None):
        """Learn the kind's reference from these (training) rows."""
        X = validate_data(self, X, dtype=np.float64)
        check_in_allowed("kind", self.kind, CONNECTIVITY_KINDS)
        self.n_nodes_ = n_nodes_of(X.shape[1])
        spec = CONNECTIVITY_KINDS[self.kind]
        state = (spec.fit(vectors_to_covariances(X), max_iter=self.max_iter, tol=self.tol,
                          device=self.device)
                 if spec.learns else {})
        self.mean_ = state.get("mean")
        self.whitening_ = state.get("whitening")
        self.n_iter_ = int(state.get("n_iter", 0))
        return self

    def transform(self, X):
        """The kind's vectorised matrices, one row per participant."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        spec = CONNECTIVITY_KINDS[self.kind]
        matrices = spec.transform(vectors_to_covariances(X), {"whitening": self.whitening_})
        return _lower(matrices, spec.discard_diagonal)

    def get_feature_names_out(self, input_features=None):
        """Edge names ``"<node_i>__<node_j>"`` (``input_features``: the node labels)."""
        check_is_fitted(self)
        labels = (list(input_features) if input_features is not None
                  else [f"n{i}" for i in range(self.n_nodes_)])
        if len(labels) != self.n_nodes_:
            raise ValueError(f"'input_features' must hold the {self.n_nodes_} node labels. "
                             f"Got {len(labels)}.")
        return np.asarray(_pair_names(labels, CONNECTIVITY_KINDS[self.kind].discard_diagonal),
                          dtype=object)
