"""``msica submit``: SLURM array + dependent group job.

The unit tests check the written sbatch scripts and the exit codes without a
scheduler. The integration tests start a real single-node Slurm
(``/work/shared/tools/local-slurm``), submit a simulated dataset and check the
job states, the per-participant outputs, the group table, and that a broken
participant is reported missing while the group level still runs.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from workflows.execution.slurm import SubmitPlan, participant_status
from workflows.cli.submit import submit_command

LOCAL_SLURM = Path(os.environ.get("LOCAL_SLURM_TOOL", "/work/shared/tools/local-slurm"))
WAIT_S = 240  # bound on any wait for the scheduler
N_SUBJECTS = 4  # the simulator's minimum
MSICA = Path(sys.executable).parent / "msica"


@pytest.fixture(scope="module")
def bids_dir(tmp_path_factory) -> Path:
    from workflows.bids.simulated import run_simulate

    root = tmp_path_factory.mktemp("submit_bids") / "bids"
    run_simulate(root, n_subjects=N_SUBJECTS, n_sites=1, n_volumes=60, tr=2.0, grid_mm=10.0,
                 seed=0)
    return root


def _template(bids_dir: Path) -> list[str]:
    """Participant options of template mode with the simulator's coarse truth."""
    return ["--template", str(bids_dir / "derivatives" / "truth" / "scale-4_desc-truth_components.nii.gz")]


def _dry(bids_dir: Path, tmp_path: Path, *extra: str, passthrough: tuple[str, ...] = ()
         ) -> tuple[int, Path]:
    out = tmp_path / "out"
    code = submit_command([str(bids_dir), str(out), "--slurm-partition", "debug",
                           "-w", str(tmp_path / "work"), "--run-id", "t", "--dry-run", *extra,
                           "--", *_template(bids_dir), *passthrough])
    return code, out / "logs" / "slurm" / "t"


# ---------------------------------------------------------------- without a scheduler


def test_dry_run_writes_array_and_group_scripts(bids_dir, tmp_path):
    code, run_dir = _dry(bids_dir, tmp_path, "--nprocs", "2", "--mem", "1.5", "--time",
                         "01:30:00", "--participant-label", "sub-02", "03",
                         passthrough=("--denoise-strategy", "scrubbing", "--fd-threshold", "0.3"))
    assert code == 0
    script = (run_dir / "participant.sbatch").read_text()
    assert "#SBATCH --array=0-1\n" in script
    assert "#SBATCH --cpus-per-task=2\n" in script
    assert "#SBATCH --mem=1536M\n" in script
    assert "#SBATCH --time=01:30:00\n" in script
    assert "#SBATCH --partition=debug\n" in script
    assert "LABELS=(02 03)\n" in script
    assert f"-w {tmp_path / 'work'}/\"$LABEL\"" in script
    assert "--denoise-strategy scrubbing --fd-threshold 0.3" in script
    assert str(MSICA) in script
    group = (run_dir / "group.sbatch").read_text()
    assert f"msica submit --finalize {run_dir}" in group
    for path in (run_dir / "participant.sbatch", run_dir / "group.sbatch"):
        assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    plan = SubmitPlan.load(run_dir)
    assert plan.labels == ["02", "03"] and plan.array_job_id is None


def test_array_script_runs_each_label_and_records_exit_code(bids_dir, tmp_path):
    """Run the array script with bash (no Slurm), msica replaced by a stub that fails for 02."""
    code, run_dir = _dry(bids_dir, tmp_path)
    assert code == 0
    stub = tmp_path / "msica_stub"
    stub.write_text('#!/bin/bash\necho "$@" >> "$STUB_LOG"\n'
                    '[ "$5" = 02 ] && exit 65\nexit 0\n')
    stub.chmod(0o755)
    script = (run_dir / "participant.sbatch").read_text().replace(str(MSICA), str(stub))
    for task in range(N_SUBJECTS):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "STUB_LOG": str(tmp_path / "l")}
        rc = subprocess.run(["bash", "-c", script], env=env, check=False,
                            capture_output=True).returncode
        assert rc == (65 if task == 1 else 0)
    calls = (tmp_path / "l").read_text().splitlines()
    assert [c.split()[4] for c in calls] == ["01", "02", "03", "04"]
    assert all(f"-w {tmp_path / 'work'}/{c.split()[4]}" in c for c in calls)
    codes = {p.name: p.read_text().strip() for p in (run_dir / "status").glob("*.exit")}
    assert codes == {"sub-01.exit": "0", "sub-02.exit": "65", "sub-03.exit": "0",
                     "sub-04.exit": "0"}


