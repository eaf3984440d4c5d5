"""Where the group level's derivatives are written (the sinks), apart from the science.

Each builder of :mod:`.base` exposes its results on an ``outputnode``; the top-level
builder connects them to the sinks built here, as fMRIPrep's ``outputs.py`` does.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.classify.persistence import MODEL_EXTENSION
from workflows._docs import fill_doc
from workflows.bids.naming import target_tag
from workflows.bids.sink import SinkSpecs, init_sinks_wf
from workflows.execution.engine import Workflow

__all__ = ["group_outputs", "init_group_outputs_wf"]

_TSV = {"extension": ".tsv"}
_FIGURE = {"datatype": "figures", "extension": ".svg"}


def group_outputs(concern: str, target: str | None = None) -> SinkSpecs:
    """The derivatives of one concern of the group level.

    Parameters
    ----------
    concern : {"qc", "fnc_table", "timecourse_table", "dfnc_states", "classify", "introspect"}
        The builder of :mod:`workflows.group.base` whose outputs are written.
    target : str, optional
        The classified participants.tsv column (``classify`` and ``introspect``).

    Returns
    -------
    dict
        ``{outputnode field: (sidecar field or None, entities)}``, see
        :func:`workflows.bids.sink.init_sinks_wf`.

    Examples
    --------
    >>> group_outputs("classify", "diagnosis")["model_file"]
    ('model_meta', {'desc': 'diagnosis', 'suffix': 'model', 'extension': '.skops'})
    """
    tag = target_tag(target) if target is not None else None
    outputs: dict[str, SinkSpecs] = {
        "qc": {"out_file": (None, {"desc": "denoise", "suffix": "qc", **_TSV})},
        "fnc_table": {"out_file": ("meta", {"desc": "fnc", "suffix": "features", **_TSV})},
        "timecourse_table": {
            "out_file": ("meta", {"desc": "timecourse", "suffix": "features", **_TSV})},
        "dfnc_states": {
            "states_file": ("meta", {"desc": "dfncstates", "suffix": "relmat", **_TSV}),
            "metrics_file": ("meta", {"desc": "dfnc", "suffix": "features", **_TSV}),
        },
        "classify": {
            "metrics_file": ("meta", {"desc": tag, "suffix": "metrics", **_TSV}),
            "site_metrics_file": ("meta", {"desc": f"{tag}persite", "suffix": "metrics", **_TSV}),
            "predictions_file": ("meta", {"desc": tag, "suffix": "predictions", **_TSV}),
            "biomarkers_file": ("meta", {"desc": f"{tag}biomarkers", "suffix": "features",
                                         **_TSV}),
            # the model's own sidecar
            "model_file": ("model_meta", {"desc": tag, "suffix": "model",
                                          "extension": MODEL_EXTENSION}),
            "calibration_file": ("meta", {"desc": f"{tag}calibration", "suffix": "metrics",
                                          **_TSV}),
            "figure_file": ("meta", {"desc": f"{tag}biomarkers", "suffix": "features",
                                     **_FIGURE}),
        },
        "introspect": {
            "spectra_file": ("meta", {"desc": f"{tag}introspect", "suffix": "spectrum", **_TSV}),
            "summary_file": ("meta", {"desc": f"{tag}introspectsummary", "suffix": "spectrum",
                                      **_TSV}),
            "figure_file": ("meta", {"desc": f"{tag}introspect", "suffix": "spectrum",
                                     **_FIGURE}),
        },
    }
    return outputs[concern]


@fill_doc
def init_group_outputs_wf(
    *,
    output_dir: Path,
    concern: str,
    sources: list[str],
    target: str | None = None,
    name: str,
) -> Workflow:
    """Write one concern's group derivatives (:func:`group_outputs`) with their sidecars.

    Parameters
    ----------
    %(output_dir)s
    concern : str
        A concern of :func:`group_outputs`.
    sources : list of str
        The participant derivatives the outputs come from (the sidecars' ``Sources``).
    target : str, optional
        The classified column (``classify`` and ``introspect``).
    %(wf_name)s

    Inputs
    ------
    <file field>, <sidecar field>
        The fields of the concern's builder's outputnode that :func:`group_outputs`
        names.

    Outputs
    -------
    <file field>
        Where each file was written.
    """
    return init_sinks_wf(output_dir=output_dir, outputs=group_outputs(concern, target),
                         sources=sources, name=name)
