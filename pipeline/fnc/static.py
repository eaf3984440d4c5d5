"""Static functional network connectivity (FNC), within and across scales.

``static_fnc`` reproduces GIFT's post-processing FNC (``icatb_corr``, zero
diagonal, ``icatb_r_to_z``). :class:`StaticFNC` stacks the networks of every
scale into one multi-scale matrix and offers nilearn's
:class:`~nilearn.connectome.ConnectivityMeasure` for partial correlation and
Ledoit-Wolf shrinkage. The measures are the entries of :data:`FNC_MEASURES`:
adding one is one :class:`FNCMeasure` entry and its ``compute`` function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from pipeline._docs import fill_doc
from pipeline._validation import check_array_2d, check_in_allowed, check_type
from pipeline.fnc.names import network_labels

__all__ = ["DEFAULT_FNC_MEASURE", "FNC_MEASURES", "FNCMeasure", "StaticFNC", "fisher_z",
           "static_fnc"]

#: GIFT's ``icatb_r_to_z`` adds this to both log arguments (finite z at |r| = 1).
GIFT_Z_EPS = 1e-8


def fisher_z(r: Any) -> np.ndarray:
    """Fisher z-transform as GIFT's ``icatb_r_to_z``.

    ``z = 0.5 * (log(1e-8 + 1 + r) - log(1e-8 + 1 - r))``: ``arctanh(r)`` up to
    ~1e-8, finite at ``|r| = 1``.

    Parameters
    ----------
    r : array-like
        Correlations in [-1, 1].

    Returns
    -------
    ndarray
        Same shape as ``r``.

    Examples
    --------
    >>> round(float(fisher_z(0.5)), 6)
    0.549306
    """
    r = np.asarray(r, dtype=np.float64)
    return 0.5 * (np.log(GIFT_Z_EPS + 1.0 + r) - np.log(GIFT_Z_EPS + 1.0 - r))


def _pearson(x: np.ndarray) -> np.ndarray:
    """``icatb_corr``: centre, scale to unit norm, cross-product."""
    xc = x - x.mean(axis=0)
    norms = np.sqrt(np.sum(xc**2, axis=0))
    if np.any(norms == 0):
        bad = np.flatnonzero(norms == 0).tolist()
        raise ValueError(
            f"'timecourses' columns {bad} are constant; their correlation is undefined. "
            "Remove flat networks before computing FNC."
        )
    xn = xc / norms
    return xn.T @ xn


@fill_doc
def static_fnc(timecourses: Any) -> np.ndarray:
    """Static FNC: Fisher-z Pearson correlations with a zero diagonal (GIFT).

    Parameters
    ----------
    %(timecourses)s Usually the output of
        :func:`pipeline.fnc.timecourse.postprocess`.

    Returns
    -------
    ndarray of shape (n_networks, n_networks)
        Symmetric, zero diagonal.

    Raises
    ------
    ValueError
        For NaNs, fewer than 3 volumes or 2 networks, or a constant network.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> static_fnc(rng.standard_normal((50, 3))).shape
    (3, 3)
    """
    tcs = check_array_2d("timecourses", timecourses, min_rows=3, min_cols=2)
    corr = _pearson(tcs)
    np.fill_diagonal(corr, 0.0)
    return fisher_z(corr)


def _static_fnc_many(stacked: list[np.ndarray], chunk: int = 64) -> np.ndarray:
    """:func:`static_fnc` of many participants, batched when run lengths agree."""
    if len({x.shape for x in stacked}) != 1:
        return np.stack([static_fnc(x) for x in stacked])
    out = np.empty((len(stacked), stacked[0].shape[1], stacked[0].shape[1]))
    diag = np.arange(out.shape[1])
    for start in range(0, len(stacked), chunk):
        block = np.stack(stacked[start : start + chunk])
        block = block - block.mean(axis=1, keepdims=True)
        norms = np.sqrt(np.sum(block**2, axis=1, keepdims=True))
        if np.any(norms == 0):
            for x in stacked[start : start + chunk]:
                _pearson(x)  # raises with the offending columns
        block = block / norms
        corr = block.transpose(0, 2, 1) @ block  # batched BLAS (einsum here does not use BLAS)
        corr[:, diag, diag] = 0.0
        out[start : start + chunk] = fisher_z(corr)
    return out


def _nilearn_connectivity(runs: list[np.ndarray], kind: str, shrinkage: bool) -> np.ndarray:
    """nilearn's ``ConnectivityMeasure`` of ``kind``, zero diagonal, Fisher z."""
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance, LedoitWolf

    cov = LedoitWolf(store_precision=False) if shrinkage else EmpiricalCovariance()
    measure = ConnectivityMeasure(cov_estimator=cov, kind=kind, standardize=False)
    mats = measure.fit_transform(runs)
    idx = np.arange(mats.shape[1])
    mats[:, idx, idx] = 0.0
    return fisher_z(np.clip(mats, -1.0, 1.0))