def test_participant_status_needs_exit_zero_and_outputs(bids_dir, tmp_path):
    _, run_dir = _dry(bids_dir, tmp_path)
    plan = SubmitPlan.load(run_dir)
    status_dir = run_dir / "status"
    (status_dir / "sub-01.exit").write_text("0\n")
    (status_dir / "sub-02.exit").write_text("65\n")
    (status_dir / "sub-03.exit").write_text("0\n")  # but no output
    qc = plan.output_dir / "sub-01" / "func" / "sub-01_task-rest_desc-denoise_qc.tsv"
    qc.parent.mkdir(parents=True)
    qc.write_text("x\n")
    status = participant_status(plan)
    assert status["01"] is None
    assert "exited with code 65" in status["02"]
    assert "no desc-denoise_qc.tsv" in status["03"]
    assert "no exit status" in status["04"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--slurm-partition"),
        (["--slurm-partition", "debug", "--time", "90 minutes"], "--time must be"),
        (["--slurm-partition", "a b"], "partition name"),
        (["--slurm-partition", "debug", "--", "--nprocs", "4"], "set by msica submit"),
        (["--slurm-partition", "debug", "--", "--denoise-strategy", "nope"], "invalid choice"),
    ],
)
def test_usage_errors_exit_64(bids_dir, tmp_path, capsys, args, message):
    code = submit_command([str(bids_dir), str(tmp_path / "out"), "-w", str(tmp_path / "w"),
                           "--dry-run", *args])
    assert code == 64
    assert message in capsys.readouterr().err


def test_missing_inputs_exit_66(bids_dir, tmp_path, capsys):
    base = ["--slurm-partition", "debug", "-w", str(tmp_path / "w"), "--dry-run"]
    assert submit_command([str(tmp_path / "nope"), str(tmp_path / "out"), *base,
                           "--", *_template(bids_dir)]) == 66
    assert "does not exist" in capsys.readouterr().err
    code = submit_command([str(bids_dir), str(tmp_path / "out"), *base,
                           "--participant-label", "99", "--", *_template(bids_dir)])
    assert code == 66
    assert "99 not found" in capsys.readouterr().err


@pytest.mark.parametrize(("script", "message"), [
    ("echo 'invalid partition specified: debug' >&2\nexit 1\n",
     "invalid partition specified: debug"),  # sbatch fails: its stderr is shown
    ("echo 'Submitted batch job'\n", "not a job id"),  # sbatch says no job id
])
def test_sbatch_failure_exit_1(bids_dir, tmp_path, monkeypatch, capsys, script, message):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\n" + script)
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    code = submit_command([str(bids_dir), str(tmp_path / "out"), "--slurm-partition", "debug",
                           "-w", str(tmp_path / "w"), "--", *_template(bids_dir)])
    assert code == 1
    assert message in capsys.readouterr().err


