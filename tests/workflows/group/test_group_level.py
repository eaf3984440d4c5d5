"""The group-level workflow built from participant derivatives on disk (not run here)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from workflows.group.base import init_msica_group_wf


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
        workflow = init_msica_group_wf(output_dir=out, bids_dir=tmp_path / "bids")
    assert "qc_wf.gather_qc" in workflow.list_node_names()
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("Runs have different repetition times: 2 s (2 participants: "
                              "sub-01, sub-02), 2.5 s (1 participant: sub-03).")
    assert "--dfnc-window" in message and "--participant-label" in message


def test_one_repetition_time_is_not_warned(tmp_path, caplog):
    out = _derivatives(tmp_path / "out", {"01": 2.0, "02": 2.0})
    with caplog.at_level("WARNING", logger="msica.workflows"):
        init_msica_group_wf(output_dir=out, bids_dir=tmp_path / "bids", participant_label=["01"])
    assert not caplog.records


def test_dfnc_states_sidecar_records_the_state_count_rule(tmp_path):
    import numpy as np

    from workflows.interfaces.features import DFNCStates

    rng = np.random.default_rng(0)
    files = []
    for label in ("01", "02", "03"):  # 3 x 40 windows: the rule caps candidates at 120 // 20
        path = tmp_path / f"sub-{label}_task-rest_desc-dfnc_timeseries.tsv"
        pd.DataFrame(rng.standard_normal((40, 6)),
                     columns=[f"s4-N{i}__s4-N{i + 1}" for i in range(6)]).to_csv(
            path, sep="\t", index=False)
        files.append(str(path))
    (tmp_path / "node").mkdir()
    meta = DFNCStates(dfnc_files=files).run(cwd=str(tmp_path / "node")).outputs.meta
    assert meta["StatesChosenBy"] == "elbow" and meta["MaxStates"] == 8
    assert meta["MinWindowsPerState"] == 20 and meta["CandidateStates"] == [2, 3, 4, 5, 6]
    assert meta["NumberOfStates"] in meta["CandidateStates"]
    given = DFNCStates(dfnc_files=files, n_states=2).run(cwd=str(tmp_path / "node")).outputs.meta
    assert given["StatesChosenBy"] == "given" and "CandidateStates" not in given


def test_dfnc_windows_read_into_one_array_or_a_list_for_unequal_runs(tmp_path):
    import numpy as np

    from workflows.interfaces.features import read_dfnc_windows

    rng = np.random.default_rng(0)
    columns = ["s4-N1__s4-N2", "s4-N1__s4-N3"]
    tables = [rng.standard_normal((n, 2)) for n in (5, 5, 7)]
    files = []
    for label, table in zip(("01", "02", "03"), tables):
        path = tmp_path / f"sub-{label}_task-rest_desc-dfnc_timeseries.tsv"
        pd.DataFrame(table, columns=columns).to_csv(path, sep="\t", index=False)
        files.append(str(path))
    same, names = read_dfnc_windows(files[:2])
    assert names == columns and isinstance(same, np.ndarray) and same.shape == (2, 5, 2)
    np.testing.assert_allclose(same, np.stack(tables[:2]))
    mixed, _ = read_dfnc_windows(files)
    assert [run.shape for run in mixed] == [(5, 2), (5, 2), (7, 2)]
    for run, table in zip(mixed, tables, strict=True):
        np.testing.assert_allclose(run, table)


def test_run_timecourses_read_with_their_fnc_sidecars(tmp_path):
    import numpy as np
    import pytest

    from pipeline.exceptions import InputDataError
    from workflows.interfaces.features import read_run_timecourses

    rng = np.random.default_rng(0)
    timeseries, relmats = [], []
    for label, t_r in (("02", 2.5), ("01", 2.0)):
        func = tmp_path / f"sub-{label}" / "func"
        func.mkdir(parents=True)
        prefix = f"sub-{label}_task-rest"
        for scale, n in ((10, 3), (4, 2)):
            path = func / f"{prefix}_scale-{scale}_desc-ica_timeseries.tsv"
            pd.DataFrame(rng.standard_normal((50, n)),
                         columns=[f"N{i + 1}" for i in range(n)]).to_csv(path, sep="\t",
                                                                         index=False)
            timeseries.append(str(path))
        relmat = func / f"{prefix}_desc-multiscale_relmat.tsv"
        relmat.write_text("node\n")
        relmat.with_suffix(".json").write_text(json.dumps(
            {"RepetitionTime": t_r, "PostProcessing": {"DetrendOrder": 2, "Despike": False,
                                                      "LowPassHz": 0.1}}))
        relmats.append(str(relmat))
    runs = list(read_run_timecourses(timeseries, relmats))
    assert [r.participant_id for r in runs] == ["sub-01", "sub-02"]
    assert [r.t_r for r in runs] == [2.0, 2.5] and runs[0].detrend_order == 2
    assert runs[0].despike is False and runs[0].lowpass_hz == 0.1
    assert runs[0].node_labels() == ["s4-N1", "s4-N2", "s10-N1", "s10-N2", "s10-N3"]
    assert runs[0].source.endswith("sub-01_task-rest_scale-4_desc-ica_timeseries.tsv")
    with pytest.raises(InputDataError, match=r"sub-01_task-rest_scale-10_desc-ica_timeseries.tsv "
                                             r"has no multi-scale FNC matrix of the same run"):
        list(read_run_timecourses(timeseries, relmats[:1]))
    Path(relmats[1]).with_suffix(".json").write_text(json.dumps({"PostProcessing": {}}))
    with pytest.raises(InputDataError, match=r"sub-01_task-rest_desc-multiscale_relmat.tsv: its "
                                             r"sidecar has no valid RepetitionTime"):
        list(read_run_timecourses(timeseries, relmats))
    Path(relmats[1]).with_suffix(".json").unlink()
    with pytest.raises(InputDataError, match=r"sub-01_task-rest_desc-multiscale_relmat.json is "
                                             r"missing; rerun"):
        list(read_run_timecourses(timeseries, relmats))


def test_fnc_table_refuses_runs_of_different_measures(tmp_path):
    import numpy as np

    from pipeline.exceptions import InputDataError
    from workflows.interfaces.features import read_fnc_features

    files = []
    for label, measure in (("01", "Pearson correlation"), ("02", "Pearson correlation"),
                           ("03", "partial correlation")):
        path = tmp_path / f"sub-{label}_task-rest_desc-multiscale_relmat.tsv"
        pd.DataFrame(np.eye(3), index=["s4-N1", "s4-N2", "s4-N3"],
                     columns=["s4-N1", "s4-N2", "s4-N3"]).to_csv(path, sep="\t")
        path.with_suffix(".json").write_text(json.dumps({"Measure": measure}))
        files.append(str(path))
    table, _ = read_fnc_features(files[:2])
    assert list(table.index) == ["sub-01", "sub-02"]
    with pytest.raises(InputDataError, match=r"sub-03_.*holds partial correlation, "
                                             r"sub-01_.*Pearson correlation; rerun"):
        read_fnc_features(files)
