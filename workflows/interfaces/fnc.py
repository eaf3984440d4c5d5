"""Nipype interface for one participant's static and dynamic FNC across scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = ["ComputeFNC"]

_MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


class _ComputeFNCInputSpec(BaseInterfaceInputSpec):
    timeseries_files = InputMultiObject(File(exists=True), mandatory=True,
                                        desc="network time courses, one TSV per scale")
    scales = traits.List(traits.Int, mandatory=True, desc="scale of each time-series file")
    fnc_networks = traits.List(traits.List(traits.Str),
                               desc="per scale, the columns that enter FNC (default: all)")
    domains = traits.List(traits.List(traits.Str),
                          desc="per scale, the domain of every column ('' if none)")
    t_r = traits.Float(mandatory=True, desc="repetition time (s)")
    confounds_file = File(exists=True, desc="fMRIPrep confounds TSV (motion regression)")
    sample_mask = traits.List(traits.Int, desc="volumes kept by scrubbing (indices)")
    detrend_order = traits.Int(3, usedefault=True)
    despike = traits.Bool(True, usedefault=True)
    lowpass_hz = traits.Float(0.15, usedefault=True)
    window = traits.Int(30, usedefault=True, desc="dFNC window length (TRs)")
    sigma = traits.Float(3.0, usedefault=True, desc="Gaussian taper sigma (TRs)")


class _ComputeFNCOutputSpec(TraitedSpec):
    relmat_file = File(exists=True, desc="multi-scale static FNC (Fisher z), labelled TSV")
    dfnc_file = File(exists=True, desc="sliding-window FNC (windows x pairs), TSV")
    meta = traits.Dict(desc="parameters for the JSON sidecars")


class ComputeFNC(SimpleInterface):
    """Post-process network time courses (GIFT defaults), then static and dynamic FNC."""

    input_spec = _ComputeFNCInputSpec
    output_spec = _ComputeFNCOutputSpec

    def _run_interface(self, runtime):
        from pipeline.features import edge_labels
        from pipeline.fnc.dynamic import sliding_window_fnc
        from pipeline.fnc.static import FNC_MEASURES, StaticFNC
        from pipeline.fnc.timecourse import postprocess

        inputs = self.inputs
        motion = None
        if isdefined(inputs.confounds_file):
            confounds = pd.read_csv(inputs.confounds_file, sep="\t", na_values="n/a")
            motion = confounds[_MOTION].to_numpy()
            if isdefined(inputs.sample_mask) and inputs.sample_mask:
                motion = motion[np.asarray(inputs.sample_mask)]
        cleaned: dict[int, np.ndarray] = {}
        labels: dict[int, list[str]] = {}
        node_domains: list[str] = []
        for index, (scale, tsv) in enumerate(zip(inputs.scales, inputs.timeseries_files)):
            table = pd.read_csv(tsv, sep="\t")
            domain_of = dict(zip(table.columns, inputs.domains[index])) if isdefined(
                inputs.domains) else {}
            if isdefined(inputs.fnc_networks):
                table = table[inputs.fnc_networks[index]]
            labels[scale] = list(table.columns)
            node_domains += [domain_of.get(column, "") for column in table.columns]
            cleaned[scale] = postprocess(
                table.to_numpy(), inputs.t_r, detrend_order=inputs.detrend_order,
                despike=inputs.despike, lowpass_hz=inputs.lowpass_hz, motion=motion)
        est = StaticFNC(labels=labels).fit(cleaned)
        matrix = est.transform(cleaned)
        matrix = np.asarray(matrix).reshape(est.n_nodes_, est.n_nodes_)
        cwd = Path(runtime.cwd)
        relmat_file = cwd / "relmat.tsv"
        frame = pd.DataFrame(matrix, index=est.labels_, columns=est.labels_)
        frame.index.name = "node"
        frame.to_csv(relmat_file, sep="\t")

        stacked = np.hstack([cleaned[s] for s in est.scales_])
        windows = sliding_window_fnc(stacked, window=inputs.window, sigma=inputs.sigma)
        pair_names = edge_labels(est.labels_)
        dfnc_file = cwd / "dfnc.tsv"
        pd.DataFrame(windows, columns=pair_names).to_csv(dfnc_file, sep="\t", index=False)
        self._results.update(
            relmat_file=str(relmat_file),
            dfnc_file=str(dfnc_file),
            meta={
                "Measure": FNC_MEASURES[est.kind].description,
                "Scales": list(est.scales_),
                "NodeLabels": list(est.labels_),
                "NodeDomains": node_domains,
                "PostProcessing": {
                    "DetrendOrder": inputs.detrend_order,
                    "Despike": inputs.despike,
                    "LowPassHz": inputs.lowpass_hz,
                    "MotionRegression": motion is not None,
                },
                "SlidingWindow": {"WindowTRs": inputs.window, "GaussianSigmaTRs": inputs.sigma,
                                  "StepTRs": 1},
                "RepetitionTime": inputs.t_r,
            },
        )
        return runtime
