"""Nipype interface for per-participant back-reconstruction of a network template."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, traits

from pipeline.ica.backrecon import BACKRECON_METHODS
from workflows.interfaces.base import MetaOutputSpec, PipelineInterface, given

__all__ = ["BackReconstruct"]

LOGGER = logging.getLogger("msica.workflows")


def _report_convergence(result, labels: pd.Series, run_name: str, scale: int,
                        gift_compatible: bool, *, method: str) -> None:
    """One warning per run and scale naming the networks whose back-reconstruction did not converge.

    ``result`` is a :class:`pipeline.ica.backrecon.BackreconResult`; closed-form methods
    (``converged`` None) report nothing.
    """
    if result.converged is None:
        return
    bad = np.flatnonzero(~np.asarray(result.converged))
    if bad.size == 0:
        return
    names = ", ".join(labels.iloc[bad[:10]]) + (" ..." if bad.size > 10 else "")
    advice = ("GIFT's optimiser stops after 100 passes as GIFT does; drop --gift-compatible "
              "for msica's optimiser, which converges" if gift_compatible else
              "their maps are the last iterates, usually within a hair of the optimum")
    LOGGER.warning(
        "%s, scale %d: back-reconstruction (%s) did not converge for %d of %d networks (%s) "
        "after %d passes (largest final squared step %.3g); %s. The sidecar's 'Converged' lists "
        "every network.",
        run_name or "this run", scale, method, bad.size, len(labels), names,
        int(np.max(np.asarray(result.n_iter)[bad])),
        float(np.max(np.asarray(result.final_change)[bad])), advice)


class _BackReconstructInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="denoised 4-D BOLD")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    template_file = File(exists=True, mandatory=True, desc="4-D template, one volume per network")
    labels_file = File(exists=True, desc="labels TSV of the template")
    method = traits.Str("moo-icar", usedefault=True,
                        desc="back-reconstruction method, a key of "
                        "pipeline.ica.backrecon.BACKRECON_METHODS")
    resample_template = traits.Bool(False, usedefault=True,
                                    desc="resample a template on another grid to the BOLD grid")
    gift_compatible = traits.Bool(False, usedefault=True,
                                  desc="MOO-ICAR exactly as GIFT (icatb_gigicar); also write the "
                                  "maps in GIFT's scale")
    device = traits.Str("cpu", usedefault=True, desc="torch device")
    run_name = traits.Str("", usedefault=True,
                          desc="the run's input file name, for messages")


class _BackReconstructOutputSpec(MetaOutputSpec):
    components_file = File(exists=True, desc="z-scored participant maps (4-D NIfTI)")
    timeseries_file = File(exists=True, desc="network time courses (TSV, one column per network)")
    gift_components_file = File(desc="maps in GIFT's scale (gift_compatible only)")
    fnc_networks = traits.List(traits.Str, desc="labels of the networks that enter FNC")
    domains = traits.List(traits.Str, desc="functional domain of each network ('' if none)")
    scale = traits.Int(desc="model order of the template (number of networks)")


class BackReconstruct(PipelineInterface):
    """Back-reconstruct one participant's networks from a template."""

    input_spec = _BackReconstructInputSpec
    output_spec = _BackReconstructOutputSpec

    def _run_interface(self, runtime):
        from nilearn.image import resample_to_img
        from nilearn.maskers import NiftiMasker

        from pipeline.exceptions import InputDataError
        from pipeline.ica.scica import zscore_maps
        from pipeline.templates import read_template_labels
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
        # (n_volumes, n_voxels) in float64, the methods' dtype; they may overwrite it
        data = load_denoised(inputs.bold_file, mask, dtype=np.float64)
        maps_in = masker.transform(template)  # (n_networks, n_voxels)
        n_networks = maps_in.shape[0]
        labels_file = given(inputs.labels_file)
        labels = read_template_labels(labels_file, n_networks)

        result = BACKRECON_METHODS[inputs.method].run(
            data, maps_in, device=inputs.device, gift_compatible=inputs.gift_compatible)
        _report_convergence(result, labels["label"], inputs.run_name, n_networks,
                            inputs.gift_compatible, method=inputs.method)
        gift_maps, timecourses = result.maps, result.timecourses
        maps, _ = zscore_maps(gift_maps)

        cwd = Path(runtime.cwd)
        components_file = cwd / "components.nii.gz"
        masker.inverse_transform(maps.astype(np.float32)).to_filename(components_file)
        self._write_table(runtime, pd.DataFrame(timecourses, columns=labels["label"]),
                          "timeseries.tsv", "timeseries_file")
        if inputs.gift_compatible:
            gift_file = cwd / "gift_components.nii.gz"
            masker.inverse_transform(gift_maps.astype(np.float32)).to_filename(gift_file)
            self._results["gift_components_file"] = str(gift_file)
        self._results.update(
            components_file=str(components_file),
            scale=n_networks,
            fnc_networks=labels.loc[labels["in_fnc"], "label"].tolist(),
            domains=labels["domain"].tolist(),
            meta={
                "Method": inputs.method,
                "GIFTCompatible": bool(inputs.gift_compatible),
                "Template": str(inputs.template_file),
                "TemplateLabels": None if labels_file is None else str(labels_file),
                "TemplateResampled": not same_grid,
                "NumberOfNetworks": n_networks,
                "NetworkLabels": labels["label"].tolist(),
                "NetworkDomains": labels["domain"].tolist(),
                "NetworksInFNC": labels.loc[labels["in_fnc"], "label"].tolist(),
                "MapsScaling": "z-scores (GIFT's calibration 'Z-scores': mean removed, divided "
                "by the standard deviation); desc-gift maps, when written, are the method's "
                "output before scaling",
                **result.meta,
            },
        )
        return runtime
