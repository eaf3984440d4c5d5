"""Spatial group ICA (GIFT style): subject PCA -> group PCA -> ICA.

What is kept for GICA back-projection (the names the back-reconstruction code
uses), for subject ``i`` with ``T_i`` volumes, ``p_i`` subject components and
``k`` group components:

- ``subject_whitening_[i]`` ``(p_i, T_i)`` and ``subject_dewhitening_[i]``
  ``(T_i, p_i)``: subject PCA (``reduced_i = W_i @ X_i``, ``X_i ~= F_i @ reduced_i``,
  ``X_i`` the preprocessed, spatially centred data);
- ``group_whitening_[i]`` ``(k, p_i)`` and ``group_dewhitening_[i]`` ``(p_i, k)``:
  subject ``i``'s blocks of the group PCA (``Z = sum_i Gw_i @ reduced_i``,
  ``reduced_i ~= G_i @ Z``);
- ``group_pca_components_`` ``(k, n_voxels)``: ``Z``, the whitened group PCA data;
- ``mixing_`` ``(k, k)``: ``Z ~= mixing_ @ components_`` (up to the map means);
- ``subject_mixing_[i]`` ``(T_i, k) = F_i @ G_i @ mixing_``: GICA time courses
  of subject ``i``, so that ``X_i ~= subject_mixing_[i] @ components_``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, check_int, derive_seeds
from pipeline.exceptions import ConvergenceWarning
from pipeline.ica._lazy import LazySequence
from pipeline.ica.icasso import ALGORITHMS, ICASSO, MODES, unmix
from pipeline.ica.pca import PREPROCESS_METHODS, group_pca, preprocess_subject, subject_pca

__all__ = ["GroupICA", "reduce_subjects"]


def _load_subject(subject: Any, index: int) -> np.ndarray:
    data = subject() if callable(subject) else subject
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(
            f"'subjects[{index}]' must be a 2-D array (n_volumes, n_voxels). Got shape {arr.shape}."
        )
    return arr


def _leading_rows(blocks: Sequence, k: int, i: int) -> np.ndarray:
    return blocks[i][:k]


def _leading_columns(blocks: Sequence, k: int, i: int) -> np.ndarray:
    return blocks[i][:, :k]


def _gica_timecourses(subject_dewhitening: Sequence, group_dewhitening: Sequence,
                      mixing: np.ndarray, i: int) -> np.ndarray:
    """GICA time courses of subject ``i``: ``F_i @ G_i @ mixing``."""
    return subject_dewhitening[i] @ group_dewhitening[i] @ mixing


def default_subject_components(n_components: int, n_volumes: int) -> int:
    """Default number of subject PCs: ``min(2 * n_components, n_volumes - 1)``.

    Examples
    --------
    >>> default_subject_components(20, 148)
    40
    """
    return int(min(2 * n_components, n_volumes - 1))


def reduce_subjects(
    subjects: Sequence[np.ndarray | Callable[[], np.ndarray]],
    n_components: int,
    *,
    n_subject_components: int | None = None,
    preprocess: str = "remove_mean",
    subject_reduction: bool = True,
    device: Any = "auto",
) -> dict:
    """Preprocess and reduce each subject, one at a time; validate the sizes.

    Parameters
    ----------
    subjects : sequence of ndarray of shape (n_volumes, n_voxels), or callables
        Masked subject data, or zero-argument loaders returning it. With
        ``subject_reduction=False`` each item is already reduced,
        ``(p_i, n_voxels)``.
    n_components : int
        Largest group model order that will be fitted.
    n_subject_components : int or None
        Subject PCs; ``None`` uses :func:`default_subject_components` per subject.
    preprocess : {"variance_norm", "remove_mean", "none"}
        See :func:`~pipeline.ica.pca.preprocess_subject`.
    subject_reduction : bool
        Run subject PCA (False: take the items as reduced data).
    device : str or torch.device
        Where the subject PCAs run (see :func:`~pipeline.ica.pca.subject_pca`).

    Returns
    -------
    dict
        ``reduced`` (list of float32 ``(p_i, n_voxels)``), ``whitening``,
        ``dewhitening`` (lists), ``n_voxels``.

    Raises
    ------
    ValueError
        If ``n_components`` exceeds a subject's volumes or the stacked subject
        components, or the subjects have different numbers of voxels.
    """
    if not isinstance(subjects, Sequence) or isinstance(subjects, (str, bytes)) or not subjects:
        raise TypeError(
            "'subjects' must be a non-empty list of (n_volumes, n_voxels) arrays or loaders. "
            f"Got {type(subjects).__name__}."
        )
    check_int("n_components", n_components, 1)
    check_in_allowed("preprocess", preprocess, PREPROCESS_METHODS)
    reduced, whitening, dewhitening = [], [], []
    n_voxels = None
    for i, subject in enumerate(subjects):
        data = _load_subject(subject, i)
        if n_voxels is None:
            n_voxels = data.shape[1]
        elif data.shape[1] != n_voxels:
            raise ValueError(
                f"'subjects[{i}]' must have {n_voxels} voxels like subjects[0]. Got "
                f"{data.shape[1]}; mask every subject with the same mask."
            )
        if not subject_reduction:
            reduced.append(np.asarray(data, dtype=np.float32))
            whitening.append(np.eye(data.shape[0]))
            dewhitening.append(np.eye(data.shape[0]))
            continue
        n_vol = data.shape[0]
        if n_components > n_vol - 1:
            raise ValueError(
                f"'n_components'={n_components} must be at most n_volumes - 1 = {n_vol - 1} "
                f"(subjects[{i}] has {n_vol} volumes). Lower the model order or use longer runs."
            )
        p = default_subject_components(n_components, n_vol)
        if n_subject_components is not None:
            p = check_int("n_subject_components", n_subject_components, 1, n_vol - 1,
                          bound="n_volumes - 1",
                          fix=f"subjects[{i}] has {n_vol} volumes; keep fewer subject components.")
        res = subject_pca(preprocess_subject(data, preprocess), p, device=device)
        reduced.append(np.asarray(res.reduced, dtype=np.float32))
        whitening.append(res.whitening)
        dewhitening.append(res.dewhitening)
    n_stacked = sum(r.shape[0] for r in reduced)
    if n_components > n_stacked:
        raise ValueError(
            f"'n_components'={n_components} must be at most the stacked subject components "
            f"({len(reduced)} subjects x kept PCs = {n_stacked}). Raise n_subject_components "
            "or lower the model order."
        )
    return {"reduced": reduced, "whitening": whitening, "dewhitening": dewhitening,
            "n_voxels": n_voxels}


def orient_and_scale(
    sources: np.ndarray, mixing: np.ndarray, z_score: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip signs so each map has positive skewness; optionally z-score maps.

    Parameters
    ----------
    sources : ndarray of shape (k, n_voxels)
    mixing : ndarray of shape (n_rows, k)
    z_score : bool

    Returns
    -------
    sources, mixing : ndarray
        Adjusted so that ``mixing @ sources`` is unchanged up to map means.
    skew : ndarray of shape (k,)
        Skewness after flipping (>= 0).
    """
    centred = sources - sources.mean(axis=1, keepdims=True)
    std = centred.std(axis=1)
    std[std == 0] = 1.0
    skew = (centred**3).mean(axis=1) / std**3
    sign = np.where(skew < 0, -1.0, 1.0)
    sources = sources * sign[:, None]
    mixing = mixing * sign[None, :]
    if z_score:
        sources = (sources - sources.mean(axis=1, keepdims=True)) / std[:, None]
        mixing = mixing * std[None, :]
    return sources, mixing, np.abs(skew)


