"""``sites_command`` (the ``msica sites`` entry point) end to end, small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workflows.cli.sites import load_feature_table, sites_command, split_sites


def test_sites_command_from_feature_table(tmp_path, capsys):
    rng = np.random.RandomState(0)
    n = 40
    diagnosis = np.where(np.arange(n) % 2 == 0, "patient", "control")
    X = rng.randn(n, 6)
    X[:, 0] += 2.5 * (diagnosis == "patient")  # planted, easy
    table = pd.DataFrame(X, columns=[f"n{i}__n{i + 1}" for i in range(6)])
    table.insert(0, "diagnosis", diagnosis)
    table.insert(0, "site", np.where(np.arange(n) < 20, "A", "B"))
    table.insert(0, "participant_id", [f"sub-{i:02d}" for i in range(n)])
    path = tmp_path / "desc-fnc_features.tsv"
    table.to_csv(path, sep="\t", index=False)
    out = tmp_path / "summary.tsv"
    rc = sites_command(["--features", str(path), "--epochs", "15", "--batch-size", "4",
                            "--lr", "0.3",
                            "--hidden", "8", "--rank", "1", "--out", str(out), "--timeout", "120"])
    assert rc == 0
    summary = pd.read_csv(out, sep="\t")
    assert list(summary["mode"]) == ["dsgd", "dad", "rankdad"]
    assert (summary["test_accuracy"] >= 0.8).all()
    bytes_ = summary.set_index("mode")["bytes_per_step_per_site"]
    # 6 -> 8 -> 2 MLP, float32, B = 4, r = 1
    assert bytes_["dsgd"] == 4 * (8 * 7 + 2 * 9)
    assert bytes_["dad"] == 4 * 4 * ((7 + 8) + (9 + 2))
    assert bytes_["rankdad"] == 4 * ((7 + 8) + (9 + 2))
    assert "2 sites (A, B)" in capsys.readouterr().out


def test_sites_command_reports_missing_file(tmp_path, capsys):
    assert sites_command(["--features", str(tmp_path / "none.tsv")]) == 66
    assert "no file at" in capsys.readouterr().err


def test_feature_table_needs_site_and_label(tmp_path):
    path = tmp_path / "t.tsv"
    pd.DataFrame({"participant_id": ["a", "b"], "x__y": [0.1, 0.2]}).to_csv(path, sep="\t",
                                                                          index=False)
    with pytest.raises(ValueError, match="must have columns 'site', 'diagnosis'"):
        load_feature_table(path, "diagnosis")


def test_split_sites_needs_two_classes():
    table = pd.DataFrame({"site": ["A"] * 4, "diagnosis": ["patient"] * 4, "a__b": np.arange(4.0)})
    with pytest.raises(ValueError, match="one class only"):
        split_sites(table, 0.25, 0)
