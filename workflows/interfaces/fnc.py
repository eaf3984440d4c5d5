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
    traits,
)

from pipeline.fnc.static import DEFAULT_FNC_MEASURE
from workflows.interfaces.base import MetaOutputSpec, given

__all__ = ["ComputeFNC", "compute_fnc"]

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
    measure = traits.Str(DEFAULT_FNC_MEASURE, usedefault=True,
                         desc="static-FNC measure, a key of pipeline.fnc.static.FNC_MEASURES")
    window = traits.Int(30, usedefault=True, desc="dFNC window length (TRs)")
    sigma = traits.Float(3.0, usedefault=True, desc="Gaussian taper sigma (TRs)")


class _ComputeFNCOutputSpec(MetaOutputSpec):
    relmat_file = File(exists=True, desc="multi-scale static FNC (Fisher z), labelled TSV")
    dfnc_file = File(exists=True, desc="sliding-window FNC (windows x pairs), TSV")


class ComputeFNC(SimpleInterface):
    """Post-process network time courses (GIFT defaults), then static and dynamic FNC."""

    input_spec = _ComputeFNCInputSpec
    output_spec = _ComputeFNCOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        self._results.update(compute_fnc(
            inputs.timeseries_files, inputs.scales, t_r=inputs.t_r, out_dir=Path(runtime.cwd),
            fnc_networks=given(inputs.fnc_networks), domains=given(inputs.domains),
            confounds_file=given(inputs.confounds_file), sample_mask=given(inputs.sample_mask),
            detrend_order=inputs.detrend_order, despike=inputs.despike,
            lowpass_hz=inputs.lowpass_hz, measure=inputs.measure, window=inputs.window,
            sigma=inputs.sigma))
        return runtime


def compute_fnc(
    timeseries_files: list[str],
    scales: list[int],
    *,
    t_r: float,
    out_dir: Path,
    fnc_networks: list[list[str]] | None = None,
    domains: list[list[str]] | None = None,
    confounds_file: str | None = None,
    sample_mask: list[int] | None = None,
    detrend_order: int = 3,
    despike: bool = True,
    lowpass_hz: float = 0.15,
    measure: str = DEFAULT_FNC_MEASURE,
    window: int = 30,
    sigma: float = 3.0,
) -> dict:
    """Post-process a run's network time courses, then its static and dynamic FNC.

    The work of :class:`ComputeFNC` (whose inputs document the parameters), for
    nodes that process many runs.

    Returns
    -------
    dict
        ``relmat_file`` and ``dfnc_file`` (``relmat.tsv`` and ``dfnc.tsv`` in
        ``out_dir``) and ``meta``, the parameters for their sidecars.
    """
    from pipeline.features import edge_labels
    from pipeline.fnc.dynamic import sliding_window_fnc
    from pipeline.fnc.static import FNC_MEASURES, StaticFNC
    from pipeline.fnc.timecourse import postprocess

    motion = None
    if confounds_file is not None:
        confounds = pd.read_csv(confounds_file, sep="\t", na_values="n/a")
        motion = confounds[_MOTION].to_numpy()
        if sample_mask:
            motion = motion[np.asarray(sample_mask)]
    cleaned: dict[int, np.ndarray] = {}
    labels: dict[int, list[str]] = {}
    node_domains: list[str] = []
    for index, (scale, tsv) in enumerate(zip(scales, timeseries_files)):
        table = pd.read_csv(tsv, sep="\t")
        domain_of = dict(zip(table.columns, domains[index])) if domains is not None else {}
        if fnc_networks is not None:
            table = table[fnc_networks[index]]
        labels[scale] = list(table.columns)
        node_domains += [domain_of.get(column, "") for column in table.columns]
        cleaned[scale] = postprocess(
            table.to_numpy(), t_r, detrend_order=detrend_order, despike=despike,
            lowpass_hz=lowpass_hz, motion=motion)
    est = StaticFNC(kind=measure, labels=labels).fit(cleaned)
    matrix = est.transform(cleaned)
    matrix = np.asarray(matrix).reshape(est.n_nodes_, est.n_nodes_)
    relmat_file = Path(out_dir) / "relmat.tsv"
    frame = pd.DataFrame(matrix, index=est.labels_, columns=est.labels_)
    frame.index.name = "node"
    frame.to_csv(relmat_file, sep="\t")

    stacked = np.hstack([cleaned[s] for s in est.scales_])
    windows = sliding_window_fnc(stacked, window=window, sigma=sigma)
    pair_names = edge_labels(est.labels_)
    dfnc_file = Path(out_dir) / "dfnc.tsv"
    pd.DataFrame(windows, columns=pair_names).to_csv(dfnc_file, sep="\t", index=False)
    return {
        "relmat_file": str(relmat_file),
        "dfnc_file": str(dfnc_file),
        "meta": {
            "Measure": FNC_MEASURES[est.kind].description,
            "Scales": list(est.scales_),
            "NodeLabels": list(est.labels_),
            "NodeDomains": node_domains,
            "PostProcessing": {
                "DetrendOrder": detrend_order,
                "Despike": despike,
                "LowPassHz": lowpass_hz,
                "MotionRegression": motion is not None,
            },
            "SlidingWindow": {"WindowTRs": window, "GaussianSigmaTRs": sigma, "StepTRs": 1},
            "RepetitionTime": t_r,
        },
    }
