"""The data-driven group level's graph does not grow with the number of runs (issue 15, item 3).

The graph is built, not run; the outputs of the chunked back-reconstruction and FNC are
tested end to end in test_data_driven.py.
"""

import json
from pathlib import Path

import pytest

from pipeline.exceptions import InputDataError
from workflows.group.groupica import CHUNKS_PER_PROCESS, chunk_runs, init_group_ica_wf

ORDERS = (4, 10)


def _pca_files(root: Path, n_runs: int) -> list[Path]:
    """Stand-ins of subject PCAs: empty ``.npz`` files with the sidecar the builder reads."""
    files = []
    for index in range(n_runs):
        path = root / f"sub-{index:03d}_task-rest_desc-pca.npz"
        path.touch()
        path.with_suffix(".json").write_text(json.dumps({
            "Subject": f"{index:03d}", "RepetitionTime": 2.0,
            "SourceFile": f"/d/sub-{index:03d}_task-rest_desc-preproc_bold.nii.gz"}))
        files.append(path)
    return files


def _nodes(tmp_path: Path, n_runs: int, nprocs: int) -> list:
    folder = tmp_path / f"{n_runs}-{nprocs}"
    folder.mkdir()
    workflow = init_group_ica_wf(pca_files=_pca_files(folder, n_runs), output_dir=tmp_path,
                                 model_orders=ORDERS, nprocs=nprocs)
    return workflow._get_all_nodes()


@pytest.mark.parametrize("nprocs", [1, 2])
def test_graph_size_does_not_depend_on_the_number_of_runs(tmp_path, nprocs):
    n_chunks = CHUNKS_PER_PROCESS * nprocs
    small, large = _nodes(tmp_path, n_chunks + 1, nprocs), _nodes(tmp_path, 40, nprocs)
    assert len(small) == len(large)
    # group ICA, its labels sink, 4 nodes per scale (2 picks, 2 sinks), one node per chunk
    assert len(large) == 2 + 4 * len(ORDERS) + n_chunks
    chunks = sorted((node for node in large if node.name.startswith("networks_fnc_")),
                    key=lambda node: int(node.name.rsplit("_", 1)[1]))
    runs = [index for node in chunks for index in node.inputs.run_indices]
    assert runs == list(range(40))  # every run once, in the group ICA's order
    assert [Path(f).name for node in chunks for f in node.inputs.pca_files] == [
        f"sub-{index:03d}_task-rest_desc-pca.npz" for index in range(40)]


@pytest.mark.parametrize(("n_runs", "nprocs"), [(1, 1), (2, 4), (7, 1), (40, 2), (1000, 3)])
def test_chunks_cover_every_run_once_and_are_balanced(n_runs, nprocs):
    chunks = chunk_runs(n_runs, nprocs)
    assert len(chunks) == min(n_runs, CHUNKS_PER_PROCESS * nprocs)
    assert [index for chunk in chunks for index in chunk] == list(range(n_runs))
    sizes = [len(chunk) for chunk in chunks]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_a_failing_run_does_not_stop_the_others_of_its_chunk(tmp_path, monkeypatch):
    from workflows.interfaces import groupica

    pca_files = _pca_files(tmp_path, 3)
    (tmp_path / "model.npz").touch()
    (tmp_path / "labels.tsv").touch()
    done = []

    def fake_run(pca_file, run_index, **kwargs):
        if run_index == 0:
            raise InputDataError("too few volumes")
        done.append(run_index)
        return [Path(pca_file)]

    monkeypatch.setattr(groupica, "networks_fnc_of_run", fake_run)
    node = groupica.GICANetworksChunk(
        pca_files=[str(f) for f in pca_files], run_indices=[0, 1, 2],
        model_file=str(tmp_path / "model.npz"), labels_files=[str(tmp_path / "labels.tsv")],
        scales=[4], output_dir=str(tmp_path))
    with pytest.raises(InputDataError, match=r"^1 of 3 run\(s\) failed: "
                                             r"sub-000_task-rest_desc-pca.npz: .*too few volumes$"):
        node.run(cwd=str(tmp_path))
    assert done == [1, 2]


def test_fnc_measure_reaches_every_chunk_and_the_methods_text(tmp_path):
    pca_files = _pca_files(tmp_path, 4)
    default = init_group_ica_wf(pca_files=pca_files, output_dir=tmp_path, model_orders=ORDERS)
    partial = init_group_ica_wf(pca_files=pca_files, output_dir=tmp_path, model_orders=ORDERS,
                                fnc_measure="partial correlation")
    for workflow, measure in ((default, "correlation"), (partial, "partial correlation")):
        chunks = [node for node in workflow._get_all_nodes()
                  if node.name.startswith("networks_fnc_")]
        assert chunks and {node.inputs.fnc_measure for node in chunks} == {measure}
    assert partial.__desc__.startswith(default.__desc__)
    assert partial.__desc__[len(default.__desc__):] == (
        " Static FNC (partial correlation, Fisher z) was computed within and across scales.")