def _correlation(runs: list[np.ndarray], shrinkage: bool) -> np.ndarray:
    """GIFT's exact FNC (:func:`static_fnc`), or nilearn's with Ledoit-Wolf shrinkage."""
    if not shrinkage:
        return _static_fnc_many(runs)
    return _nilearn_connectivity(runs, "correlation", shrinkage)


def _partial_correlation(runs: list[np.ndarray], shrinkage: bool) -> np.ndarray:
    """Partial correlation from nilearn's precision matrix."""
    return _nilearn_connectivity(runs, "partial correlation", shrinkage)


@dataclass(frozen=True)
class FNCMeasure:
    """One static-FNC measure: how to compute it and how a run describes it.

    Attributes
    ----------
    name : str
        The ``kind`` of :class:`StaticFNC`, and the value of ``msica --fnc-measure``.
    compute : callable
        ``compute(runs, shrinkage) -> ndarray of shape (n_runs, n_nodes, n_nodes)``:
        ``runs`` is a list of (n_volumes, n_nodes) arrays, ``shrinkage`` whether to
        estimate the covariance with Ledoit-Wolf shrinkage; the matrices are Fisher z
        with a zero diagonal.
    description : str
        What the measure is, for the JSON sidecars (``"Measure"``) and ``msica --help``.
    summary : str
        The phrase of the methods text (``"static FNC (<summary>)"``), citing works
        as ``@key``.
    references : mapping of str to str
        The works cited by ``@key`` in ``summary`` (key -> reference text).
    """

    name: str
    compute: Callable[[list[np.ndarray], bool], np.ndarray]
    description: str
    summary: str
    references: Mapping[str, str] = field(default_factory=dict)


#: Static-FNC measures by name (:class:`StaticFNC`'s ``kind``, ``msica --fnc-measure``).
FNC_MEASURES: dict[str, FNCMeasure] = {measure.name: measure for measure in (
    FNCMeasure(name="correlation", compute=_correlation,
               description="Pearson correlation, Fisher z (arctanh), zero diagonal",
               summary="Pearson, Fisher z"),
    FNCMeasure(name="partial correlation", compute=_partial_correlation,
               description="partial correlation (nilearn ConnectivityMeasure), Fisher z "
               "(arctanh), zero diagonal",
               summary="partial correlation, Fisher z"),
)}
#: The measure of :class:`StaticFNC` and of the participant level unless one is chosen:
#: GIFT's FNC.
DEFAULT_FNC_MEASURE = "correlation"