def test_no_sbatch_exit_1(bids_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    code = submit_command([str(bids_dir), str(tmp_path / "out"), "--slurm-partition", "debug",
                           "-w", str(tmp_path / "w"), "--", *_template(bids_dir)])
    assert code == 1
    assert "'sbatch' not found" in capsys.readouterr().err


def test_msica_executable_missing(monkeypatch, tmp_path):
    from workflows.execution import slurm as submit

    monkeypatch.setattr(submit.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No 'msica' executable"):
        submit.msica_executable()


def test_finalize_without_successes_exits_66(bids_dir, tmp_path, capsys):
    from workflows.execution.slurm import finalize_group

    _, run_dir = _dry(bids_dir, tmp_path)
    assert finalize_group(run_dir) == 66
    missing = _read_tsv(run_dir / "missing.tsv")
    assert [m["participant_id"] for m in missing] == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert (run_dir / "group.exit").read_text().strip() == "66"
    assert "no participant succeeded" in capsys.readouterr().err
    assert submit_command(["--finalize", "--bogus"]) == 64


# ---------------------------------------------------------------- with a real Slurm


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def slurm():
    """A throw-away single-node Slurm; yields the partition name. Skips if it cannot start."""
    if not LOCAL_SLURM.is_file():
        pytest.skip(f"no local-slurm tool at {LOCAL_SLURM}")
    state = tempfile.mkdtemp(prefix="msica-slurm-", dir="/tmp")  # short: munge socket path
    env = {**os.environ, "LOCAL_SLURM_CTLD_PORT": str(_free_port()),
           "LOCAL_SLURM_D_PORT": str(_free_port())}
    try:
        proc = subprocess.run(["bash", str(LOCAL_SLURM), "start", state], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("local-slurm start timed out (installing Slurm?)")
    if proc.returncode != 0:
        pytest.skip(f"Slurm could not be started: {proc.stderr.strip()[-500:]}")
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "LOGNAME")}
    for line in proc.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            os.environ[key] = value.strip("'\"")
    os.environ.setdefault("LOGNAME", os.environ.get("USER") or "root")
    partition = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True,
                               check=True).stdout.split()[0]
    yield partition
    subprocess.run(["bash", str(LOCAL_SLURM), "stop", state], env=env, capture_output=True,
                   check=False, timeout=120)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(state, ignore_errors=True)


