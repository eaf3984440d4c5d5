"""Fixtures for workflow tests: BIDS skeletons, pybids layouts of bids-examples trees, runs of
msica on simulated datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import yaml

RANDOM_STATE = 42
SKELETONS = Path(__file__).resolve().parents[1] / "data" / "skeletons"


def generate_skeleton(root: Path, spec_name: str) -> Path:
    """Write the skeleton ``tests/data/skeletons/<spec_name>.yml`` under ``root``.

    Returns the raw dataset root (``root/bids``); derivatives go to
    ``root/bids/derivatives/<name>``.
    """
    spec = yaml.safe_load((SKELETONS / f"{spec_name}.yml").read_text())
    bids_dir = root / "bids"
    for name, dataset in spec.items():
        base = bids_dir if name == "raw" else bids_dir / "derivatives" / name
        base.mkdir(parents=True, exist_ok=True)
        (base / "dataset_description.json").write_text(json.dumps(dataset["dataset_description"]))
        for rel, content in dataset["files"].items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            content = content or {}
            if rel.endswith(".json"):
                path.write_text(json.dumps(content))
            elif rel.endswith(".nii.gz"):
                img = nib.Nifti1Image(np.zeros((2, 2, 2, 12), np.float32), np.eye(4))
                img.header.set_xyzt_units("mm", "sec")
                img.header["pixdim"][4] = content.get("header_tr", 1.5)
                img.to_filename(path)
            elif rel.endswith(".tsv"):
                rows = content.get("rows", 12)
                path.write_text("trans_x\n" + "0\n" * rows)
            else:
                path.write_text("")
    return bids_dir


def pytest_collection_modifyitems(config, items):
    """Tests that read ../shared/data/bids_examples are 'realdata' tests."""
    for item in items:
        if "bids_examples" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(scope="module")
def bids_examples(shared_data) -> Path:
    return shared_data / "bids_examples"


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory) -> Path:
    return generate_skeleton(tmp_path_factory.mktemp("skel"), "sessions_norun")


@pytest.fixture(scope="session")
def simulated_levels():
    """``simulated_levels(root, participant=[...], group=None, templates=False, **simulate)``:
    simulate a dataset in ``root/bids`` (:func:`~workflows.bids.simulated.run_simulate`
    keywords; two sites and a TR of 2 s unless given), run msica's participant level on it
    (``-w root/work --nprocs 2`` and ``participant``; ``templates`` adds the simulator's truth
    templates) and, when ``group`` is not None, its group level (``-w root/work`` and
    ``group``), each asserted to exit 0. Returns ``(bids, out, work)``."""
    from workflows.bids.simulated import run_simulate, truth_template_options
    from workflows.cli import run
    from workflows.exit_codes import ExitCode

    def levels(root: Path, *, participant: list[str], group: list[str] | None = None,
               templates: bool = False, **simulate) -> tuple[Path, Path, Path]:
        bids = run_simulate(root / "bids", **{"n_sites": 2, "tr": 2.0, **simulate})
        out, work = root / "out", root / "work"
        options = [*participant, *(truth_template_options(bids) if templates else [])]
        assert run([str(bids), str(out), "participant", "-w", str(work), "--nprocs", "2",
                    *options]) == ExitCode.OK
        if group is not None:
            assert run([str(bids), str(out), "group", "-w", str(work), *group]) == ExitCode.OK
        return bids, out, work

    return levels


@pytest.fixture
def run_python():
    """``run_python(args, hang=...)``: run ``python <args>`` in a fresh interpreter and return
    its completed process; the test fails with ``hang`` when it outlives ``timeout`` seconds,
    and with its stderr when it exits non-zero."""

    def run(args: list[str], *, hang: str, timeout: float = 180) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                                  timeout=timeout, check=False)  # the return code is asserted
        except subprocess.TimeoutExpired:
            pytest.fail(hang)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    return run


@pytest.fixture
def graph():
    """Read a built (not run) workflow: ``fields(workflow, node)`` of an identity node,
    ``edges(workflow)``: every connection of its flattened graph as (source node, field,
    target node, field), node names below the workflow's own."""

    def fields(workflow, node: str) -> set[str]:
        return set(workflow.get_node(node).inputs.copyable_trait_names())

    def edges(workflow) -> set[tuple[str, str, str, str]]:
        return {(u.fullname.split(".", 1)[1], out, v.fullname.split(".", 1)[1], into)
                for u, v, data in workflow._create_flat_graph().edges(data=True)
                for out, into in data["connect"]}

    return SimpleNamespace(fields=fields, edges=edges)