@fill_doc
class GroupICA(BaseEstimator):
    """Spatial group ICA: subject PCA, memory-light group PCA, Infomax/FastICA.

    Parameters
    ----------
    n_components : int, default=20
        Model order (number of group networks).
    algorithm : {"infomax", "fastica"}, default="infomax"
    n_subject_components : int or None, default=None
        Subject PCs; ``None`` uses ``min(2 * n_components, n_volumes - 1)``.
    preprocess : {"remove_mean", "variance_norm", "none"}, default="remove_mean"
        Voxel-wise preprocessing before subject PCA: GIFT's default removes
        the means (each voxel's over time, then each volume's over voxels);
        ``"variance_norm"`` also detrends and scales each voxel (NeuroMark).
    subject_reduction : bool, default=True
        ``False``: the inputs are already reduced ``(p_i, n_voxels)`` arrays.
    group_pca_method : {"mpowit", "randomized"}, default="mpowit"
    n_runs : int, default=1
        ICA runs; ``>= 2`` runs ICASSO and returns centrotypes and stability.
    icasso_mode : {"randinit", "bootstrap", "both"}, default="randinit"
    z_score : bool, default=True
        Return z-scored maps (the mixing absorbs the scale).
    %(ica_params)s
    %(random_state)s
    %(device)s

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_voxels)
        Group spatial maps, positive skew, z-scored when ``z_score``.
    mixing_ : ndarray of shape (n_components, n_components)
        ``group_pca_components_ ~= mixing_ @ components_``.
    unmixing_ : ndarray of shape (n_components, n_components)
        Pseudo-inverse of ``mixing_``.
    group_pca_components_ : ndarray of shape (n_components, n_voxels)
        Whitened group PCA data (the ICA input).
    group_pca_eigenvalues_ : ndarray of shape (n_components,)
    group_whitening_, group_dewhitening_ : sequence of ndarray
        Per-subject blocks, ``(n_components, p_i)`` and ``(p_i, n_components)``.
    subject_whitening_, subject_dewhitening_ : sequence of ndarray
        Per-subject PCA, ``(p_i, n_volumes_i)`` and ``(n_volumes_i, p_i)``.
    subject_mixing_ : sequence of ndarray of shape (n_volumes_i, n_components)
        GICA time courses (see the module docstring). Like the other
        per-subject sequences, computed when read (memory does not grow with
        the number of subjects).
    group_pca_ : dict
        How the group PCA ran: ``method``, ``n_iter``, ``n_passes`` (reads of
        every subject's data), ``converged``, ``relative_change``.
    skew_ : ndarray of shape (n_components,)
    stability_ : ndarray of shape (n_components,) or None
        ICASSO ``Iq`` (``None`` when ``n_runs == 1``).
    icasso_ : ICASSO or None
    n_iter_ : int or ndarray
        ICA iterations (per run with ICASSO).
    n_features_in_ : int
        Number of voxels.

    Raises
    ------
    ValueError
        If ``n_components`` exceeds a subject's volumes - 1 or the stacked
        subject components (subjects x kept PCs); the message gives the numbers.

    Warns
    -----
    ConvergenceWarning
        If the ICA (or the group PCA) stopped before its tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> maps = rng.laplace(size=(3, 500))
    >>> subjects = [rng.randn(40, 3) @ maps + 0.1 * rng.randn(40, 500) for _ in range(3)]
    >>> gica = GroupICA(3, random_state=0, device="cpu").fit(subjects)
    >>> gica.components_.shape, gica.subject_mixing_[0].shape
    ((3, 500), (40, 3))
    """

    def __init__(
        self,
        n_components=20,
        *,
        algorithm="infomax",
        n_subject_components=None,
        preprocess="remove_mean",
        subject_reduction=True,
        group_pca_method="mpowit",
        n_runs=1,
        icasso_mode="randinit",
        z_score=True,
        ica_params=None,
        random_state=None,
        device="auto",
    ):
        self.n_components = n_components
        self.algorithm = algorithm
        self.n_subject_components = n_subject_components
        self.preprocess = preprocess
        self.subject_reduction = subject_reduction
        self.group_pca_method = group_pca_method
        self.n_runs = n_runs
        self.icasso_mode = icasso_mode
        self.z_score = z_score
        self.ica_params = ica_params
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        """Fit on a list of subjects.

        Parameters
        ----------
        X : list of ndarray of shape (n_volumes_i, n_voxels), or of callables
            Masked subject data (loaders are called once).
        y : None
            Ignored.

        Returns
        -------
        self : GroupICA
        """
        check_in_allowed("algorithm", self.algorithm, ALGORITHMS)
        check_in_allowed("icasso_mode", self.icasso_mode, MODES)
        check_int("n_runs", self.n_runs, 1)
        subj = reduce_subjects(
            X,
            self.n_components,
            n_subject_components=self.n_subject_components,
            preprocess=self.preprocess,
            subject_reduction=self.subject_reduction,
            device=self.device,
        )
        seed_pca, seed_ica = derive_seeds(self.random_state, 2)
        gpca = group_pca(
            subj["reduced"],
            self.n_components,
            method=self.group_pca_method,
            random_state=int(seed_pca),
            device=self.device,
        )
        if not gpca.converged:
            warnings.warn(
                f"Group PCA did not converge in {gpca.n_iter} passes. Use "
                "group_pca_method='randomized' or check the data for near-equal eigenvalues.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._set_from_parts(subj, gpca, int(seed_ica))
        return self

    def _set_from_parts(self, subj: dict, gpca: Any, seed: int) -> None:
        """Run the ICA on the group PCA and set every fitted attribute."""
        k = self.n_components
        reduced = gpca.reduced[:k]
        if self.n_runs >= 2:
            icasso = ICASSO(
                self.n_runs,
                algorithm=self.algorithm,
                mode=self.icasso_mode,
                ica_params=self.ica_params,
                random_state=seed,
                device=self.device,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                icasso.fit(reduced)
            sources, mixing = icasso.components_, icasso.mixing_
            self.stability_ = icasso.stability_
            self.icasso_ = icasso
            self.n_iter_ = icasso.n_iter_
            converged = icasso.n_converged_ == self.n_runs
        else:
            sources, unmixing, n_iter, converged = unmix(
                reduced, self.algorithm, random_state=seed, device=self.device,
                ica_params=self.ica_params,
            )
            mixing = np.linalg.pinv(unmixing)
            self.stability_ = None
            self.icasso_ = None
            self.n_iter_ = n_iter
        if not converged:
            warnings.warn(
                f"Group ICA ({self.algorithm}, {self.n_components} components) did not "
                f"converge (iterations: {self.n_iter_}). Increase max_iter in ica_params.",
                ConvergenceWarning,
                stacklevel=3,
            )
        sources, mixing, skew = orient_and_scale(sources, mixing, self.z_score)
        self.components_ = sources
        self.mixing_ = mixing
        self.unmixing_ = np.linalg.pinv(mixing)
        self.skew_ = skew
        self.group_pca_components_ = reduced
        self.group_pca_eigenvalues_ = gpca.eigenvalues[:k]
        # per-subject matrices are computed when read: memory does not grow with N
        n = len(gpca.dewhitening)
        self.group_whitening_ = LazySequence(n, partial(_leading_rows, gpca.whitening, k))
        self.group_dewhitening_ = LazySequence(n, partial(_leading_columns, gpca.dewhitening, k))
        self.subject_whitening_ = subj["whitening"]
        self.subject_dewhitening_ = subj["dewhitening"]
        self.subject_mixing_ = LazySequence(
            n, partial(_gica_timecourses, subj["dewhitening"], self.group_dewhitening_, mixing))
        self.group_pca_ = {"method": self.group_pca_method, "n_iter": int(gpca.n_iter),
                           "n_passes": int(gpca.n_passes), "converged": bool(gpca.converged),
                           "relative_change": float(gpca.change)}
        self.n_features_in_ = subj["n_voxels"]

    def subject_timecourses(self, index: int) -> np.ndarray:
        """GICA time courses of one subject, shape (n_volumes, n_components).

        Parameters
        ----------
        index : int
            Position of the subject in the list given to :meth:`fit`.
        """
        check_is_fitted(self)
        return self.subject_mixing_[index]
