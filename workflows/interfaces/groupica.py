"""Nipype interfaces of data-driven (GIFT-style) group ICA.

The participant level reduces each run with :class:`SubjectPCA` and keeps the
result in the work directory (one ``.npz`` per run, with a JSON sidecar naming
the run's inputs). The group level fits the multi-scale group ICA on all of
them with :class:`MultiscaleGroupICA` and back-reconstructs every run with
:class:`GICABackReconstruct`.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = [
    "GICABackReconstruct",
    "MultiscaleGroupICA",
    "SubjectPCA",
    "load_subject_pca",
    "subject_pca_name",
]

LOGGER = logging.getLogger("msica.groupica")


def subject_pca_name(source_file: str) -> str:
    """Name of a run's subject-PCA file, from its BOLD file name.

    Examples
    --------
    >>> subject_pca_name("/d/sub-01_task-rest_run-1_space-MNI_desc-preproc_bold.nii.gz")
    'sub-01_task-rest_run-1_space-MNI_desc-pca.npz'
    """
    stem = Path(source_file).name.split(".")[0]
    stem = stem.rsplit("_", 1)[0]  # drop the suffix
    if "_desc-" in stem:
        stem = stem[: stem.index("_desc-")]
    return f"{stem}_desc-pca.npz"


def load_subject_pca(pca_file: str | Path) -> tuple[dict, dict]:
    """Read a subject-PCA file and its sidecar.

    Returns
    -------
    arrays : dict
        ``reduced`` ``(p, n_voxels)``, ``whitening`` ``(p, n_volumes)``,
        ``dewhitening`` ``(n_volumes, p)``, ``voxels`` (flat indices of the
        participant's mask voxels in the grid), ``shape``, ``affine``,
        ``sample_mask``.
    meta : dict
        The JSON sidecar (source files, repetition time, ...).
    """
    from pipeline.exceptions import InputDataError

    pca_file = Path(pca_file)
    sidecar = pca_file.with_suffix(".json")
    if not sidecar.is_file():
        raise InputDataError(
            f"{pca_file} has no sidecar {sidecar.name}; rerun the participant level "
            "with --model-orders."
        )
    with np.load(pca_file) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads(sidecar.read_text())


class _SubjectPCAInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True,
                     desc="denoised run (DenoiseBold's .npy, or a 4-D NIfTI)")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    sample_mask = traits.List(traits.Int, desc="volumes kept by denoising (indices)")
    n_components = traits.Int(mandatory=True, desc="largest group model order")
    preprocess = traits.Enum("remove_mean", "variance_norm", "none", usedefault=True,
                             desc="voxel-wise preprocessing (GIFT's options)")
    out_dir = traits.Str(mandatory=True, desc="folder of the subject PCAs (work directory)")
    meta = traits.Dict(mandatory=True, desc="the run's inputs, stored in the sidecar")
    reduced_dtype = traits.Enum(
        "float32", "float16", usedefault=True,
        desc="storage of the reduced data: float16 halves the files and the group PCA's reads "
             "(eigenvalues within 1e-6 of float32 on simulated 3 mm data; GICA maps differ by "
             "float16 rounding, ~5e-4 relative)")


class _SubjectPCAOutputSpec(TraitedSpec):
    pca_file = File(exists=True, desc="subject PCA (.npz, with a .json sidecar)")


class SubjectPCA(SimpleInterface):
    """Reduce one denoised run by temporal PCA, as GIFT's first data reduction.

    Keeps ``min(2 * n_components, n_volumes - 1)`` components (GIFT's default
    for the first reduction) and writes them, with the whitening and
    dewhitening matrices needed for back-reconstruction, atomically to
    ``out_dir``.
    """

    input_spec = _SubjectPCAInputSpec
    output_spec = _SubjectPCAOutputSpec

    def _run_interface(self, runtime):
        from pipeline.exceptions import InputDataError
        from pipeline.ica.group import default_subject_components
        from pipeline.ica.pca import preprocess_subject, subject_pca
        from workflows.bids.atomic import atomic_path, atomic_write
        from workflows.interfaces.denoise import load_denoised

        inputs = self.inputs
        mask = nb.load(inputs.mask_file)
        data = load_denoised(inputs.bold_file, mask)
        n_volumes = data.shape[0]
        if inputs.n_components > n_volumes - 1:
            raise InputDataError(
                f"{inputs.meta.get('SourceFile', inputs.bold_file)} keeps {n_volumes} volumes, "
                f"too few for model order {inputs.n_components}; lower --model-orders below "
                f"{n_volumes} or drop this run."
            )
        n_pcs = default_subject_components(inputs.n_components, n_volumes)
        data = preprocess_subject(data, inputs.preprocess)
        res = subject_pca(data, n_pcs)
        voxels = np.flatnonzero(np.asarray(mask.dataobj).astype(bool).ravel())
        out = Path(inputs.out_dir) / subject_pca_name(inputs.meta["SourceFile"])
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            np.savez(tmp, reduced=res.reduced.astype(inputs.reduced_dtype),
                     whitening=res.whitening,
                     dewhitening=res.dewhitening, eigenvalues=res.eigenvalues,
                     voxels=voxels, shape=np.asarray(mask.shape[:3]), affine=mask.affine,
                     sample_mask=np.asarray(inputs.sample_mask or np.arange(n_volumes)))
        # share of the trace of the covariance subject_pca diagonalises (rows centred)
        total = float(np.var(data, axis=1, ddof=1).sum())
        meta = {**inputs.meta, "NumberOfVolumes": n_volumes, "NumberOfComponents": n_pcs,
                "Preprocessing": inputs.preprocess, "ReducedDataType": inputs.reduced_dtype,
                "ExplainedVariance": float(res.eigenvalues.sum()) / total if total > 0 else None}
        with atomic_write(out.with_suffix(".json")) as handle:
            json.dump(meta, handle, indent=2, default=str)
        self._results["pca_file"] = str(out)
        return runtime


def _mask_img(voxels: np.ndarray, shape: tuple, affine: np.ndarray) -> nb.Nifti1Image:
    """The mask image of ``voxels`` (flat C-order indices, the order of nilearn's maskers)."""
    mask = np.zeros(int(np.prod(shape)), dtype=np.uint8)
    mask[voxels] = 1
    return nb.Nifti1Image(mask.reshape(tuple(int(n) for n in shape)), affine)


def _write_maps(maps: np.ndarray, mask_img: nb.Nifti1Image, path: Path) -> None:
    """Write ``(n_maps, n_voxels)`` maps inside ``mask_img`` as a 4-D NIfTI."""
    from nilearn.maskers import NiftiMasker

    masker = NiftiMasker(mask_img=mask_img, standardize=None).fit()
    masker.inverse_transform(np.asarray(maps, dtype=np.float32)).to_filename(path)


def _group_voxels(pca_files: list[str]) -> tuple[np.ndarray, tuple, np.ndarray]:
    """Voxels inside every run's mask (GIFT's group mask), with the grid of the runs."""
    from pipeline.exceptions import InputDataError

    common, shape, affine = None, None, None
    for path in pca_files:
        with np.load(path) as npz:
            voxels, run_shape, run_affine = npz["voxels"], tuple(npz["shape"]), npz["affine"]
        if shape is None:
            shape, affine, common = run_shape, run_affine, voxels
            continue
        if run_shape != shape or not np.allclose(run_affine, affine, atol=1e-3):
            raise InputDataError(
                f"{path} is on grid {run_shape}, not {shape} like {pca_files[0]}; group ICA "
                "needs every run in the same space (e.g. fMRIPrep's MNI152NLin2009cAsym output)."
            )
        common = np.intersect1d(common, voxels, assume_unique=True)
    if common.size == 0:
        raise InputDataError("The runs' brain masks share no voxel; check their space.")
    return common, shape, affine


class _MultiscaleGroupICAInputSpec(BaseInterfaceInputSpec):
    pca_files = traits.List(File(exists=True), mandatory=True, desc="subject PCA files")
    model_orders = traits.List(traits.Int, mandatory=True, desc="model orders")
    algorithm = traits.Enum("infomax", "fastica", usedefault=True)
    n_runs = traits.Int(10, usedefault=True, desc="ICASSO runs per order (1: no ICASSO)")
    t_r = traits.Float(desc="repetition time (s), for the temporal criterion")
    random_state = traits.Int(0, usedefault=True)
    device = traits.Str("cpu", usedefault=True)


class _MultiscaleGroupICAOutputSpec(TraitedSpec):
    template_files = traits.List(File(exists=True), desc="kept networks per scale (4-D NIfTI)")
    labels_files = traits.List(File(exists=True), desc="labels TSV per scale")
    all_labels_file = File(exists=True, desc="every component with its scores and parent")
    model_file = File(exists=True, desc="unmixing and group PCA blocks for back-reconstruction")
    meta = traits.Dict(desc="parameters for the JSON sidecars")


class MultiscaleGroupICA(SimpleInterface):
    """Group PCA and ICA (with ICASSO) at every model order; export the multi-scale template."""

    input_spec = _MultiscaleGroupICAInputSpec
    output_spec = _MultiscaleGroupICAOutputSpec

    def _run_interface(self, runtime):
        from pipeline import __version__
        from pipeline.ica.multiscale import fit_multiscale

        inputs = self.inputs
        voxels, shape, affine = _group_voxels(inputs.pca_files)
        mask_img = _mask_img(voxels, shape, affine)
        mask = np.asarray(mask_img.dataobj).astype(bool)
        result = fit_multiscale(
            _subject_pcas(inputs.pca_files, voxels),
            inputs.model_orders, algorithm=inputs.algorithm, n_runs=inputs.n_runs, mask=mask,
            t_r=inputs.t_r if isdefined(inputs.t_r) else None, random_state=inputs.random_state,
            device=inputs.device)
        cwd = Path(runtime.cwd)
        labels = result.labels
        template_files, labels_files, model = [], [], []
        for order in result.model_orders:
            rows = labels[(labels["scale"] == order) & labels["keep"]]
            if rows.empty:
                LOGGER.warning("No network of model order %d passed the selection criteria; "
                               "all %d are kept (see desc-groupica_labels.tsv).", order, order)
                rows = labels[labels["scale"] == order]
            kept = rows["component"].to_numpy()
            est = result.estimators[order]
            path = cwd / f"scale-{order}_components.nii.gz"
            _write_maps(est.components_[kept], mask_img, path)
            table = rows.drop(columns=["index"]).reset_index(drop=True)
            table.insert(0, "index", np.arange(1, len(table) + 1))
            table_path = cwd / f"scale-{order}_labels.tsv"
            table.to_csv(table_path, sep="\t", index=False, na_rep="n/a")
            template_files.append(str(path))
            labels_files.append(str(table_path))
            model.append((order, kept, est))
        all_labels = cwd / "labels.tsv"
        labels.to_csv(all_labels, sep="\t", index=False, na_rep="n/a")
        model_file = cwd / "model.npz"
        _save_npz(model_file, _model_arrays(model, voxels, shape, affine))
        self._results.update(
            template_files=template_files, labels_files=labels_files,
            all_labels_file=str(all_labels), model_file=str(model_file),
            meta={"Method": "group ICA (GIFT style): subject PCA, group PCA, "
                            f"{inputs.algorithm}, ICASSO",
                  "ModelOrders": list(result.model_orders), "Algorithm": inputs.algorithm,
                  "ICASSORuns": inputs.n_runs, "RandomSeed": inputs.random_state,
                  "NumberOfRuns": len(inputs.pca_files), "NumberOfVoxels": int(voxels.size),
                  "GroupPCA": {"Method": result.group_pca["method"],
                               "Passes": result.group_pca["n_passes"],
                               "Iterations": result.group_pca["n_iter"],
                               "Converged": result.group_pca["converged"],
                               "RelativeEigenvalueChange": _finite_or_none(
                                   result.group_pca["relative_change"])},
                  "SelectionCriteria": json.loads(json.dumps(result.thresholds, default=float)),
                  "KeptNetworks": {str(o): int(np.sum(labels[labels["scale"] == o]["keep"]))
                                   for o in result.model_orders},
                  "SoftwareVersion": __version__},
        )
        return runtime


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no NaN


def _read_reduced(pca_files: list[str], voxels: np.ndarray, index: int) -> np.ndarray:
    """Subject ``index``'s reduced data on the group voxels (read from its file)."""
    with np.load(pca_files[index]) as npz:
        keep = np.searchsorted(npz["voxels"], voxels)
        return npz["reduced"][:, keep].astype(np.float32, copy=False)  # float16 files too


def _read_array(pca_files: list[str], key: str, index: int) -> np.ndarray:
    with np.load(pca_files[index]) as npz:
        return npz[key]


def _subject_pcas(pca_files: list[str], voxels: np.ndarray) -> dict:
    """The subject PCAs as sequences that read one subject's file when indexed.

    The group ICA then holds one subject at a time: its memory does not grow
    with the number of runs.
    """
    from pipeline.ica._lazy import LazySequence

    n = len(pca_files)
    return {"reduced": LazySequence(n, partial(_read_reduced, pca_files, voxels)),
            "whitening": LazySequence(n, partial(_read_array, pca_files, "whitening")),
            "dewhitening": LazySequence(n, partial(_read_array, pca_files, "dewhitening")),
            "n_voxels": int(voxels.size)}


def _model_arrays(model: list, voxels: np.ndarray, shape: tuple, affine: np.ndarray):
    """The arrays of the model file, one at a time (per-run blocks are computed as written)."""
    yield "voxels", voxels
    yield "shape", np.asarray(shape)
    yield "affine", affine
    for order, kept, est in model:
        yield f"kept_{order}", kept
        yield f"unmixing_{order}", est.unmixing_
        for i in range(len(est.group_whitening_)):
            yield f"gw_{order}_{i}", est.group_whitening_[i]
            yield f"gd_{order}_{i}", est.group_dewhitening_[i]


def _save_npz(path: Path, arrays) -> None:
    """``np.savez`` for ``(name, array)`` pairs given one at a time (none is kept in memory)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


class _GICABackReconstructInputSpec(BaseInterfaceInputSpec):
    pca_file = File(exists=True, mandatory=True, desc="this run's subject PCA")
    run_index = traits.Int(mandatory=True, desc="position of the run in the group ICA")
    model_file = File(exists=True, mandatory=True, desc="MultiscaleGroupICA model file")
    labels_file = File(exists=True, mandatory=True, desc="its labels TSV")
    scale = traits.Int(mandatory=True, desc="model order")


class _GICABackReconstructOutputSpec(TraitedSpec):
    components_file = File(exists=True, desc="z-scored participant maps (4-D NIfTI)")
    timeseries_file = File(exists=True, desc="network time courses (TSV, one column per network)")
    scale = traits.Int(desc="model order")
    sample_mask = traits.List(traits.Int, desc="volumes of the time courses")
    fnc_networks = traits.List(traits.Str, desc="labels of the networks that enter FNC (all)")
    domains = traits.List(traits.Str, desc="functional domain of each network (none)")
    meta = traits.Dict(desc="parameters for the JSON sidecars")


class GICABackReconstruct(SimpleInterface):
    """GIFT's GICA back-reconstruction of one run at one scale (kept networks only)."""

    input_spec = _GICABackReconstructInputSpec
    output_spec = _GICABackReconstructOutputSpec

    def _run_interface(self, runtime):
        from pipeline.ica.backrecon import gica_backreconstruct
        from pipeline.ica.scica import zscore_maps

        inputs = self.inputs
        order, i = inputs.scale, inputs.run_index
        arrays, _ = load_subject_pca(inputs.pca_file)
        with np.load(inputs.model_file) as npz:
            voxels, kept = npz["voxels"], npz[f"kept_{order}"]
            mask_img = _mask_img(voxels, tuple(npz["shape"]), npz["affine"])
            unmixing = npz[f"unmixing_{order}"]
            group_step = (npz[f"gw_{order}_{i}"], npz[f"gd_{order}_{i}"])
        reduced = arrays["reduced"][:, np.searchsorted(arrays["voxels"], voxels)]
        maps, timecourses = gica_backreconstruct(reduced, arrays["dewhitening"], unmixing,
                                                 group_reductions=[group_step])
        maps, _ = zscore_maps(maps[kept])
        cwd = Path(runtime.cwd)
        components_file = cwd / "components.nii.gz"
        _write_maps(maps, mask_img, components_file)
        labels = pd.read_csv(inputs.labels_file, sep="\t")["label"].astype(str).tolist()
        timeseries_file = cwd / "timeseries.tsv"
        pd.DataFrame(timecourses[:, kept], columns=labels).to_csv(timeseries_file, sep="\t",
                                                                   index=False)
        self._results.update(
            components_file=str(components_file), timeseries_file=str(timeseries_file),
            scale=order, sample_mask=[int(v) for v in arrays["sample_mask"]],
            fnc_networks=labels, domains=[""] * len(labels),
            meta={"Method": "gica",
                  "Template": "group ICA of this dataset (group/*desc-groupica_components)",
                  "NumberOfNetworks": int(kept.size), "NetworkLabels": labels,
                  "MapsScaling": "z-scores (GIFT: mean removed, divided by the standard "
                                 "deviation)"},
        )
        return runtime