def _job_states(job_id: str) -> dict[str, str]:
    """``{job id or array task id: state}`` from squeue (finished jobs stay for MinJobAge)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i %T"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _wait_for(paths: list[Path], deadline: float) -> None:
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            queue = subprocess.run(["squeue", "-t", "all"], capture_output=True, text=True)
            pytest.fail(f"timed out after {WAIT_S} s waiting for {[str(p) for p in paths]}: "
                        f"{queue.stdout}")
        time.sleep(1)


def _submit(bids: Path, out: Path, work: Path, partition: str, run_id: str) -> SubmitPlan:
    code = submit_command([str(bids), str(out), "--slurm-partition", partition, "--nprocs", "1",
                           "--mem", "1", "--time", "00:10:00", "-w", str(work),
                           "--run-id", run_id, "--", *_template(bids)])
    assert code == 0
    plan = SubmitPlan.load(out / "logs" / "slurm" / run_id)
    assert plan.array_job_id and plan.group_job_id
    return plan


@pytest.fixture(scope="module")
def submitted(slurm, bids_dir, tmp_path_factory):
    """Two submissions at once: the intact dataset, and a copy where sub-02 is broken."""
    root = tmp_path_factory.mktemp("submit_runs")
    broken = root / "broken_bids"
    shutil.copytree(bids_dir, broken)
    func = broken / "derivatives" / "fmriprep" / "sub-02" / "func"
    for bold in func.glob("*desc-preproc_bold.nii.gz"):  # a truncated download
        bold.write_bytes(bold.read_bytes()[:2000])
    start = time.monotonic()
    plans = {
        "ok": _submit(bids_dir, root / "out_ok", root / "work_ok", slurm, "ok"),
        "broken": _submit(broken, root / "out_broken", root / "work_broken", slurm, "broken"),
    }
    _wait_for([p.run_dir / "group.exit" for p in plans.values()], start + WAIT_S)
    # the group job's own state is final shortly after group.exit is written
    deadline = time.monotonic() + 30
    while any(_job_states(p.group_job_id).get(p.group_job_id) in ("PENDING", "RUNNING",
                                                                  "COMPLETING")
              for p in plans.values()) and time.monotonic() < deadline:
        time.sleep(1)
    print(f"SLURM submissions finished in {time.monotonic() - start:.1f} s")
    return plans


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.integration
def test_slurm_array_runs_every_participant_then_group(submitted):
    plan = submitted["ok"]
    states = _job_states(plan.array_job_id)
    assert states == {f"{plan.array_job_id}_{i}": "COMPLETED" for i in range(N_SUBJECTS)}
    assert _job_states(plan.group_job_id) == {plan.group_job_id: "COMPLETED"}
    for label in plan.labels:
        assert (plan.run_dir / "status" / f"sub-{label}.exit").read_text().strip() == "0"
        assert list(plan.output_dir.glob(f"sub-{label}/func/sub-{label}_*desc-denoise_qc.tsv"))
        assert (plan.work_dir / label).is_dir()  # one work directory per task
    rows = _read_tsv(plan.output_dir / "group" / "desc-denoise_qc.tsv")
    assert sorted(r["participant_id"] for r in rows) == [f"sub-0{i}" for i in range(1, 5)]
    assert _read_tsv(plan.run_dir / "missing.tsv") == []
    assert (plan.run_dir / "group.exit").read_text().strip() == "0"
    logs = sorted(p.name for p in (plan.run_dir / "log").iterdir())
    assert len([n for n in logs if n.startswith("participant_")]) == N_SUBJECTS


@pytest.mark.integration
def test_slurm_broken_participant_is_reported_and_group_still_runs(submitted):
    plan = submitted["broken"]
    states = _job_states(plan.array_job_id)
    assert states.pop(f"{plan.array_job_id}_1") == "FAILED"  # sub-02
    assert set(states.values()) == {"COMPLETED"} and len(states) == N_SUBJECTS - 1
    assert _job_states(plan.group_job_id) == {plan.group_job_id: "COMPLETED"}
    assert (plan.run_dir / "status" / "sub-02.exit").read_text().strip() not in ("", "0")
    rows = _read_tsv(plan.output_dir / "group" / "desc-denoise_qc.tsv")
    assert sorted(r["participant_id"] for r in rows) == ["sub-01", "sub-03", "sub-04"]
    missing = _read_tsv(plan.run_dir / "missing.tsv")
    assert [m["participant_id"] for m in missing] == ["sub-02"]
    assert "exited with code" in missing[0]["reason"]
    group_log = next((plan.run_dir / "log").glob("group_*.out")).read_text()
    assert "sub-02 left out of the group level" in group_log
    assert "3/4 participant(s) succeeded" in group_log


@pytest.mark.integration
def test_nipype_slurm_plugin_runs_participant(slurm, bids_dir, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run(
        [str(MSICA), str(bids_dir), str(out), "participant", "--participant-label", "01",
         "-w", str(work), "--plugin", "SLURM", *_template(bids_dir)],
        capture_output=True, text=True, timeout=WAIT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(out.glob("sub-01/func/sub-01_*desc-denoise_qc.tsv"))
    # the nodes that are not run_without_submitting went through sbatch
    jobs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j %T"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    nipype_jobs = [j for j in jobs if "sub_01_wf" in j and "msica_participant_wf" in j]
    assert nipype_jobs and all(j.endswith("COMPLETED") for j in nipype_jobs)


def _cpus(threads: int) -> int:  # runs inside the SLURM job
    import os

    return int(os.environ["SLURM_CPUS_PER_TASK"]) * 100 + threads


@pytest.mark.integration
def test_nipype_slurm_plugin_args_reach_sbatch(slurm, tmp_path):
    """nipype_slurm_plugin_args: each node job gets the CPUs and memory asked for."""
    from nipype import Function, Node, Workflow

    from workflows.execution.slurm import nipype_slurm_plugin_args

    node = Node(Function(input_names=["threads"], output_names=["out"], function=_cpus),
                name="cpus")
    node_cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                                   check=True).stdout.split()[0])
    ncpu = min(2, node_cpus)
    node.inputs.threads = 2
    wf = Workflow(name="plugin_args_wf", base_dir=str(tmp_path))
    wf.add_nodes([node])
    wf.config["execution"]["poll_sleep_duration"] = 1
    args = nipype_slurm_plugin_args(omp_nthreads=ncpu, mem_gb=0.5, partition=slurm)
    result = wf.run(plugin="SLURM", plugin_args=args)
    (done,) = result.nodes()
    assert done.result.outputs.out == ncpu * 100 + 2  # SLURM_CPUS_PER_TASK inside the job
    jobs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j %C %m %T"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    mine = [j.split() for j in jobs if j.startswith("cpus.plugin_args_wf")]
    assert mine and all(j[1:] == [str(ncpu), "512M", "COMPLETED"] for j in mine)
