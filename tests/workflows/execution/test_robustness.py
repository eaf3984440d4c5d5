"""Robustness of ``msica`` runs: progress and crash reports, resume after a kill, concurrent
participant jobs into one output folder, offline and read-only runs, atomic simulation.

The command-line tests run ``msica`` in subprocesses inside a sandbox: HOME, TMPDIR and the
XDG folders are fresh empty folders, and a ``sitecustomize`` (on PYTHONPATH) installs an audit
hook that records every write outside the run's OUTPUT_DIR and WORK_DIR and refuses every
network connection or DNS lookup. Each test asserts that the sandbox stayed empty and clean.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

MSICA = Path(sys.executable).with_name("msica")
LABELS = ("01", "02", "03", "04")
SANDBOX_DIRS = ("home", "tmp", "xdg_cache", "xdg_config", "xdg_data", "xdg_runtime")

#: Audit hook run at start-up of every sandboxed Python process (and inherited by its forks).
SITECUSTOMIZE = r'''
import os
import socket
import sys

_LOG = os.open(os.environ["MSICA_TEST_VIOLATIONS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
with open("/proc/self/cmdline", "rb") as _cmdline, open(
        os.environ["MSICA_TEST_VIOLATIONS"] + ".started", "ab") as _started:
    _started.write(_cmdline.read().replace(b"\0", b" ") + b"\n")  # the hook is active here
_ALLOWED = tuple(os.path.realpath(p) for p in
                 os.environ["MSICA_TEST_ALLOWED"].split(os.pathsep) if p) + ("/dev",)
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {"os.mkdir": (0,), "os.rename": (0, 1), "os.link": (1,),
                "os.symlink": (1,), "os.remove": (0,), "os.rmdir": (0,), "os.truncate": (0,),
                "shutil.copyfile": (1,), "shutil.rmtree": (0,), "os.chmod": (0,)}


def _report(what):
    os.write(_LOG, f"{os.getpid()} {what}\n".encode())


def _outside(path, dir_fd=None):
    if isinstance(path, int) or path is None:
        return False  # an open file descriptor
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    real = os.path.realpath(os.path.abspath(path))
    if "__pycache__" in real.split(os.sep):
        return False  # Python's bytecode cache (skipped by Python itself when read-only)
    return not any(real == root or real.startswith(root + os.sep) for root in _ALLOWED)


def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE)
        if writing and _outside(path):
            _report(f"write {path}")
    elif event in _PATH_EVENTS:
        dir_fd = args[-1] if isinstance(args[-1], int) and event in ("os.mkdir", "os.remove",
                                                                     "os.rmdir") else None
        for index in _PATH_EVENTS[event]:
            if _outside(args[index], dir_fd):
                _report(f"{event} {args[index]}")
    elif event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        _report(f"connect {args[1]!r}")
        raise OSError(f"network connection to {args[1]!r} refused by the msica test sandbox")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        _report(f"{event} {args[0]!r}")
        raise OSError(f"DNS lookup of {args[0]!r} refused by the msica test sandbox")


sys.addaudithook(_hook)
'''


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from workflows.bids.simulated import run_simulate

    return run_simulate(tmp_path_factory.mktemp("robust") / "bids", n_subjects=len(LABELS),
                        n_sites=2, n_volumes=60, tr=2.0, grid_mm=10.0, seed=1)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sandbox")
    for name in SANDBOX_DIRS:
        (root / name).mkdir()
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (root / "violations.log").touch()
    return root


def _env(sandbox: Path, *allowed: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(sandbox / "home"), TMPDIR=str(sandbox / "tmp"),
        XDG_CACHE_HOME=str(sandbox / "xdg_cache"), XDG_CONFIG_HOME=str(sandbox / "xdg_config"),
        XDG_DATA_HOME=str(sandbox / "xdg_data"), XDG_RUNTIME_DIR=str(sandbox / "xdg_runtime"),
        PYTHONPATH=os.pathsep.join([str(sandbox / "site"), env.get("PYTHONPATH", "")]),
        MSICA_TEST_VIOLATIONS=str(sandbox / "violations.log"),
        MSICA_TEST_ALLOWED=os.pathsep.join(str(p) for p in allowed),
    )
    for name in ("MPLCONFIGDIR", "TORCH_HOME", "NIPYPE_CONFIG_DIR", "NIPYPE_NO_ET"):
        env.pop(name, None)  # msica must set these itself
    return env


def _participant_argv(bids: Path, out: Path, work: Path, labels) -> list[str]:
    truth = bids / "derivatives" / "truth"
    return [str(MSICA), str(bids), str(out), "participant", "-w", str(work),
            "--participant-label", *labels, "--nprocs", "1",
            "--template", str(truth / "scale-4_desc-truth_components.nii.gz"),
            "--template-labels", str(truth / "scale-4_desc-truth_labels.tsv")]


def _popen(argv, sandbox, out, work, log: Path, **kwargs) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen(argv, env=_env(sandbox, out, work), stdout=handle,
                                stderr=subprocess.STDOUT, **kwargs)


def _assert_sandbox_clean(sandbox: Path) -> None:
    started = (sandbox / "violations.log.started").read_text()
    assert "/msica " in started, "the audit hook did not run in the msica processes"
    violations = (sandbox / "violations.log").read_text()
    assert not violations, f"writes outside OUTPUT_DIR/WORK_DIR or network use:\n{violations}"
    for name in SANDBOX_DIRS:
        assert not list((sandbox / name).iterdir()), f"msica wrote into ${name.upper()}"


def _derivative_files(out: Path, labels) -> dict[str, Path]:
    """Every file of these participants (derivatives, figures, HTML report) by relative path."""
    files = {f"sub-{label}.html": out / f"sub-{label}.html" for label in labels
             if (out / f"sub-{label}.html").exists()}
    files.update({str(p.relative_to(out)): p for label in labels
                  for p in sorted((out / f"sub-{label}").rglob("*")) if p.is_file()})
    return files


def _assert_same_file(a: Path, b: Path) -> None:
    if a.name.endswith(".nii.gz"):
        data_a, data_b = np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj)
        assert data_a.dtype == data_b.dtype and data_a.shape == data_b.shape, a.name
        assert data_a.tobytes() == data_b.tobytes(), a.name
    else:  # TSV, JSON, PNG, SVG, HTML: no run-specific value (no timestamp, no work path)
        assert a.read_bytes() == b.read_bytes(), a.name


def _live_members(process_group: int) -> list[int]:
    """Processes of ``process_group`` that still run (zombies excluded), from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if fields[0] != "Z" and int(fields[2]) == process_group:
            pids.append(int(stat.parent.name))
    return pids


