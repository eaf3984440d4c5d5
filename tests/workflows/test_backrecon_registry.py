"""A back-reconstruction method is one registry entry and one function.

A toy method (a least-squares projection of each volume on the group maps) is
registered in :data:`pipeline.ica.backrecon.BACKRECON_METHODS` and run through the
command line and the participant workflow: its outputs, its sidecar, its methods
text and its reference appear with nothing else changed.
"""

from __future__ import annotations

import json

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from pipeline.ica.backrecon import BACKRECON_METHODS, BackreconMethod, BackreconResult
from workflows.cli import run
from workflows.cli.bids_app import build_parser
from workflows.exit_codes import ExitCode

pytestmark = pytest.mark.integration

REFERENCE = "Toy A. Projecting volumes on group maps. J Toy Methods. 2024;1:1."


def _least_squares(data, group_maps, *, device, gift_compatible):
    """Time courses by least squares on the maps; the maps are the group maps."""
    timecourses = np.linalg.lstsq(group_maps.T, data.T, rcond=None)[0].T
    return BackreconResult(maps=np.array(group_maps, dtype=float), timecourses=timecourses,
                           meta={"Device": "cpu", "Toy": True,
                                 "TimeseriesScaling": "least-squares coefficients"})


TOY = BackreconMethod(
    name="least-squares",
    run=_least_squares,
    summary="a toy projection",
    description="a least-squares projection on the group maps (@toy_projection)",
    references={"toy_projection": REFERENCE},
)


@pytest.fixture
def toy_method(monkeypatch):
    monkeypatch.setitem(BACKRECON_METHODS, TOY.name, TOY)
    return TOY


def test_cli_offers_registered_methods_only(toy_method, monkeypatch):
    action = next(a for a in build_parser()._actions if a.dest == "backrecon_method")
    assert list(action.choices) == ["moo-icar", "dual-regression", "least-squares"]
    assert "least-squares: a toy projection" in action.help
    monkeypatch.delitem(BACKRECON_METHODS, TOY.name)
    action = next(a for a in build_parser()._actions if a.dest == "backrecon_method")
    assert "least-squares" not in action.choices


def test_toy_method_runs_through_the_participant_workflow(toy_method, tmp_path):
    from workflows.bids.simulated import run_simulate, truth_templates

    bids = run_simulate(tmp_path / "bids", n_subjects=4, n_sites=1, n_volumes=60, tr=2.0,
                        grid_mm=12.0, seed=5)
    out = tmp_path / "out"
    argv = [str(bids), str(out), "participant", "-w", str(tmp_path / "work"),
            "--plugin", "Linear", "--participant-label", "01", "--backrecon-method",
            "least-squares"]
    templates = truth_templates(bids)
    for template, labels in templates:
        argv += ["--template", str(template), "--template-labels", str(labels)]
    assert run(argv) == ExitCode.OK

    func = out / "sub-01" / "func"
    for template, _ in templates:
        scale = nb.load(template).shape[3]
        maps = next(func.glob(f"*_scale-{scale}_desc-ica_components.nii.gz"))
        assert nb.load(maps).shape[3] == scale
        sidecar = json.loads(maps.with_name(maps.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["Method"] == "least-squares" and sidecar["Toy"] is True
        tcs = pd.read_csv(next(func.glob(f"*_scale-{scale}_desc-ica_timeseries.tsv")), sep="\t")
        assert tcs.shape == (60, scale)
    n_nodes = sum(nb.load(t).shape[3] for t, _ in templates)
    relmat = pd.read_csv(next(func.glob("*_desc-multiscale_relmat.tsv")), sep="\t", index_col=0)
    assert relmat.shape == (n_nodes, n_nodes)

    citation = (out / "logs" / "CITATION.md").read_text()
    assert "by a least-squares projection on the group maps (@toy_projection)" in citation
    assert "MOO-ICAR" not in citation
    report = (out / "sub-01.html").read_text()
    assert REFERENCE in report and "@toy_projection" not in report
