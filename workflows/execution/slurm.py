"""``msica submit``: run the participant level as a SLURM job array, then the group level.

One array task per participant runs ``msica BIDS_DIR OUTPUT_DIR participant
--participant-label <label> -w WORK/<label>`` (a work directory per task, so
that no two jobs share a pybids SQLite database or a Nipype cache) and records
its exit code in ``status/sub-<label>.exit``. A group job, submitted with
``--dependency=afterany:<array job id>``, starts whatever the outcome of the
tasks, decides which participants succeeded (exit code 0 *and* a
``desc-denoise_qc.tsv`` output), writes the others to ``missing.tsv`` and its
log, and runs the group level on the successful ones.

Everything of one submission lives in ``OUTPUT_DIR/logs/slurm/<run id>/``::

    run.json               what was submitted (paths, labels, job ids)
    participant.sbatch     the array script
    group.sbatch           the group script
    status/sub-<label>.exit  exit code of each array task
    missing.tsv            participants left out of the group level, with the reason
    group.exit             exit code of the group level
    log/                   SLURM stdout/stderr of every job
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from workflows.exit_codes import ExitCode

__all__ = [
    "QC_PATTERN",
    "SubmitPlan",
    "finalize_group",
    "msica_executable",
    "nipype_slurm_plugin_args",
    "participant_status",
    "submit_jobs",
    "write_scripts",
]

LOGGER = logging.getLogger("msica.submit")

QC_PATTERN = "sub-{label}/**/sub-{label}_*desc-denoise_qc.tsv"


class SubmitPlan:
    """Everything one submission needs, written to ``run.json``.

    Parameters
    ----------
    bids_dir, output_dir, work_dir : Path
    labels : list of str
        Participant labels without ``sub-``; array task ``i`` runs ``labels[i]``.
    partition : str
    nprocs : int
    mem_gb : float or None
    time : str or None
    extra : list of str
        Participant options passed through.
    run_id : str
    msica : Path
        The ``msica`` executable the jobs run.

    Attributes
    ----------
    array_job_id, group_job_id : str or None
        SLURM job ids once submitted (``None`` for a dry run).
    run_dir : Path
        ``OUTPUT_DIR/logs/slurm/<run_id>``.
    """

    def __init__(self, *, bids_dir: Path, output_dir: Path, work_dir: Path, labels: list[str],
                 partition: str, nprocs: int = 1, mem_gb: float | None = None,
                 time: str | None = None, extra: Sequence[str] = (), run_id: str,
                 msica: Path) -> None:
        self.bids_dir = Path(bids_dir)
        self.output_dir = Path(output_dir)
        self.work_dir = Path(work_dir)
        self.labels = list(labels)
        self.partition = partition
        self.nprocs = nprocs
        self.mem_gb = mem_gb
        self.time = time
        self.extra = list(extra)
        self.run_id = run_id
        self.msica = Path(msica)
        self.array_job_id: str | None = None
        self.group_job_id: str | None = None

    @property
    def run_dir(self) -> Path:
        """``OUTPUT_DIR/logs/slurm/<run id>``."""
        return self.output_dir / "logs" / "slurm" / self.run_id

    @property
    def pca_dir(self) -> Path:
        """Subject PCAs of data-driven mode, shared by every task and the group job."""
        return self.work_dir / "subject_pca"

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> SubmitPlan:
        data = dict(data)
        ids = data.pop("array_job_id", None), data.pop("group_job_id", None)
        plan = cls(**data)
        plan.array_job_id, plan.group_job_id = ids
        return plan

    def save(self) -> Path:
        from workflows.bids.atomic import atomic_write

        path = self.run_dir / "run.json"
        with atomic_write(path) as handle:
            json.dump(self.to_dict(), handle, indent=2)
        return path

    @classmethod
    def load(cls, run_dir: Path) -> SubmitPlan:
        return cls.from_dict(json.loads((Path(run_dir) / "run.json").read_text()))


def msica_executable() -> Path:
    """The ``msica`` script beside the running interpreter (same environment), else on PATH."""
    beside = Path(sys.executable).parent / "msica"
    if beside.is_file():
        return beside
    found = shutil.which("msica")
    if found is None:
        raise FileNotFoundError(
            f"No 'msica' executable beside {sys.executable} or on PATH; install msica "
            "in the environment the jobs will use."
        )
    return Path(found)


def nipype_slurm_plugin_args(*, omp_nthreads: int = 1, mem_gb: float | None = None,
                             partition: str | None = None, time: str | None = None,
                             max_jobs: int | None = None) -> dict:
    """``plugin_args`` for Nipype's ``SLURM`` plugin (``--plugin SLURM``).

    Each Nipype node becomes one ``sbatch`` job; without ``sbatch_args`` every
    node gets the partition's default CPUs and memory, which under-requests
    for the threaded ICA nodes.

    Parameters
    ----------
    omp_nthreads : int, default=1
        ``--cpus-per-task`` of each node's job.
    mem_gb : float, optional
        ``--mem`` of each node's job.
    partition : str, optional
        ``--partition``; default: the cluster's default partition (or ``$SBATCH_PARTITION``).
    time : str, optional
        ``--time`` of each node's job.
    max_jobs : int, optional
        Most node jobs queued at once (Nipype's ``max_jobs``); default unlimited.

    Returns
    -------
    dict
        ``{"sbatch_args": "...", ...}`` for ``workflow.run(plugin="SLURM", plugin_args=...)``.

    Examples
    --------
    >>> nipype_slurm_plugin_args(omp_nthreads=4, mem_gb=8)
    {'sbatch_args': '--nodes=1 --ntasks=1 --cpus-per-task=4 --mem=8192M'}
    """
    args = ["--nodes=1", "--ntasks=1", f"--cpus-per-task={int(omp_nthreads)}"]
    if mem_gb:
        args.append(f"--mem={math.ceil(mem_gb * 1024)}M")
    if partition:
        args.append(f"--partition={partition}")
    if time:
        args.append(f"--time={time}")
    plugin_args: dict = {"sbatch_args": " ".join(args)}
    if max_jobs:
        plugin_args["max_jobs"] = int(max_jobs)
    return plugin_args


def _sbatch_header(plan: SubmitPlan, *, name: str, log: str, cpus: int,
                   mem_gb: float | None, time: str | None) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --partition={plan.partition}",
             "#SBATCH --nodes=1", "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={cpus}",
             f"#SBATCH --output={plan.run_dir / 'log' / log}"]
    lines.append(f"#SBATCH --chdir={plan.run_dir}")
    if mem_gb:
        lines.append(f"#SBATCH --mem={math.ceil(mem_gb * 1024)}M")
    if time:
        lines.append(f"#SBATCH --time={time}")
    return lines


def _participant_script(plan: SubmitPlan) -> str:
    q = shlex.quote
    n = len(plan.labels)
    lines = _sbatch_header(plan, name=f"msica-participant-{plan.run_id}",
                           log="participant_%A_%a.out", cpus=plan.nprocs, mem_gb=plan.mem_gb,
                           time=plan.time)
    lines.insert(2, f"#SBATCH --array=0-{n - 1}")
    options = ["--nprocs", str(plan.nprocs)]
    if plan.mem_gb:
        options += ["--mem", f"{plan.mem_gb:g}"]
    quoted = " ".join([q(str(plan.msica)), q(str(plan.bids_dir)), q(str(plan.output_dir)),
                       "participant", "--participant-label", '"$LABEL"',
                       "-w", q(str(plan.work_dir)) + '/"$LABEL"',
                       "--pca-dir", q(str(plan.pca_dir)),
                       *(q(arg) for arg in (*options, *plan.extra))])
    status = plan.run_dir / "status"
    lines += [
        "# msica participant level: one array task per participant (generated by msica submit)",
        "set -u",
        f"LABELS=({' '.join(q(label) for label in plan.labels)})",
        'LABEL="${LABELS[$SLURM_ARRAY_TASK_ID]}"',
        'export LOGNAME="${LOGNAME:-$(id -un)}"',
        'echo "msica: array task $SLURM_ARRAY_TASK_ID runs sub-$LABEL on $(hostname)"',
        quoted,
        "code=$?",
        f"mkdir -p {q(str(status))}",
        f'tmp={q(str(status))}/.sub-"$LABEL".exit.$$',
        f'echo "$code" > "$tmp" && mv -f "$tmp" {q(str(status))}/sub-"$LABEL".exit',
        'echo "msica: sub-$LABEL finished with exit code $code"',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"


def _group_script(plan: SubmitPlan) -> str:
    q = shlex.quote
    lines = _sbatch_header(plan, name=f"msica-group-{plan.run_id}", log="group_%j.out",
                           cpus=1, mem_gb=plan.mem_gb, time=plan.time)
    lines += [
        "# msica group level on the participants that succeeded (generated by msica submit).",
        "# Submitted with --dependency=afterany:<participant array job id>.",
        "set -u",
        'export LOGNAME="${LOGNAME:-$(id -un)}"',
        f"{q(str(plan.msica))} submit --finalize {q(str(plan.run_dir))}",
    ]
    return "\n".join(lines) + "\n"


def write_scripts(plan: SubmitPlan) -> tuple[Path, Path]:
    """Write ``run.json``, ``participant.sbatch`` and ``group.sbatch`` (atomically).

    Returns
    -------
    participant_script, group_script : Path
    """
    from workflows.bids.atomic import atomic_write

    (plan.run_dir / "log").mkdir(parents=True, exist_ok=True)
    (plan.run_dir / "status").mkdir(parents=True, exist_ok=True)
    plan.save()
    paths = []
    for name, text in (("participant.sbatch", _participant_script(plan)),
                       ("group.sbatch", _group_script(plan))):
        path = plan.run_dir / name
        with atomic_write(path) as handle:
            handle.write(text)
        path.chmod(0o755)
        paths.append(path)
    return paths[0], paths[1]


def _sbatch(args: list[str]) -> str:
    """Run ``sbatch --parsable ARGS``; return the job id, or raise RuntimeError with its stderr."""
    try:
        proc = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True,
                              check=False, timeout=120)
    except FileNotFoundError as exc:
        raise RuntimeError("'sbatch' not found on PATH; run msica submit on a SLURM login "
                           "node (or use --dry-run to only write the scripts).") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed (exit code {proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise RuntimeError(f"sbatch printed {proc.stdout.strip()!r}, not a job id.")
    return job_id


def submit_jobs(plan: SubmitPlan) -> None:
    """Submit the array job, then the group job after it (``afterany``); record the job ids.

    Raises
    ------
    RuntimeError
        If ``sbatch`` fails; the message says which job was already submitted and how to
        submit the group job by hand.
    """
    try:
        plan.array_job_id = _sbatch([str(plan.run_dir / "participant.sbatch")])
        plan.save()
        plan.group_job_id = _sbatch([f"--dependency=afterany:{plan.array_job_id}",
                                     str(plan.run_dir / "group.sbatch")])
    except RuntimeError as exc:
        where = (f" The participant array job {plan.array_job_id} was submitted; run the "
                 f"group level by hand with 'sbatch {plan.run_dir / 'group.sbatch'}'."
                 if plan.array_job_id else "")
        raise RuntimeError(f"{exc}{where}") from exc
    plan.save()


def participant_status(plan: SubmitPlan) -> dict[str, str | None]:
    """Map each label to ``None`` (succeeded) or the reason it did not.

    A participant succeeded when its array task wrote exit code 0 *and* its
    ``desc-denoise_qc.tsv`` exists in ``OUTPUT_DIR``.
    """
    result: dict[str, str | None] = {}
    for label in plan.labels:
        status = plan.run_dir / "status" / f"sub-{label}.exit"
        if not status.is_file():
            result[label] = "no exit status: the task was cancelled, timed out, ran out of " \
                            "memory or never started (see log/)"
            continue
        code = status.read_text().strip()
        if code != "0":
            result[label] = f"participant level exited with code {code} (see log/)"
        elif not any(plan.output_dir.glob(QC_PATTERN.format(label=label))):
            result[label] = "exit code 0 but no desc-denoise_qc.tsv in OUTPUT_DIR"
        else:
            result[label] = None
    return result


def finalize_group(run_dir: str | Path) -> int:
    """Group step of a submission: report missing participants, run the group level on the rest.

    Writes ``missing.tsv`` (``participant_id``, ``reason``; header only when
    none is missing) and ``group.exit`` in ``run_dir``.

    Returns
    -------
    int
        The group level's exit code; 66 when no participant succeeded.
    """
    from workflows.cli import run
    from workflows.bids.atomic import atomic_write

    plan = SubmitPlan.load(Path(run_dir))
    status = participant_status(plan)
    ok = [label for label, reason in status.items() if reason is None]
    missing = {label: reason for label, reason in status.items() if reason is not None}
    with atomic_write(plan.run_dir / "missing.tsv") as handle:
        handle.write("participant_id\treason\n")
        for label, reason in missing.items():
            handle.write(f"sub-{label}\t{reason}\n")
    for label, reason in missing.items():
        LOGGER.warning("sub-%s left out of the group level: %s", label, reason)
    print(f"msica: {len(ok)}/{len(plan.labels)} participant(s) succeeded; "
          f"missing: {', '.join('sub-' + m for m in missing) or 'none'}", flush=True)
    if ok:
        code = run([str(plan.bids_dir), str(plan.output_dir), "group", "--participant-label",
                    *ok, "-w", str(plan.work_dir / "group"), "--pca-dir", str(plan.pca_dir),
                    *plan.extra])
    else:
        print("msica: error: no participant succeeded; the group level was not run.",
              file=sys.stderr, flush=True)
        code = int(ExitCode.NO_INPUT)
    with atomic_write(plan.run_dir / "group.exit") as handle:
        handle.write(f"{code}\n")
    return int(code)
