"""Nipype interface around :func:`pipeline.denoise.denoise_bold`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = ["DenoiseBold"]


class _DenoiseBoldInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="preprocessed BOLD (fMRIPrep desc-preproc)")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    confounds_file = File(exists=True, desc="fMRIPrep confounds TSV (none with strategy 'none')")
    t_r = traits.Float(mandatory=True, desc="repetition time (s)")
    strategy = traits.Enum("simple", "scrubbing", "compcor", "none", usedefault=True)
    high_pass = traits.Float(desc="high-pass cut-off (Hz); undefined for none")
    low_pass = traits.Float(desc="low-pass cut-off (Hz); undefined for none")
    detrend = traits.Bool(True, usedefault=True, desc="remove each voxel's linear trend")
    standardize = traits.Bool(True, usedefault=True, desc="z-score each voxel")
    fd_threshold = traits.Float(0.5, usedefault=True, desc="FD threshold for scrubbing (mm)")
    min_volumes = traits.Int(50, usedefault=True, desc="fewest volumes accepted")


class _DenoiseBoldOutputSpec(TraitedSpec):
    qc_file = File(exists=True, desc="one-row QC table (TSV)")
    qc_meta = traits.Dict(desc="parameters of the denoising, for the JSON sidecar")
    denoised_file = File(exists=True, desc="denoised BOLD (in the work directory)")
    sample_mask = traits.List(traits.Int, desc="indices of the volumes kept")


class DenoiseBold(SimpleInterface):
    """Check the inputs of one run, denoise it with nilearn and tabulate QC."""

    input_spec = _DenoiseBoldInputSpec
    output_spec = _DenoiseBoldOutputSpec

    def _run_interface(self, runtime):
        from pipeline.denoise import denoise_bold
        from pipeline.image_checks import check_confounds, check_same_grid, load_bold, load_mask

        inputs = self.inputs
        bold = load_bold(inputs.bold_file, min_volumes=inputs.min_volumes)
        mask = load_mask(inputs.mask_file)
        check_same_grid(bold, mask, inputs.bold_file, inputs.mask_file)
        if isdefined(inputs.confounds_file):
            check_confounds(inputs.confounds_file, bold.shape[3], inputs.bold_file)
        result = denoise_bold(
            bold,
            mask,
            None if inputs.strategy == "none" else inputs.bold_file,
            strategy=inputs.strategy,
            t_r=inputs.t_r,
            high_pass=inputs.high_pass if isdefined(inputs.high_pass) else None,
            low_pass=inputs.low_pass if isdefined(inputs.low_pass) else None,
            detrend=inputs.detrend,
            standardize=inputs.standardize,
            fd_threshold=inputs.fd_threshold,
            min_volumes=inputs.min_volumes,
        )
        qc_file = Path(runtime.cwd) / "qc.tsv"
        pd.DataFrame([result.qc]).to_csv(qc_file, sep="\t", index=False, na_rep="n/a")
        self._results["qc_file"] = str(qc_file)
        self._results["qc_meta"] = json.loads(json.dumps(result.qc, default=str))
        out = Path(runtime.cwd) / "denoised_bold.nii.gz"
        result.img.to_filename(out)
        self._results["denoised_file"] = str(out)
        self._results["sample_mask"] = [int(i) for i in result.sample_mask]
        return runtime