def _wait_until_gone(process_group: int, timeout: float = 60.0) -> bool:
    """True once no process of ``process_group`` runs; else kill them and return False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _live_members(process_group):
            return True
        time.sleep(0.1)
    os.killpg(process_group, signal.SIGKILL)
    return False


@pytest.fixture(scope="module")
def concurrent_run(dataset, sandbox, tmp_path_factory):
    """Four participant jobs started at once, one output folder, a work folder each."""
    root = tmp_path_factory.mktemp("concurrent")
    out = root / "out"
    procs = {}
    for label in LABELS:
        work = root / f"work_{label}"
        procs[label] = _popen(_participant_argv(dataset, out, work, [label]), sandbox, out,
                              work, root / f"{label}.log")
    codes = {label: proc.wait(timeout=600) for label, proc in procs.items()}
    logs = {label: (root / f"{label}.log").read_text() for label in LABELS}
    return out, codes, logs


def test_concurrent_participant_jobs_share_one_output_dir(concurrent_run, dataset, sandbox,
                                                          tmp_path):
    from workflows.config import Settings
    from workflows.bids.provenance import write_dataset_description

    out, codes, logs = concurrent_run
    assert codes == dict.fromkeys(LABELS, 0), logs
    for label in LABELS:
        func = out / f"sub-{label}" / "func"
        maps = nib.load(next(func.glob("*_scale-4_desc-ica_components.nii.gz")))
        assert maps.shape[3] == 4 and np.isfinite(maps.get_fdata()).all()
        relmat = pd.read_csv(next(func.glob("*_desc-multiscale_relmat.tsv")), sep="\t",
                             index_col=0)
        assert relmat.shape == (4, 4)
        for sidecar in func.glob("*.json"):
            assert json.loads(sidecar.read_text())["SoftwareName"] == "msica"
        assert (out / f"sub-{label}.html").is_file()
    # dataset_description.json: written once, complete, equal to a single job's
    single = write_dataset_description(
        tmp_path, source_datasets={"raw": dataset,
                                   "fmriprep": dataset / "derivatives" / "fmriprep"})
    assert json.loads((out / "dataset_description.json").read_text()) == json.loads(
        single.read_text())
    # one settings file per job, each naming its own participant
    tomls = sorted((out / "logs").glob("msica-*.toml"))
    assert sorted(Settings.from_toml(t).participant_label for t in tomls) == [
        (label,) for label in LABELS]
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert not leftovers
    _assert_sandbox_clean(sandbox)


def test_killed_run_resumes_with_identical_outputs(concurrent_run, dataset, sandbox, tmp_path):
    reference, _, _ = concurrent_run
    out, work = tmp_path / "out", tmp_path / "work"
    argv = _participant_argv(dataset, out, work, LABELS[:2])
    proc = _popen(argv, sandbox, out, work, tmp_path / "killed.log", start_new_session=True)
    deadline = time.monotonic() + 300
    finished_hash = None
    while finished_hash is None and proc.poll() is None and time.monotonic() < deadline:
        finished_hash = next((p for p in work.glob("msica_participant_wf/*/*/denoise/_0x*.json")
                              if not p.name.endswith("_unfinished.json")), None)
        time.sleep(0.05)
    assert finished_hash is not None and proc.poll() is None, (
        "the run ended before a node finished: " + (tmp_path / "killed.log").read_text())
    os.kill(proc.pid, signal.SIGTERM)  # msica only: it must stop its Nipype workers itself
    assert proc.wait(timeout=60) != 0
    assert _wait_until_gone(proc.pid), "Nipype workers outlived the killed msica"
    finished = {h.parent for h in work.glob("msica_participant_wf/**/_0x*.json")
                if not h.name.endswith("_unfinished.json") and not h.parent.name.startswith("ds_")}
    results = {r: r.stat().st_mtime_ns for d in finished for r in d.glob("result_*.pklz")}
    expected = _derivative_files(reference, LABELS[:2])
    assert set(_derivative_files(out, LABELS[:2])) < set(expected), "the kill came too late"

    rerun = subprocess.run(argv, env=_env(sandbox, out, work), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    resumed = _derivative_files(out, LABELS[:2])
    assert set(resumed) == set(expected)
    for name, path in expected.items():
        _assert_same_file(resumed[name], path)
    # Nipype reused the nodes that had finished before the kill
    assert any(p.parent.name == "denoise" for p in results)
    assert {p: p.stat().st_mtime_ns for p in results} == results
    after = set(work.glob("msica_participant_wf/**/result_*.pklz"))
    assert any(p.parent.name == "backrecon_0" for p in after - set(results))
    _assert_sandbox_clean(sandbox)


def test_group_level_offline_and_read_only_home(concurrent_run, sandbox, dataset, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    shutil.copytree(concurrent_run[0], out)  # the shared participant outputs stay as they are
    run = subprocess.run([str(MSICA), str(dataset), str(out), "group", "-w", str(work)],
                         env=_env(sandbox, out, work), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    assert (out / "group" / "desc-fnc_features.tsv").is_file()
    assert "Group level finished" in run.stderr
    # matplotlib's font cache (group report figures) went to the work folder
    assert list((work / ".cache" / "matplotlib").glob("fontlist-*.json"))
    _assert_sandbox_clean(sandbox)


def test_sandbox_detects_writes_and_network(sandbox, tmp_path):
    """The checks above can fail: the audit hook sees a stray write and a connection."""
    log = sandbox / "violations.log"
    before = log.read_text()
    code = ("import socket, pathlib\n"
            f"pathlib.Path({str(tmp_path / 'stray.txt')!r}).write_text('x')\n"
            "for call in (lambda: socket.socket().connect(('192.0.2.1', 80)),\n"
            "             lambda: socket.getaddrinfo('example.org', 443)):\n"
            "    try:\n        call()\n    except OSError as exc:\n        print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], env=_env(sandbox, tmp_path / "ok"),
                            capture_output=True, text=True, timeout=60)
    found = log.read_text()[len(before):]
    log.write_text(before)
    assert "refused by the msica test sandbox" in result.stdout
    assert result.stdout.count("refused by the msica test sandbox") == 2
    assert "stray.txt" in found and "connect ('192.0.2.1', 80)" in found
    assert "getaddrinfo 'example.org'" in found


def _crashing_workflow(base_dir: Path):
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from workflows.execution.engine import Workflow

    def _fail(value):
        raise ValueError(f"run too short: {value} volumes")

    def _identity(value):
        return value

    top = Workflow(name="msica_participant_wf", base_dir=str(base_dir))
    for label in ("07", "08"):
        sub = Workflow(name=f"sub_{label}_wf")
        inputnode = pe.Node(niu.IdentityInterface(fields=["value"]), name="inputnode")
        inputnode.inputs.value = 12
        node = pe.Node(niu.Function(input_names=["value"], output_names=["out"],
                                    function=_fail if label == "07" else _identity),
                       name="denoise")
        sub.connect(inputnode, "value", node, "value")
        top.add_nodes([sub])
    return top


def test_failed_node_gets_a_readable_crash_file(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("NIPYPE_NO_ET", "1")  # no online version check from Nipype interfaces
    from workflows.config import Settings
    from workflows.execution.crashes import PARTICIPANT_OF_CRASH as _PARTICIPANT_OF_CRASH
    from workflows.execution.levels import _run_workflow

    settings = Settings(bids_dir=tmp_path, output_dir=tmp_path / "out",
                        analysis_level="participant", work_dir=tmp_path / "work",
                        plugin="Linear")
    with caplog.at_level(logging.INFO, logger="msica.run"):
        failures = _run_workflow(_crashing_workflow(settings.work_dir), settings,
                                 _PARTICIPANT_OF_CRASH)
    assert list(failures) == ["sub-07"]
    assert isinstance(failures["sub-07"], ValueError)
    assert "run too short: 12 volumes" in str(failures["sub-07"])
    (crash,) = (settings.output_dir / "logs").glob("crash-*.txt")
    assert crash.name.startswith("crash-2") and crash.name.endswith("-sub-07-denoise.txt")
    text = crash.read_text()
    assert "participant: 07\n" in text
    assert "node: msica_participant_wf.sub_07_wf.denoise\n" in text
    assert "error: ValueError: run too short: 12 volumes" in text
    assert "Traceback (most recent call last)" in text
    # not a terminal: one log line per failed node and per finished participant
    assert "sub-07: node sub_07_wf.denoise failed" in caplog.text
    assert "sub-08 finished (1 nodes); 1 of 2 participants done." in caplog.text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("NIPYPE_NO_ET", "1")
    from workflows.execution.progress import Progress as _Progress

    stream = _Terminal()
    progress = _Progress(_crashing_workflow(tmp_path), stream=stream)
    node = SimpleNamespace(fullname="msica_participant_wf.sub_08_wf.denoise")
    progress(node, "start")
    assert stream.getvalue() == ""
    progress(node, "end")
    progress(SimpleNamespace(fullname="msica_participant_wf.sub_07_wf.denoise"), "exception")
    progress.close()
    lines = stream.getvalue().split("\r\x1b[K")
    assert lines[1] == ("msica_participant_wf [" + "#" * 15 + "." * 15
                        + "] 1/2 nodes, 1/2 participants done, 0 failed")
    assert lines[2].startswith("msica_participant_wf [") and lines[2].endswith(
        "1/2 nodes, 1/2 participants done, 1 failed\n")


def test_simulate_writes_nothing_on_error(tmp_path, monkeypatch):
    from workflows.bids import simulated as simulate

    out = tmp_path / "bids"
    kwargs = dict(n_subjects=4, n_sites=1, n_volumes=30, grid_mm=12.0, seed=0)
    first = simulate.run_simulate(out, **kwargs)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert oct(out.stat().st_mode & 0o777) == "0o755"

    def _broken(root, cohort):
        (root / "half-written.tsv").write_text("a\t")
        raise OSError("disk full")

    monkeypatch.setattr(simulate, "_write_truth", _broken)
    with pytest.raises(OSError, match="disk full"):
        simulate.run_simulate(out, **kwargs)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # old one kept
    with pytest.raises(OSError, match="disk full"):
        simulate.run_simulate(tmp_path / "new", **kwargs)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bids"]  # no staging leftovers
    monkeypatch.undo()
    assert simulate.run_simulate(out, **kwargs) == first  # a previous simulation is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bids"]
