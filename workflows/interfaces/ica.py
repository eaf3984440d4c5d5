"""Nipype interface for per-participant back-reconstruction of a network template."""

from __future__ import annotations

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

__all__ = ["BackReconstruct", "load_template_labels"]


def load_template_labels(labels_file: str | None, n_networks: int) -> list[str]:
    """Return one label per template network from a labels TSV (or ``N1..Nk``).

    The TSV may be msica's template table (``index, scale, label, ...``) or a
    NeuroMark-style table (``component_index, label, domain, ...``); a missing
    label falls back to ``N<index>``.
    """
    if not labels_file:
        return [f"N{i + 1}" for i in range(n_networks)]
    table = pd.read_csv(labels_file, sep="\t", na_values=["n/a", "NA"], keep_default_na=False)
    if len(table) != n_networks:
        from pipeline.exceptions import InputDataError

        raise InputDataError(
            f"{labels_file} has {len(table)} rows but the template has {n_networks} networks; "
            "give one row per template volume, in volume order."
        )
    labels = table["label"] if "label" in table else pd.Series([None] * n_networks)
    return [str(lab) if isinstance(lab, str) and lab else f"N{i + 1}"
            for i, lab in enumerate(labels)]


class _BackReconstructInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="denoised 4-D BOLD")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    template_file = File(exists=True, mandatory=True, desc="4-D template, one volume per network")
    labels_file = File(exists=True, desc="labels TSV of the template")
    method = traits.Enum("moo-icar", "dual-regression", usedefault=True,
                         desc="spatially constrained ICA (MOO-ICAR) or dual regression")
    resample_template = traits.Bool(False, usedefault=True,
                                    desc="resample a template on another grid to the BOLD grid")
    device = traits.Str("cpu", usedefault=True, desc="torch device")


class _BackReconstructOutputSpec(TraitedSpec):
    components_file = File(exists=True, desc="z-scored participant maps (4-D NIfTI)")
    timeseries_file = File(exists=True, desc="network time courses (TSV, one column per network)")
    scale = traits.Int(desc="model order of the template (number of networks)")
    meta = traits.Dict(desc="parameters for the JSON sidecars")


class BackReconstruct(SimpleInterface):
    """Back-reconstruct one participant's networks from a template."""

    input_spec = _BackReconstructInputSpec
    output_spec = _BackReconstructOutputSpec

    def _run_interface(self, runtime):
        from nilearn.image import resample_to_img
        from nilearn.maskers import NiftiMasker

        from pipeline.exceptions import InputDataError
        from pipeline.ica.backrecon import dual_regression
        from pipeline.ica.scica import SpatiallyConstrainedICA, zscore_maps
        from workflows.interfaces.denoise import load_denoised

        inputs = self.inputs
        mask = nb.load(inputs.mask_file)
        template = nb.load(inputs.template_file)
        if template.ndim != 4:
            raise InputDataError(
                f"{inputs.template_file} is {template.ndim}-D; a template must be 4-D "
                "(one volume per network)."
            )
        same_grid = template.shape[:3] == mask.shape[:3] and np.allclose(
            template.affine, mask.affine, atol=1e-3)
        if not same_grid:
            if not inputs.resample_template:
                raise InputDataError(
                    f"{inputs.template_file} (grid {template.shape[:3]}) is not on the BOLD grid "
                    f"of {inputs.mask_file} ({mask.shape[:3]}); pass --resample-template or "
                    "resample the template to the data grid."
                )
            template = resample_to_img(template, mask, interpolation="continuous",
                                       force_resample=True, copy_header=True)
        masker = NiftiMasker(mask_img=mask, standardize=None).fit()
        data = load_denoised(inputs.bold_file, mask)  # (n_volumes, n_voxels), float32
        maps_in = masker.transform(template)  # (n_networks, n_voxels)
        n_networks = maps_in.shape[0]
        labels = load_template_labels(
            inputs.labels_file if isdefined(inputs.labels_file) else None, n_networks)

        if inputs.method == "moo-icar":
            est = SpatiallyConstrainedICA(maps_in, zscore=True, device=inputs.device).fit(data)
            maps, timecourses = est.components_, est.timecourses_
            extra = {"NumberOfIterations": np.asarray(est.n_iter_).tolist(),
                     "Converged": np.asarray(est.converged_).tolist(),
                     "Objective": np.asarray(est.objective_).tolist(),
                     "Device": str(est.device_)}
        else:
            maps, timecourses = dual_regression(data, maps_in)
            maps, _ = zscore_maps(maps)
            extra = {"Device": "cpu"}

        cwd = Path(runtime.cwd)
        components_file = cwd / "components.nii.gz"
        masker.inverse_transform(maps.astype(np.float32)).to_filename(components_file)
        timeseries_file = cwd / "timeseries.tsv"
        pd.DataFrame(timecourses, columns=labels).to_csv(timeseries_file, sep="\t", index=False)
        self._results.update(
            components_file=str(components_file),
            timeseries_file=str(timeseries_file),
            scale=n_networks,
            meta={
                "Method": inputs.method,
                "Template": str(inputs.template_file),
                "TemplateResampled": not same_grid,
                "NumberOfNetworks": n_networks,
                "NetworkLabels": labels,
                "MapsScaling": "z-scores (GIFT: mean removed, divided by the standard deviation)",
                **extra,
            },
        )
        return runtime
