"""``msica submit``: the participant level as a SLURM job array, then the group level.

See :mod:`workflows.execution.slurm` for what a submission writes and runs.
``msica submit --finalize RUN_DIR`` is the group job's own command: it decides
which participants succeeded and runs the group level on them.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from workflows.cli.base import MsicaParser, setup_logging
from workflows.config import new_run_uuid
from workflows.exit_codes import ExitCode
from workflows.execution.slurm import (
    SubmitPlan,
    finalize_group,
    msica_executable,
    submit_jobs,
    write_scripts,
)

__all__ = ["submit_command"]

_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")


_PARTITION = re.compile(r"^[A-Za-z0-9_.,-]+$")


_RESERVED = ("--participant-label", "--participant_label", "-w", "--work-dir", "--work_dir",
             "--nprocs", "--n-cpus", "--n_cpus", "--mem", "--pca-dir", "--pca_dir")


def _slurm_time(value: str) -> str:
    if not _TIME.match(value):
        raise argparse.ArgumentTypeError(
            f"--time must be [D-]HH:MM:SS, MM:SS or minutes (SLURM syntax); got {value!r}"
        )
    return value


def _partition(value: str) -> str:
    if not _PARTITION.match(value):
        raise argparse.ArgumentTypeError(
            f"--slurm-partition must be a SLURM partition name (letters, digits, _ . , -); "
            f"got {value!r}"
        )
    return value


def _build_parser() -> MsicaParser:
    from workflows.cli import validators as val

    parser = MsicaParser(
        prog="msica submit",
        description="Submit the participant level as a SLURM job array (one task per "
        "participant) and the group level as a job that runs after it. Options after '--' "
        "are passed to every participant task. The group job runs 'msica submit --finalize "
        "RUN_DIR'.",
    )
    parser.add_argument("bids_dir", type=lambda p: Path(p).expanduser().absolute())
    parser.add_argument("output_dir", type=lambda p: Path(p).expanduser().absolute())
    parser.add_argument("--slurm-partition", "--slurm_partition", dest="partition",
                        type=_partition, required=True, help="SLURM partition (sbatch -p)")
    parser.add_argument("--participant-label", "--participant_label", dest="participant_label",
                        nargs="+", default=[], type=val.drop_sub_prefix,
                        help="participants to submit (default: all)")
    parser.add_argument("--nprocs", type=val.positive_int, default=1,
                        help="CPUs per participant task (--cpus-per-task)")
    parser.add_argument("--mem", dest="mem_gb", type=val.positive_float, default=None,
                        help="memory per participant task in GB (default: the partition's)")
    parser.add_argument("--time", type=_slurm_time, default=None,
                        help="time limit per task, [D-]HH:MM:SS (default: the partition's)")
    parser.add_argument("-w", "--work-dir", "--work_dir", dest="work_dir",
                        type=lambda p: Path(p).expanduser().absolute(),
                        default=Path("work").absolute(),
                        help="work directory; each task uses WORK/<label>, the group WORK/group")
    parser.add_argument("--run-id", dest="run_id", default=None,
                        help="folder name under OUTPUT_DIR/logs/slurm (default: time + uuid)")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                        help="write the scripts, do not submit them")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging")
    return parser


def _split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def submit_command(argv: Sequence[str]) -> int:
    """``msica submit BIDS_DIR OUTPUT_DIR --slurm-partition P [...] [-- participant options]``.

    Returns
    -------
    int
        0 submitted (or scripts written with ``--dry-run``), 64 usage error,
        66 missing BIDS_DIR or participants, 1 when ``sbatch`` fails.
    """
    if argv and argv[0] == "--finalize":
        return _finalize_command(argv[1:])
    own, extra = _split_passthrough(argv)
    parser = _build_parser()
    try:
        opts = parser.parse_args(own)
        reserved = [a for a in extra if a.split("=")[0] in _RESERVED]
        if reserved:
            parser.error(f"{', '.join(reserved)} after '--' is set by msica submit per task; "
                         "give it before '--'.")
        if opts.work_dir == opts.output_dir or opts.work_dir in opts.output_dir.parents:
            parser.error(f"the work directory {opts.work_dir} must not contain the output "
                         "folder; use -w with another path.")
        # Check the passed-through options now, not in every array task.
        from workflows.cli.bids_app import parse_args

        parse_args([str(opts.bids_dir), str(opts.output_dir), "participant", *extra])
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if opts.verbose else logging.WARNING,
                        format="%(name)s %(levelname)s: %(message)s")
    try:
        from pipeline.exceptions import InputDataError
        from workflows.bids.layout import build_layout, collect_participants

        layout = build_layout(opts.bids_dir, work_dir=opts.work_dir,
                              database_dir=opts.work_dir / "bids_db" / "submit",
                              reset_database=True)
        labels = collect_participants(layout, opts.participant_label or None)
        msica = msica_executable()
    except (FileNotFoundError, InputDataError) as exc:
        print(f"msica submit: error: {exc}", file=sys.stderr)
        return int(ExitCode.NO_INPUT)

    plan = SubmitPlan(bids_dir=opts.bids_dir, output_dir=opts.output_dir, work_dir=opts.work_dir,
                      labels=labels, partition=opts.partition, nprocs=opts.nprocs,
                      mem_gb=opts.mem_gb, time=opts.time, extra=extra,
                      run_id=opts.run_id or new_run_uuid(), msica=msica)
    write_scripts(plan)
    if opts.dry_run:
        print(f"msica submit: dry run, {len(labels)} participant(s); scripts in {plan.run_dir}")
        return int(ExitCode.OK)
    try:
        submit_jobs(plan)
    except RuntimeError as exc:
        print(f"msica submit: error: {exc}", file=sys.stderr)
        return int(ExitCode.ERROR)
    print(f"msica submit: participant array job {plan.array_job_id} ({len(labels)} task(s)), "
          f"group job {plan.group_job_id}; scripts and logs in {plan.run_dir}")
    return int(ExitCode.OK)


def _finalize_command(argv: Sequence[str]) -> int:
    """``msica submit --finalize RUN_DIR``: the group job of a submission."""
    parser = MsicaParser(prog="msica submit --finalize",
                         description="Run by the group job of 'msica submit': decide which "
                         "participants succeeded and run the group level on them.")
    parser.add_argument("run_dir", type=Path, help="OUTPUT_DIR/logs/slurm/<run id>")
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    setup_logging(0)
    return finalize_group(opts.run_dir)
