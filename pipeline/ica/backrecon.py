"""Back-reconstruction of participant maps and time courses from group maps.

Two regression-type methods complement MOO-ICAR (:mod:`pipeline.ica.scica`):

* :func:`dual_regression` -- FSL's dual regression: a spatial regression of
  the group maps on each volume gives time courses, a temporal regression of
  those time courses on each voxel gives maps.
* :func:`gica_backreconstruct` -- GIFT's GICA back-reconstruction from the
  PCA reductions and the group ICA unmixing matrix (``icatb_backReconstruct``
  with ``backReconType`` 'gica', 'gica3' or 'regular').

The methods a participant's template networks can be back-reconstructed with
(``msica --backrecon-method``) are the entries of :data:`BACKRECON_METHODS`:
adding one is one :class:`BackreconMethod` entry and its ``run`` function. The
data-driven group level's GICA is described by :data:`GICA`, a
:class:`BackreconText` (what its sidecars, methods text and references read).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline._validation import check_in_allowed, check_type
from pipeline.exceptions import InputDataError

__all__ = [
    "BACKRECON_METHODS",
    "GICA",
    "BackreconMethod",
    "BackreconResult",
    "BackreconText",
    "check_maps_fit_data",
    "dual_regression",
    "gica_backreconstruct",
]


def _as_2d(name: str, arr: Any) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"'{name}' must be a 2-D array. Got an array of shape {arr.shape}.")
    n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if n_bad:
        raise InputDataError(
            f"'{name}' contains {n_bad} NaN or infinite values: exclude those voxels from "
            "the mask (or fix the input) before back-reconstruction."
        )
    return arr


def check_maps_fit_data(data: np.ndarray, maps: np.ndarray, maps_name: str, step: str) -> None:
    """Check that ``maps`` lie on the voxels of ``data`` and are no more than its volumes.

    Parameters
    ----------
    data : ndarray of shape (n_volumes, n_voxels)
    maps : ndarray of shape (n_networks, n_voxels)
    maps_name : str
        The maps' parameter name (``"group_maps"``, ``"template"``), for the messages.
    step : str
        What needs ``n_networks <= n_volumes``, for the message.

    Raises
    ------
    InputDataError
        If the numbers of voxels differ.
    ValueError
        If there are more networks than volumes.

    Examples
    --------
    >>> import numpy as np
    >>> check_maps_fit_data(np.ones((2, 5)), np.ones((3, 5)), "template", "MOO-ICAR")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 'template' has 3 networks but 'data' has only 2 volumes: MOO-ICAR needs ...
    """
    if maps.shape[1] != data.shape[1]:
        raise InputDataError(
            f"{maps_name} has {maps.shape[1]} voxels, data has {data.shape[1]}: "
            f"resample the {maps_name.replace('_', ' ')} to the data grid (--resample-template)"
        )
    if maps.shape[0] > data.shape[0]:
        raise ValueError(
            f"'{maps_name}' has {maps.shape[0]} networks but 'data' has only {data.shape[0]} "
            f"volumes: {step} needs n_networks <= n_volumes. Use fewer networks or a longer run."
        )


def dual_regression(
    data: Any,
    group_maps: Any,
    *,
    demean: bool = True,
    normalize_timecourses: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """FSL-style dual regression of one participant's run on group maps.

    Parameters
    ----------
    data : array-like of shape (n_volumes, n_voxels)
        The participant's masked run.
    group_maps : array-like of shape (n_networks, n_voxels)
        Group (template) maps on the same voxels.
    demean : bool, default=True
        Stage 1: remove the mean over voxels of each volume and of each map
        (``fsl_glm --demean``). Stage 2: remove the mean over time of each
        voxel and of each time course.
    normalize_timecourses : bool, default=True
        Stage 2: scale each stage-1 time course to unit standard deviation
        (``n - 1``) before the temporal regression (``dual_regression``'s
        ``<design_norm>`` = 1, ``fsl_glm --des_norm``). Maps are then in
        data units per standard deviation of the time course.

    Returns
    -------
    maps : ndarray of shape (n_networks, n_voxels)
        Stage-2 regression coefficients (participant maps).
    timecourses : ndarray of shape (n_volumes, n_networks)
        Stage-1 regression coefficients (participant time courses), before
        the normalisation of stage 2.

    Raises
    ------
    InputDataError
        NaNs, or ``data`` and ``group_maps`` on different voxels.
    ValueError
        More networks than volumes, or a rank-deficient design.

    Notes
    -----
    Stage 1 solves ``D_c^T = G_c^T T^T`` and stage 2 ``D_c = T_n M`` by least
    squares (``numpy.linalg.lstsq``), as ``fsl_glm`` does with the
    pseudo-inverse. Neither stage uses the error variance (no z-statistics).

    References
    ----------
    .. [1] Nickerson, L. D. et al. (2017). Using dual regression to investigate
       network shape and amplitude in functional connectivity analyses.
       Front. Neurosci. 11, 115.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> g = rng.randn(3, 200)
    >>> tc = rng.randn(50, 3)
    >>> maps, tcs = dual_regression(tc @ g, g)
    >>> bool(np.allclose(tcs, tc))
    True
    >>> bool(np.allclose(maps, tc.std(axis=0, ddof=1)[:, None] * g))
    True
    """
    check_type("demean", demean, bool)
    check_type("normalize_timecourses", normalize_timecourses, bool)
    data = _as_2d("data", data)
    group_maps = _as_2d("group_maps", group_maps)
    check_maps_fit_data(data, group_maps, "group_maps", "the temporal regression")
    n_networks = group_maps.shape[0]
    d1, g = data, group_maps
    if demean:
        d1 = d1 - d1.mean(axis=1, keepdims=True)
        g = g - g.mean(axis=1, keepdims=True)
    coef, _, rank, _ = np.linalg.lstsq(g.T, d1.T, rcond=None)
    if rank < n_networks:
        raise ValueError(
            f"'group_maps' has rank {rank} < n_networks={n_networks} over the mask: "
            "remove duplicated or empty maps."
        )
    timecourses = coef.T
    design, d2 = timecourses, data
    if demean:
        design = design - design.mean(axis=0, keepdims=True)
        d2 = d2 - d2.mean(axis=0, keepdims=True)
    if normalize_timecourses:
        std = design.std(axis=0, ddof=1)
        if np.any(std == 0):
            raise ValueError(
                "A stage-1 time course is constant, so it cannot be normalised: "
                "use normalize_timecourses=False or check the data."
            )
        design = design / std
    maps, _, rank2, _ = np.linalg.lstsq(design, d2, rcond=None)
    if rank2 < n_networks:
        raise ValueError(
            f"The stage-1 time courses have rank {rank2} < n_networks={n_networks}: "
            "the run is too short or the maps are too similar for the temporal regression."
        )
    return maps, timecourses


def gica_backreconstruct(
    reduced_data: Any,
    dewhitening: Any,
    unmixing: Any,
    *,
    group_reductions: Sequence[tuple[Any, Any]] = (),
    method: str = "gica",
) -> tuple[np.ndarray, np.ndarray]:
    """GIFT's GICA back-reconstruction of one participant.

    Parameters
    ----------
    reduced_data : array-like of shape (n_pcs, n_voxels)
        The participant's first-level principal components: its whitening
        matrix applied to the preprocessed data centred per volume (GIFT's
        ``pcasig'``, i.e. ``whiteM @ X_c``).
    dewhitening : array-like of shape (n_volumes, n_pcs)
        The participant's first-level dewhitening matrix (GIFT's ``dewhiteM``).
    unmixing : array-like of shape (n_components, n_components)
        Group ICA unmixing matrix ``W`` (sources ``= W @ group PCs``).
    group_reductions : sequence of (whitening, dewhitening) pairs, default=()
        The participant's blocks of each higher-level (group) PCA step, from
        the last step (the one fed to ICA) down to the second one. For each
        step, ``whitening`` is the block of columns of the group whitening
        matrix that multiplies this participant's (or this group's) stacked
        PCs, of shape ``(n_out, n_in)``, and ``dewhitening`` the matching rows
        of the group dewhitening matrix, of shape ``(n_in, n_out)``. Empty for
        one reduction step (single participant, or subject-specific PCA fed
        straight to ICA).
    method : {"gica", "gica3", "regular"}, default="gica"
        GIFT's back-reconstruction type. ``"gica"`` (GICA1, GIFT's default)
        back-projects maps with ``pinv(dewhitening)`` of the group steps and
        time courses with their dewhitening; ``"gica3"`` uses the whitening
        for maps and its pseudo-inverse for time courses; ``"regular"`` uses
        the whitening for maps and the dewhitening for time courses.

    Returns
    -------
    maps : ndarray of shape (n_components, n_voxels)
        ``W @ B_ic @ reduced_data`` (GIFT's ``compSet.ic``, unscaled).
    timecourses : ndarray of shape (n_volumes, n_components)
        ``dewhitening @ B_tc @ pinv(W)`` (GIFT's ``compSet.tc`` transposed).

    Raises
    ------
    ValueError
        Inconsistent shapes or an unknown method.
    InputDataError
        NaNs in an input.

    Notes
    -----
    GIFT stores no scaling in the back-reconstruction file; z-scores
    (``scaleType`` 2) are applied in its calibration step, see
    :func:`pipeline.ica.scica.zscore_maps`. Reproduces
    ``lores_ica_br1_match.mat`` of GIFT's ``test_icatb_backReconstruct`` to
    rounding (sum of absolute differences about 7e-12 over 96 960 values).

    References
    ----------
    .. [1] Erhardt, E. B. et al. (2011). Comparison of multi-subject ICA
       methods for analysis of fMRI data. Hum. Brain Mapp. 32, 2075-2095.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> pcs, dew, w = rng.randn(4, 100), rng.randn(30, 4), rng.randn(4, 4)
    >>> maps, tcs = gica_backreconstruct(pcs, dew, w)
    >>> bool(np.allclose(tcs @ maps, dew @ pcs))
    True
    """
    check_in_allowed("method", method, ["gica", "gica3", "regular"])
    pcs = _as_2d("reduced_data", reduced_data)
    dew = _as_2d("dewhitening", dewhitening)
    w = _as_2d("unmixing", unmixing)
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"'unmixing' must be square. Got shape {w.shape}.")
    if dew.shape[1] != pcs.shape[0]:
        raise ValueError(
            f"'dewhitening' has {dew.shape[1]} columns but 'reduced_data' has {pcs.shape[0]} "
            "rows (PCs): pass the participant's dewhitening (n_volumes, n_pcs) and PCs "
            "(n_pcs, n_voxels) of the same reduction."
        )
    n_comp = w.shape[0]
    ic_info = np.eye(n_comp)
    tc_info = np.eye(n_comp)
    for step, pair in enumerate(group_reductions):
        if len(pair) != 2:
            raise ValueError(
                f"'group_reductions[{step}]' must be a (whitening, dewhitening) pair. "
                f"Got {len(pair)} items."
            )
        white = _as_2d(f"group_reductions[{step}][0]", pair[0])
        dewhite = _as_2d(f"group_reductions[{step}][1]", pair[1])
        if white.shape[0] != ic_info.shape[1] or dewhite.shape != white.shape[::-1]:
            raise ValueError(
                f"'group_reductions[{step}]' has whitening {white.shape} and dewhitening "
                f"{dewhite.shape}; expected ({ic_info.shape[1]}, n_in) and (n_in, "
                f"{ic_info.shape[1]}). List the steps from the last group PCA downwards."
            )
        if method == "gica":
            ic_info = ic_info @ np.linalg.pinv(dewhite)
        else:
            ic_info = ic_info @ white
        if method == "gica3":
            tc_info = np.linalg.pinv(white) @ tc_info
        else:
            tc_info = dewhite @ tc_info
    if ic_info.shape[1] != pcs.shape[0] or w.shape[1] != ic_info.shape[0]:
        raise ValueError(
            f"Shapes do not chain: unmixing {w.shape}, group steps map to {ic_info.shape[1]} "
            f"inputs, the participant has {pcs.shape[0]} PCs. With one reduction step "
            "n_components must equal n_pcs."
        )
    maps = w @ ic_info @ pcs
    timecourses = dew @ tc_info @ np.linalg.pinv(w)
    return maps, timecourses


@dataclass(frozen=True)
class BackreconResult:
    """What a back-reconstruction method returns for one run and one template.

    Attributes
    ----------
    maps : ndarray of shape (n_networks, n_voxels)
        Participant maps in the method's own scale (the workflow z-scores them;
        with ``gift_compatible`` they are also written as they are).
    timecourses : ndarray of shape (n_volumes, n_networks)
        Participant time courses.
    meta : dict
        Method-specific fields of the JSON sidecars: ``"Device"`` and
        ``"TimeseriesScaling"`` (what the time courses' values are) at least.
    converged, n_iter, final_change : ndarray of shape (n_networks,) or None
        Per network, for iterative methods: whether the optimiser converged, its
        number of passes and its last squared step; None for closed-form methods.
    """

    maps: np.ndarray
    timecourses: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    converged: np.ndarray | None = None
    n_iter: np.ndarray | None = None
    final_change: np.ndarray | None = None


#: ``run(data, group_maps, *, device, gift_compatible) -> BackreconResult``, with ``data``
#: of shape (n_volumes, n_voxels) and ``group_maps`` of shape (n_networks, n_voxels).
BackreconRun = Callable[..., BackreconResult]


@dataclass(frozen=True, kw_only=True)
class BackreconText:
    """How a run describes its back-reconstruction method: sidecars, methods text, references.

    Attributes
    ----------
    name : str
        The sidecars' ``"Method"``.
    description : str
        The phrase of the methods text (``"... were estimated ... by <description>"``),
        citing works as ``@key``.
    references : mapping of str to str
        The works cited by ``@key`` in ``description`` (key -> reference text); the
        reports' methods section numbers them.
    """

    name: str
    description: str
    references: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BackreconMethod(BackreconText):
    """A back-reconstruction method of template networks: how to run it and describe it.

    Attributes
    ----------
    name : str
        The value of ``--backrecon-method`` and of the sidecars' ``"Method"``.
    run : callable
        ``run(data, group_maps, *, device, gift_compatible) -> BackreconResult``;
        it may use ``data`` as scratch space (overwrite it), so the run is
        held once: pass an array the caller no longer needs.
    summary : str
        A few words for ``msica --help`` (and the Boutiques descriptor).
    description, references
        As :class:`BackreconText`.
    gift_description : str or None
        The phrase with ``--gift-compatible``; None if the method has no
        GIFT-compatible variant (the command line then refuses the flag).
    """

    run: BackreconRun
    summary: str
    gift_description: str | None = None

    def describe(self, gift_compatible: bool = False) -> str:
        """The methods-text phrase of this method.

        Parameters
        ----------
        gift_compatible : bool, default=False
            Describe the GIFT-compatible variant.

        Returns
        -------
        str

        Raises
        ------
        ValueError
            If ``gift_compatible`` and the method has no GIFT-compatible variant.
        """
        if not gift_compatible:
            return self.description
        if self.gift_description is None:
            raise ValueError(f"back-reconstruction method {self.name!r} has no GIFT-compatible "
                             "variant.")
        return self.gift_description


def _run_moo_icar(data: np.ndarray, group_maps: np.ndarray, *, device: str,
                  gift_compatible: bool) -> BackreconResult:
    """MOO-ICAR (:class:`pipeline.ica.scica.SpatiallyConstrainedICA`), maps unscaled."""
    from pipeline.exceptions import ConvergenceWarning
    from pipeline.ica.scica import SpatiallyConstrainedICA  # torch: imported when run

    est = SpatiallyConstrainedICA(group_maps, zscore=False, device=device,
                                  gift_compatible=gift_compatible, copy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # returned, reported by the caller
        est.fit(data)
    return BackreconResult(
        maps=est.components_, timecourses=est.timecourses_,
        meta={"Optimiser": "GIFT (icatb_gigicar)" if gift_compatible
              else "Riemannian gradient ascent (msica)",
              "NumberOfIterations": np.asarray(est.n_iter_).tolist(),
              "Converged": np.asarray(est.converged_).tolist(),
              "Objective": np.asarray(est.objective_).tolist(),
              "Device": str(est.device_),
              "TimeseriesScaling": "MOO-ICAR's output before scaling (data x unscaled maps / "
                                   "voxels), as GIFT's 'No scaling'"},
        converged=np.asarray(est.converged_), n_iter=np.asarray(est.n_iter_),
        final_change=np.asarray(est.final_change_))


def _run_dual_regression(data: np.ndarray, group_maps: np.ndarray, *, device: str,
                         gift_compatible: bool) -> BackreconResult:
    """:func:`dual_regression` with its defaults (NumPy, so ``device`` is not used)."""
    maps, timecourses = dual_regression(data, group_maps)
    return BackreconResult(maps=maps, timecourses=timecourses, meta={
        "Device": "cpu",
        "TimeseriesScaling": "stage-1 regression coefficients of the run on the group maps "
                             "(data units), before the normalisation of stage 2"})


#: GIFT's GICA back-reconstruction (:func:`gica_backreconstruct`) of the data-driven group
#: level. Not an entry of :data:`BACKRECON_METHODS`: it back-projects a run's subject PCA
#: through the group PCA and unmixing of the group ICA, where those methods fit a template.
GICA = BackreconText(
    name="gica",
    description="GICA (@gica)",
    references={"gica": "Erhardt EB, Rachakonda S, Bedrick EJ, Allen EA, Adali T, Calhoun VD. "
                        "Comparison of multi-subject ICA methods for analysis of fMRI data. Hum "
                        "Brain Mapp. 2011;32(12):2075-2095."},
)

#: Back-reconstruction methods of template networks by name (``--backrecon-method``).
BACKRECON_METHODS: dict[str, BackreconMethod] = {method.name: method for method in (
    BackreconMethod(
        name="moo-icar",
        run=_run_moo_icar,
        summary="spatially constrained ICA, as GIFT's NeuroMark",
        description="spatially constrained ICA (MOO-ICAR, @moo_icar)",
        gift_description="spatially constrained ICA (MOO-ICAR, @moo_icar, with GIFT's own "
                         "optimiser after removing the mean over voxels of each volume, as "
                         "GIFT's NeuroMark pipeline)",
        references={"moo_icar": "Du Y, Fan Y. Group information guided ICA for fMRI data "
                                "analysis. NeuroImage. 2013;69:157-197. Du Y, et al. NeuroMark: "
                                "an automated and adaptive ICA based pipeline to identify "
                                "reproducible fMRI markers of brain disorders. NeuroImage Clin. "
                                "2020;28:102375."},
    ),
    BackreconMethod(
        name="dual-regression",
        run=_run_dual_regression,
        summary="FSL's dual regression",
        description="dual regression (@dual_regression)",
        references={"dual_regression": "Beckmann CF, Mackay CE, Filippini N, Smith SM. Group "
                                       "comparison of resting-state FMRI data using "
                                       "multi-subject ICA and dual regression. NeuroImage. "
                                       "2009;47(Suppl 1):S148."},
    ),
)}
