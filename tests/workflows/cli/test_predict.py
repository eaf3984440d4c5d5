"""msica predict: a model saved by a training run scores new participants, or refuses clearly."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.classify.analysis import classify_target
from pipeline.classify.persistence import save_model
from workflows.exit_codes import ExitCode
from workflows.cli import run
from workflows.interfaces.features import read_fnc_features

RANDOM_STATE = 42
LABELS = ["s2-N1", "s2-N2", "s4-N1", "s4-N2", "s4-N3"]


def _write_relmats(root: Path, ids: list[str], diagnosis: list[str], rng) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "msica", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "msica"}]}))
    for pid, dx in zip(ids, diagnosis):
        z = rng.normal(0, 0.2, (5, 5))
        z = (z + z.T) / 2
        z[0, 2] = z[2, 0] = 0.8 if dx == "patient" else -0.2  # planted edge s2-N1__s4-N1
        np.fill_diagonal(z, 0)
        func = root / pid / "func"
        func.mkdir(parents=True)
        frame = pd.DataFrame(z, index=pd.Index(LABELS, name="node"), columns=LABELS)
        frame.to_csv(func / f"{pid}_task-rest_desc-multiscale_relmat.tsv", sep="\t")


def _train_model(tmp_path: Path, rng, n: int, *, keep_sites: bool = False,
                 **classify_kwargs) -> Path:
    """Train on ``n`` participants of two sites; return the saved model (``sites`` if kept)."""
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    dx = ["patient", "control"] * (n // 2)
    participants = pd.DataFrame({"participant_id": ids, "diagnosis": dx,
                                 "site": ["a"] * (n // 2) + ["b"] * (n // 2)})
    train_out = tmp_path / "train"
    _write_relmats(train_out, ids, dx, rng)
    table, _ = read_fnc_features(sorted(str(p) for p in train_out.rglob("*_relmat.tsv")))
    outcome = classify_target(table, participants, "diagnosis", confounds=(), random_state=0,
                              n_bootstrap=10, **classify_kwargs)
    model = tmp_path / "desc-diagnosis_model.skops"
    save_model(outcome.final_model, model, feature_names=outcome.feature_names,
               target="diagnosis", X=outcome.X, y=outcome.target.y.to_numpy(),
               sites=outcome.sites if keep_sites else None)
    return model


def _new_participants(tmp_path: Path, rng, numbers: range,
                      **columns) -> tuple[Path, Path, dict[str, str]]:
    """A BIDS folder with participants.tsv and their derivatives; returns the true diagnoses."""
    ids = [f"sub-{i:02d}" for i in numbers]
    dx = ["patient", "control"] * (len(ids) // 2)
    bids = tmp_path / "newbids"
    bids.mkdir()
    pd.DataFrame({"participant_id": ids, "diagnosis": dx, **columns}).to_csv(
        bids / "participants.tsv", sep="\t", index=False)
    out = tmp_path / "new"
    _write_relmats(out, ids, dx, rng)
    return bids, out, dict(zip(ids, dx))


@pytest.fixture
def trained(tmp_path):
    rng = np.random.default_rng(RANDOM_STATE)
    model = _train_model(tmp_path, rng, 24)
    return model, *_new_participants(tmp_path, rng, range(30, 36))


def test_predict_scores_new_participants(trained):
    model, bids, out, truth = trained
    assert run(["predict", str(bids), str(out), "--model", str(model)]) == ExitCode.OK
    table = pd.read_csv(out / "group" / "desc-diagnosisscored_predictions.tsv", sep="\t",
                        index_col="participant_id")
    assert sorted(table.index) == sorted(truth)
    assert (table["prediction"] == pd.Series(truth)).mean() >= 5 / 6  # planted edge is strong
    sidecar = json.loads((out / "group" / "desc-diagnosisscored_predictions.json").read_text())
    assert sidecar["Target"] == "diagnosis"
    assert len(sidecar["TrainingDataSHA256"]) == 64


def test_predict_refuses_other_features(trained, capsys):
    model, bids, out, _ = trained
    for path in out.rglob("*_relmat.tsv"):  # the new participants lack one network
        frame = pd.read_csv(path, sep="\t", index_col=0).iloc[:-1, :-1]
        frame.to_csv(path, sep="\t")
    assert run(["predict", str(bids), str(out), "--model", str(model)]) == ExitCode.DATA
    assert "features do not match the saved model" in capsys.readouterr().err


def test_predict_refuses_other_version(trained, capsys):
    model, bids, out, _ = trained
    sidecar = model.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["msica_version"] = "0.0.1"
    sidecar.write_text(json.dumps(meta))
    assert run(["predict", str(bids), str(out), "--model", str(model)]) == ExitCode.DATA
    assert "msica_version='0.0.1'" in capsys.readouterr().err


def test_predict_missing_model(trained, tmp_path, capsys):
    _, bids, out, _ = trained
    code = run(["predict", str(bids), str(out), "--model", str(tmp_path / "nope.skops")])
    assert code == ExitCode.NO_INPUT
    assert "nope.skops" in capsys.readouterr().err


class _Payload:
    """Unpickling this creates ``marker`` (what a malicious joblib model would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


@pytest.mark.parametrize("name", ["desc-diagnosis_model.joblib", "desc-diagnosis_model.skops"])
def test_predict_refuses_malicious_model_and_runs_nothing(trained, tmp_path, capsys, name):
    import pickle

    from pipeline.classify.persistence import file_hash

    model, bids, out, _ = trained
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil" / name
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps(_Payload(marker)))  # a model "received from another site"
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["model_sha256"] = file_hash(evil)  # a forged sidecar that matches
    evil.with_suffix(".json").write_text(json.dumps(meta))
    assert run(["predict", str(bids), str(out), "--model", str(evil)]) == ExitCode.DATA
    err = capsys.readouterr().err
    assert "not a msica model file" in err and "can run code" in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("msica: error:")]) == 1
    assert not marker.exists()
    assert not (out / "group").exists()  # nothing written


def test_predict_harmonized_model_on_a_new_site(tmp_path):
    rng = np.random.default_rng(RANDOM_STATE)
    model = _train_model(tmp_path, rng, 40, keep_sites=True, harmonize="combat", n_splits=2,
                         inner_cv=2, baseline=False)
    bids, out, truth = _new_participants(tmp_path, rng, range(50, 62), site="c")
    assert run(["predict", str(bids), str(out), "--model", str(model)]) == ExitCode.OK
    scored = pd.read_csv(out / "group" / "desc-diagnosisscored_predictions.tsv", sep="\t",
                         index_col="participant_id")
    assert (scored["site"] == "c").all() and not scored["site_seen_in_training"].any()
    assert (scored["prediction"] == pd.Series(truth)).mean() >= 0.75
