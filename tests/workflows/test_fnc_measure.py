"""``--fnc-measure``: the static-FNC measure is one registry entry, chosen on the command line.

The option reaches the participant level's relmat files, sidecars and methods text
(template mode); a toy measure registered in :data:`pipeline.fnc.static.FNC_MEASURES`
is offered by the command line and computed by :class:`ComputeFNC` with nothing else
changed. The data-driven group level is checked in test_data_driven.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.fnc.static import FNC_MEASURES, FNCMeasure, StaticFNC, fisher_z
from pipeline.fnc.timecourse import postprocess
from workflows.cli import run
from workflows.cli.bids_app import build_parser
from workflows.exit_codes import ExitCode
from workflows.interfaces.fnc import ComputeFNC
from workflows.participant.networks import NetworkOptions, init_networks_wf

MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
REFERENCE = "Toy A. Covariance as connectivity. J Toy Methods. 2024;1:2."


def _covariance(runs, shrinkage):
    """Toy measure: Fisher z of the covariances clipped to (-1, 1), zero diagonal."""
    mats = np.stack([np.clip(np.cov(run, rowvar=False), -0.99, 0.99) for run in runs])
    idx = np.arange(mats.shape[1])
    mats[:, idx, idx] = 0.0
    return fisher_z(mats)


TOY = FNCMeasure(name="toy-covariance", compute=_covariance,
                 description="clipped covariance, Fisher z, zero diagonal",
                 summary="clipped covariance (@toy_covariance)",
                 references={"toy_covariance": REFERENCE})


@pytest.fixture
def toy_measure(monkeypatch):
    monkeypatch.setitem(FNC_MEASURES, TOY.name, TOY)
    return TOY


def _action(dest: str):
    return next(a for a in build_parser()._actions if a.dest == dest)


def test_cli_offers_the_registered_measures(toy_measure, monkeypatch):
    action = _action("fnc_measure")
    assert list(action.choices) == ["correlation", "partial correlation", "toy-covariance"]
    assert action.default == "correlation"
    assert "toy-covariance: clipped covariance, Fisher z, zero diagonal" in action.help
    monkeypatch.delitem(FNC_MEASURES, TOY.name)
    assert "toy-covariance" not in _action("fnc_measure").choices


def test_toy_measure_is_computed_described_and_cited(toy_measure, tmp_path):
    rng = np.random.default_rng(0)
    tcs = {4: rng.standard_normal((50, 4)), 6: rng.standard_normal((50, 6))}
    files = []
    for scale, values in tcs.items():
        files.append(tmp_path / f"scale-{scale}.tsv")
        pd.DataFrame(values, columns=[f"N{i + 1}" for i in range(scale)]).to_csv(
            files[-1], sep="\t", index=False)
    result = ComputeFNC(timeseries_files=[str(f) for f in files], scales=list(tcs), t_r=2.0,
                        measure=TOY.name, window=20).run(cwd=str(tmp_path))
    relmat = pd.read_csv(result.outputs.relmat_file, sep="\t", index_col=0)
    cleaned = [np.hstack([postprocess(v, 2.0) for v in tcs.values()])]
    np.testing.assert_allclose(relmat.to_numpy(), _covariance(cleaned, False)[0])
    assert result.outputs.meta["Measure"] == TOY.description

    for name in ("mask.nii.gz", "t4.nii.gz"):
        (tmp_path / name).touch()  # the graph is built, not run
    workflow = init_networks_wf(bold_file="bold.nii.gz", mask_file=str(tmp_path / "mask.nii.gz"),
                                confounds_file="", t_r=2.0,
                                templates=[(tmp_path / "t4.nii.gz", None)],
                                options=NetworkOptions(fnc_measure=TOY.name))
    assert "static FNC (clipped covariance (@toy_covariance))" in workflow.__desc__
    assert workflow.get_node("fnc").inputs.measure == TOY.name
    from workflows.reports.boilerplate import all_references

    assert all_references()["toy_covariance"] == REFERENCE


@pytest.mark.integration
def test_partial_correlation_reaches_the_relmat_files(tmp_path):
    from workflows.bids.simulated import run_simulate, truth_templates

    bids = run_simulate(tmp_path / "bids", n_subjects=4, n_sites=1, n_volumes=60, tr=2.0,
                        grid_mm=12.0, seed=5)
    out = tmp_path / "out"
    argv = [str(bids), str(out), "participant", "-w", str(tmp_path / "work"),
            "--plugin", "Linear", "--participant-label", "01",
            "--backrecon-method", "dual-regression", "--fnc-measure", "partial correlation"]
    for template, labels in truth_templates(bids):
        argv += ["--template", str(template), "--template-labels", str(labels)]
    assert run(argv) == ExitCode.OK

    func = out / "sub-01" / "func"
    relmat_file = next(func.glob("*_desc-multiscale_relmat.tsv"))
    relmat = pd.read_csv(relmat_file, sep="\t", index_col=0)
    sidecar = json.loads(relmat_file.with_suffix(".json").read_text())
    assert sidecar["Measure"] == FNC_MEASURES["partial correlation"].description
    confounds = next((bids / "derivatives" / "fmriprep" / "sub-01" / "func").glob(
        "*_desc-confounds_timeseries.tsv"))
    motion = pd.read_csv(confounds, sep="\t")[MOTION].to_numpy()
    tables = {scale: pd.read_csv(next(func.glob(f"*_scale-{scale}_desc-ica_timeseries.tsv")),
                                 sep="\t") for scale in sidecar["Scales"]}
    cleaned = {scale: postprocess(table.to_numpy(), 2.0, motion=motion)
               for scale, table in tables.items()}
    labels = {scale: list(table.columns) for scale, table in tables.items()}
    partial = StaticFNC(kind="partial correlation", labels=labels).fit(cleaned)
    assert list(relmat.columns) == partial.labels_
    pearson = StaticFNC(kind="correlation").fit_transform(cleaned)
    partial = partial.transform(cleaned)
    np.testing.assert_allclose(relmat.to_numpy(), partial, atol=1e-10)
    assert np.abs(relmat.to_numpy() - pearson).max() > 0.1
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "static FNC (partial correlation, Fisher z)" in citation
    recorded = next((out / "logs").glob("msica-*.toml")).read_text()
    assert 'fnc_measure = "partial correlation"' in recorded