@fill_doc
class StaticFNC(TransformerMixin, BaseEstimator):
    """Within- and cross-scale static FNC of one or many participants.

    Parameters
    ----------
    kind : str, default="correlation"
        Connectivity measure before the Fisher z-transform, a key of
        :data:`FNC_MEASURES` ("correlation", "partial correlation").
    shrinkage : bool, default=False
        Estimate the covariance with Ledoit-Wolf shrinkage (through nilearn's
        ``ConnectivityMeasure``). Without shrinkage, ``"correlation"`` is
        GIFT's exact computation (:func:`static_fnc`).
    labels : mapping of scale -> sequence of str, optional
        Network labels per scale; ``N1..Nk`` when omitted.

    Attributes
    ----------
    scales_ : list
        Scales in the order of the stacked matrix (insertion order of the input).
    labels_ : list of str, length n_nodes
        Node names ``"s<scale>-<label>"``.
    scale_of_node_ : ndarray of shape (n_nodes,)
        Scale of each node.
    n_nodes_ : int

    Notes
    -----
    The input of ``fit``/``transform`` is one participant as a dict
    ``{scale: (n_volumes, n_networks)}`` or a list of such dicts. Networks
    of all scales are stacked, so the output block ``[s_a, s_b]`` is the
    cross-scale FNC of scales ``a`` and ``b``. The diagonal is 0 and values
    are Fisher z (GIFT's ``icatb_r_to_z``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tcs = {4: rng.standard_normal((60, 4)), 10: rng.standard_normal((60, 10))}
    >>> est = StaticFNC().fit(tcs)
    >>> est.transform(tcs).shape, est.labels_[4]
    ((14, 14), 's10-N1')
    """

    def __init__(
        self,
        kind: str = DEFAULT_FNC_MEASURE,
        shrinkage: bool = False,
        labels: Mapping[Any, Sequence[str]] | None = None,
    ) -> None:
        self.kind = kind
        self.shrinkage = shrinkage
        self.labels = labels

    @staticmethod
    def _as_list(X: Any) -> tuple[list[Mapping[Any, Any]], bool]:
        if isinstance(X, Mapping):
            return [X], True
        if isinstance(X, (list, tuple)) and X and all(isinstance(x, Mapping) for x in X):
            return list(X), False
        raise TypeError(
            "StaticFNC expects a dict {scale: (n_volumes, n_networks) array} or a non-empty "
            f"list of such dicts. Got {type(X).__name__}."
        )

    def fit(self, X: Any, y: Any = None) -> StaticFNC:
        """Check options and record scales and node labels from ``X``.

        Parameters
        ----------
        X : dict or list of dict
            ``{scale: ndarray of shape (n_volumes, n_networks)}`` per participant.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        check_in_allowed("kind", self.kind, list(FNC_MEASURES))
        check_type("shrinkage", self.shrinkage, (bool, np.bool_))
        subjects, _ = self._as_list(X)
        first = subjects[0]
        self.scales_ = list(first.keys())
        names: list[str] = []
        scale_of_node: list[Any] = []
        for scale in self.scales_:
            arr = check_array_2d(f"timecourses[{scale!r}]", first[scale], min_rows=3)
            given = None if self.labels is None else self.labels.get(scale)
            names += network_labels(scale, arr.shape[1], given)
            scale_of_node += [scale] * arr.shape[1]
        self.labels_ = names
        self.scale_of_node_ = np.asarray(scale_of_node)
        self.n_nodes_ = len(names)
        return self

    def _stack(self, subject: Mapping[Any, Any], index: int) -> np.ndarray:
        if list(subject.keys()) != self.scales_:
            raise ValueError(
                f"Participant {index} has scales {list(subject.keys())}; the fitted scales are "
                f"{self.scales_}. Pass every scale, in the same order."
            )
        arrays = [
            check_array_2d(f"timecourses[{s!r}]", subject[s], min_rows=3) for s in self.scales_
        ]
        n_vols = {a.shape[0] for a in arrays}
        if len(n_vols) != 1:
            raise ValueError(
                f"All scales of participant {index} must have the same number of volumes. "
                f"Got {sorted(n_vols)}."
            )
        stacked = np.hstack(arrays)
        if stacked.shape[1] != self.n_nodes_:
            raise ValueError(
                f"Participant {index} has {stacked.shape[1]} networks; {self.n_nodes_} were fitted."
            )
        return stacked

    def transform(self, X: Any) -> np.ndarray:
        """Multi-scale FNC matrices.

        Parameters
        ----------
        X : dict or list of dict

        Returns
        -------
        ndarray of shape (n_nodes, n_nodes) for a dict, or (n_participants, n_nodes, n_nodes)
        """
        check_is_fitted(self, "labels_")
        subjects, single = self._as_list(X)
        stacked = [self._stack(s, i) for i, s in enumerate(subjects)]
        out = FNC_MEASURES[self.kind].compute(stacked, bool(self.shrinkage))
        return out[0] if single else out
