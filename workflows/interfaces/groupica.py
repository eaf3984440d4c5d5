"""Nipype interfaces of data-driven (GIFT-style) group ICA.

The participant level reduces each run with :class:`SubjectPCA` and keeps the
result in the work directory (one ``.npz`` per run, with a JSON sidecar naming
the run's inputs). The group level fits the multi-scale group ICA on all of
them with :class:`MultiscaleGroupICA` and back-reconstructs every run with
:class:`GICANetworksChunk` (runs in chunks, one run at a time), which also computes
and writes the runs' networks and FNC. Both files (subject PCA, group model) are
written and read by :mod:`pipeline.ica.persistence` only.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from pipeline.fnc.static import DEFAULT_FNC_MEASURE
from workflows.interfaces.base import MetaOutputSpec, PipelineInterface, given

__all__ = [
    "GICANetworksChunk",
    "MultiscaleGroupICA",
    "SubjectPCA",
    "gica_backreconstruct_run",
    "networks_fnc_of_run",
]


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
    device = traits.Str("auto", usedefault=True,
                        desc="torch device (pipeline._validation.resolve_device)")


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
        from pipeline.ica.pca import preprocess_subject, subject_pca, total_variance
        from pipeline.ica.persistence import save_subject_pca, subject_pca_sidecar
        from workflows.bids.atomic import atomic_path, atomic_write
        from workflows.bids.naming import subject_pca_name
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
        # the run is held once: preprocessed, then centred by subject_pca, in place
        data = preprocess_subject(data, inputs.preprocess, copy=False)
        total = total_variance(data)  # before subject_pca centres it
        res = subject_pca(data, n_pcs, device=inputs.device, copy=False)
        del data  # not needed past this point: not held while the PCA is written
        voxels = np.flatnonzero(np.asarray(mask.dataobj).astype(bool).ravel())
        out = Path(inputs.out_dir) / subject_pca_name(inputs.meta["SourceFile"])
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            save_subject_pca(tmp, res, voxels=voxels, shape=mask.shape[:3], affine=mask.affine,
                             reduced_dtype=inputs.reduced_dtype,
                             sample_mask=np.asarray(inputs.sample_mask or np.arange(n_volumes)))
        meta = {**inputs.meta, "NumberOfVolumes": n_volumes, "NumberOfComponents": n_pcs,
                "Preprocessing": inputs.preprocess, "ReducedDataType": inputs.reduced_dtype,
                "ExplainedVariance": float(res.eigenvalues.sum()) / total if total > 0 else None}
        with atomic_write(subject_pca_sidecar(out)) as handle:
            json.dump(meta, handle, indent=2, default=str)
        self._results["pca_file"] = str(out)
        return runtime


def _mask_img(grid) -> nb.Nifti1Image:
    """The image of a :class:`~pipeline.ica.persistence.GroupMask`."""
    return nb.Nifti1Image(grid.mask.astype(np.uint8), grid.affine)


def _write_maps(maps: np.ndarray, mask_img: nb.Nifti1Image, path: Path) -> None:
    """Write ``(n_maps, n_voxels)`` maps inside ``mask_img`` as a 4-D NIfTI."""
    from nilearn.maskers import NiftiMasker

    masker = NiftiMasker(mask_img=mask_img, standardize=None).fit()
    masker.inverse_transform(np.asarray(maps, dtype=np.float32)).to_filename(path)


class _MultiscaleGroupICAInputSpec(BaseInterfaceInputSpec):
    pca_files = traits.List(File(exists=True), mandatory=True, desc="subject PCA files")
    model_orders = traits.List(traits.Int, mandatory=True, desc="model orders")
    algorithm = traits.Enum("infomax", "fastica", usedefault=True)
    n_runs = traits.Int(10, usedefault=True, desc="ICASSO runs per order (1: no ICASSO)")
    t_r = traits.Float(desc="repetition time (s), for the temporal criterion")
    random_state = traits.Int(0, usedefault=True)
    device = traits.Str("cpu", usedefault=True)


class _MultiscaleGroupICAOutputSpec(MetaOutputSpec):
    template_files = traits.List(File(exists=True), desc="kept networks per scale (4-D NIfTI)")
    labels_files = traits.List(File(exists=True), desc="labels TSV per scale")
    all_labels_file = File(exists=True, desc="every component with its scores and parent")
    model_file = File(exists=True, desc="unmixing and group PCA blocks for back-reconstruction")


class MultiscaleGroupICA(PipelineInterface):
    """Group PCA and ICA (with ICASSO) at every model order; export the multi-scale template.

    One call of :func:`pipeline.ica.multiscale.fit_multiscale_subject_pcas`; writes
    the kept networks and labels of each scale, every component's scores, the
    group model (:func:`pipeline.ica.persistence.save_group_model`) and a sidecar
    with the criteria, the kept networks and the scales where none passed
    (``SelectionFallback``).
    """

    input_spec = _MultiscaleGroupICAInputSpec
    output_spec = _MultiscaleGroupICAOutputSpec

    def _run_interface(self, runtime):
        from pipeline import __version__
        from pipeline.ica.multiscale import fit_multiscale_subject_pcas
        from pipeline.ica.persistence import save_group_model

        inputs = self.inputs
        result = fit_multiscale_subject_pcas(
            inputs.pca_files, inputs.model_orders, algorithm=inputs.algorithm,
            n_runs=inputs.n_runs, t_r=given(inputs.t_r),
            random_state=inputs.random_state, device=inputs.device)
        cwd = Path(runtime.cwd)
        mask_img = _mask_img(result.group_mask)
        template_files, labels_files = [], []
        for order in result.model_orders:
            path = cwd / f"scale-{order}_components.nii.gz"
            _write_maps(result.estimators[order].components_[result.kept(order)], mask_img, path)
            template_files.append(str(path))
            labels_files.append(
                self._write_table(runtime, result.scale_labels(order), f"scale-{order}_labels.tsv"))
        self._write_table(runtime, result.labels, "labels.tsv", "all_labels_file")
        model_file = cwd / "model.npz"
        save_group_model(model_file, result)
        self._results.update(
            template_files=template_files, labels_files=labels_files,
            model_file=str(model_file),
            meta={"Method": "group ICA (GIFT style): subject PCA, group PCA, "
                            f"{inputs.algorithm}, ICASSO",
                  "ModelOrders": list(result.model_orders), "Algorithm": inputs.algorithm,
                  "ICASSORuns": inputs.n_runs, "RandomSeed": inputs.random_state,
                  "NumberOfRuns": len(inputs.pca_files),
                  "NumberOfVoxels": int(result.group_mask.voxels.size),
                  "GroupPCA": {"Method": result.group_pca["method"],
                               "Passes": result.group_pca["n_passes"],
                               "Iterations": result.group_pca["n_iter"],
                               "Converged": result.group_pca["converged"],
                               "RelativeEigenvalueChange": _finite_or_none(
                                   result.group_pca["relative_change"])},
                  "SelectionCriteria": json.loads(json.dumps(result.thresholds, default=float)),
                  "KeptNetworks": {str(o): int(result.kept(o).size)
                                   for o in result.model_orders},
                  "SelectionFallback": {str(o): bool(result.selection_fallback[o])
                                        for o in result.model_orders},
                  "SoftwareVersion": __version__},
        )
        return runtime


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no NaN


def gica_backreconstruct_run(pca_file: str, run_index: int, model_file: str, labels_file: str,
                             scale: int, out_dir: Path) -> dict:
    """GIFT's GICA back-reconstruction of one run at one scale (kept networks only).

    Parameters
    ----------
    pca_file : str
        The run's subject PCA.
    run_index : int
        Position of the run in the group ICA.
    model_file, labels_file : str
        :class:`MultiscaleGroupICA`'s model file and the scale's labels TSV.
    scale : int
        Model order.
    out_dir : Path
        Folder of the written ``components.nii.gz`` and ``timeseries.tsv``.

    Returns
    -------
    dict
        ``components_file`` (z-scored maps, 4-D NIfTI), ``timeseries_file`` (TSV, one
        column per network), ``sample_mask`` (volumes of the time courses), ``labels``
        (the networks) and ``meta`` (parameters for the JSON sidecars).
    """
    from pipeline.ica.backrecon import GICA, gica_backreconstruct
    from pipeline.ica.persistence import load_run_model, load_subject_pca
    from pipeline.ica.scica import zscore_maps

    arrays, _ = load_subject_pca(pca_file)
    model = load_run_model(model_file, scale, run_index)
    kept = model.kept
    reduced = arrays["reduced"][:, np.searchsorted(arrays["voxels"], model.group_mask.voxels)]
    maps, timecourses = gica_backreconstruct(
        reduced, arrays["dewhitening"], model.unmixing,
        group_reductions=[(model.group_whitening, model.group_dewhitening)])
    maps, _ = zscore_maps(maps[kept])
    components_file = Path(out_dir) / "components.nii.gz"
    _write_maps(maps, _mask_img(model.group_mask), components_file)
    labels = pd.read_csv(labels_file, sep="\t")["label"].astype(str).tolist()
    timeseries_file = Path(out_dir) / "timeseries.tsv"
    pd.DataFrame(timecourses[:, kept], columns=labels).to_csv(timeseries_file, sep="\t",
                                                               index=False)
    return {"components_file": components_file, "timeseries_file": timeseries_file,
            "sample_mask": [int(v) for v in arrays["sample_mask"]], "labels": labels,
            "meta": {"Method": GICA.name,
                     "Template": "group ICA of this dataset (group/*desc-groupica_components)",
                     "NumberOfNetworks": int(kept.size), "NetworkLabels": labels,
                     "MapsScaling": "z-scores (GIFT: mean removed, divided by the standard "
                                    "deviation)"}}


def networks_fnc_of_run(pca_file: str, run_index: int, *, model_file: str,
                        labels_files: list[str], scales: list[int], output_dir: str,
                        fnc_measure: str, dfnc_window: int,
                        dataset_links: dict[str, str] | None, work_dir: Path) -> list[Path]:
    """Back-reconstruct one run at every scale, compute its FNC, write its derivatives.

    The derivatives are those of the participant level's networks (template mode):
    per scale ``desc-ica`` components and time series, then the ``desc-multiscale``
    relmat and ``desc-dfnc`` time series (:func:`workflows.interfaces.fnc.compute_fnc`
    on the run's time courses, motion-regressed with its confounds file), each with its
    sidecar, named after the run's BOLD file (the subject PCA's ``SourceFile``).

    Returns
    -------
    list of Path
        The written derivatives (without their sidecars).
    """
    from pipeline.ica.persistence import subject_pca_sidecar
    from workflows.bids.sink import write_derivative
    from workflows.interfaces.fnc import compute_fnc

    meta = json.loads(subject_pca_sidecar(pca_file).read_text())

    def store(in_file, sidecar: dict, **entities) -> Path:
        return write_derivative(in_file, output_dir, entities, source_file=meta["SourceFile"],
                                meta=sidecar, dataset_links=dataset_links)[0]

    written, runs = [], []
    for scale, labels_file in zip(scales, labels_files):
        scale_dir = work_dir / f"scale-{scale}"
        scale_dir.mkdir()
        run = gica_backreconstruct_run(pca_file, run_index, model_file, labels_file, scale,
                                       scale_dir)
        written += [store(run["components_file"], run["meta"], scale=scale, desc="ica",
                          suffix="components", extension=".nii.gz"),
                    store(run["timeseries_file"], run["meta"], scale=scale, desc="ica",
                          suffix="timeseries", extension=".tsv")]
        runs.append(run)
    fnc = compute_fnc([str(run["timeseries_file"]) for run in runs], list(scales),
                      t_r=float(meta["RepetitionTime"]), out_dir=work_dir,
                      fnc_networks=[run["labels"] for run in runs],
                      domains=[[""] * len(run["labels"]) for run in runs],
                      confounds_file=meta.get("ConfoundsFile") or None,
                      sample_mask=runs[0]["sample_mask"], measure=fnc_measure,
                      window=dfnc_window)
    written += [store(fnc["relmat_file"], fnc["meta"], desc="multiscale", suffix="relmat",
                      extension=".tsv"),
                store(fnc["dfnc_file"], fnc["meta"], desc="dfnc", suffix="timeseries",
                      extension=".tsv")]
    return written


class _GICANetworksChunkInputSpec(BaseInterfaceInputSpec):
    pca_files = traits.List(File(exists=True), mandatory=True,
                            desc="subject PCAs of the chunk's runs")
    run_indices = traits.List(traits.Int, mandatory=True,
                              desc="position of each run in the group ICA")
    model_file = File(exists=True, mandatory=True, desc="MultiscaleGroupICA model file")
    labels_files = traits.List(File(exists=True), mandatory=True, desc="labels TSV per scale")
    scales = traits.List(traits.Int, mandatory=True, desc="model orders, as labels_files")
    output_dir = traits.Directory(mandatory=True, desc="msica output directory")
    fnc_measure = traits.Str(DEFAULT_FNC_MEASURE, usedefault=True,
                             desc="static-FNC measure, a key of pipeline.fnc.static.FNC_MEASURES")
    dfnc_window = traits.Int(30, usedefault=True, desc="dFNC window length (TRs)")
    dataset_links = traits.Dict(
        traits.Str, desc="dataset name -> root, to express Sources as BIDS URIs")


class _GICANetworksChunkOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="written derivatives (sidecars aside)")


class GICANetworksChunk(SimpleInterface):
    """GICA back-reconstruction, FNC and derivatives of a chunk of runs, one run at a time.

    Calls :func:`networks_fnc_of_run` for every run of the chunk (so memory holds one
    run, and the group level's graph one node per chunk whatever the number of runs).
    A failing run does not stop the others; the node fails at the end with one line
    per failed run, as :class:`~pipeline.exceptions.InputDataError` if every failure
    was one.
    """

    input_spec = _GICANetworksChunkInputSpec
    output_spec = _GICANetworksChunkOutputSpec
    # Always rerun: it writes derivatives, and a cached node would not rewrite a deleted one.
    _always_run = True

    def _run_interface(self, runtime):
        import tempfile

        from pipeline.exceptions import InputDataError

        inputs = self.inputs
        links = given(inputs.dataset_links)
        written, failed = [], []
        for pca_file, run_index in zip(inputs.pca_files, inputs.run_indices):
            with tempfile.TemporaryDirectory(dir=runtime.cwd) as work_dir:
                try:
                    written += networks_fnc_of_run(
                        pca_file, run_index, model_file=inputs.model_file,
                        labels_files=inputs.labels_files, scales=inputs.scales,
                        output_dir=inputs.output_dir, fnc_measure=inputs.fnc_measure,
                        dfnc_window=inputs.dfnc_window,
                        dataset_links=links, work_dir=Path(work_dir))
                except Exception as exc:  # noqa: BLE001 - reported below, with the run
                    failed.append((Path(pca_file).name, exc))
        if failed:
            error = InputDataError if all(isinstance(e, InputDataError) for _, e in failed) \
                else RuntimeError
            raise error(f"{len(failed)} of {len(inputs.pca_files)} run(s) failed: " + "; ".join(
                f"{name}: {type(exc).__name__}: {exc}" for name, exc in failed))
        self._results["out_files"] = [str(path) for path in written]
        return runtime
