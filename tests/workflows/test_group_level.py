"""The group-level workflow built from participant derivatives on disk (not run here)."""

from __future__ import annotations

import json

import pandas as pd

from workflows.group.base import build_group_wf


def _derivatives(root, trs: dict[str, float]):
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "msica", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    for label, t_r in trs.items():
        func = root / f"sub-{label}" / "func"
        func.mkdir(parents=True)
        pd.DataFrame([{"n_volumes": 100, "n_volumes_kept": 100, "t_r": t_r}]).to_csv(
            func / f"sub-{label}_task-rest_desc-denoise_qc.tsv", sep="\t", index=False)
    return root


def test_mixed_repetition_times_are_warned_with_their_groups(tmp_path, caplog):
    out = _derivatives(tmp_path / "out", {"01": 2.0, "02": 2.0, "03": 2.5})
    with caplog.at_level("WARNING", logger="msica.workflows"):
        workflow = build_group_wf(output_dir=out, bids_dir=tmp_path / "bids")
    assert "gather_qc" in workflow.list_node_names()
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("Runs have different repetition times: 2 s (2 participants: "
                              "sub-01, sub-02), 2.5 s (1 participant: sub-03).")
    assert "--dfnc-window" in message and "--participant-label" in message


def test_one_repetition_time_is_not_warned(tmp_path, caplog):
    out = _derivatives(tmp_path / "out", {"01": 2.0, "02": 2.0})
    with caplog.at_level("WARNING", logger="msica.workflows"):
        build_group_wf(output_dir=out, bids_dir=tmp_path / "bids", participant_label=["01"])
    assert not caplog.records
