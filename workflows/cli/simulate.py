"""``msica simulate OUT_DIR`` and ``msica demo [OUT_DIR]``: a simulated dataset, and both levels on it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from workflows.cli import validators as val
from workflows.cli.base import MsicaParser, both, guarded, setup_logging
from workflows.exit_codes import ExitCode

__all__ = ["demo_command", "simulate_command"]

LOGGER = logging.getLogger("msica.cli")

def _build_simulate_parser(prog: str, description: str, *, n_subjects: int,
                           default_out: str | None = None) -> MsicaParser:
    parser = MsicaParser(prog=prog, description=description)
    parser.add_argument("out_dir", type=lambda p: Path(p).expanduser().absolute(),
                        nargs="?" if default_out else None,
                        default=Path(default_out).absolute() if default_out else None)
    parser.add_argument(*both("--n-subjects"), dest="n_subjects", type=val.positive_int,
                        default=n_subjects)
    parser.add_argument(*both("--n-sites"), dest="n_sites", type=val.positive_int, default=2)
    parser.add_argument(*both("--n-volumes"), dest="n_volumes", type=val.positive_int, default=150)
    parser.add_argument("--tr", type=val.positive_float, default=2.0, help="repetition time (s)")
    parser.add_argument(*both("--grid-mm"), dest="grid_mm", type=val.positive_float, default=6.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def simulate_command(argv: Sequence[str]) -> int:
    opts = _build_simulate_parser(
        "msica simulate", "Write a simulated BIDS dataset with known ground truth.", n_subjects=24
    ).parse_args(argv)
    setup_logging(opts.verbose)

    def _go() -> int:
        from workflows.bids.simulated import run_simulate

        out = run_simulate(opts.out_dir, n_subjects=opts.n_subjects, n_sites=opts.n_sites,
                           n_volumes=opts.n_volumes, tr=opts.tr, grid_mm=opts.grid_mm,
                           seed=opts.seed)
        LOGGER.info("Simulated BIDS dataset written to %s", out)
        return ExitCode.OK

    return guarded(_go, verbose=opts.verbose)


def demo_command(argv: Sequence[str]) -> int:
    parser = _build_simulate_parser(
        "msica demo",
        "Simulate a BIDS dataset, then run the participant and group levels on it.",
        n_subjects=24,
        default_out="msica_demo",
    )
    parser.add_argument("--nprocs", type=val.positive_int, default=2)
    opts = parser.parse_args(argv)
    setup_logging(opts.verbose)

    def _go() -> int:
        from workflows.bids.simulated import run_simulate, truth_template_options
        from workflows.cli.bids_app import bids_app_command

        bids_dir = opts.out_dir / "bids"
        if not (bids_dir / "dataset_description.json").exists():
            run_simulate(bids_dir, n_subjects=opts.n_subjects, n_sites=opts.n_sites,
                         n_volumes=opts.n_volumes, tr=opts.tr, grid_mm=opts.grid_mm, seed=opts.seed)
        common = [str(bids_dir), str(opts.out_dir / "derivatives" / "msica")]
        extra = ["-w", str(opts.out_dir / "work"), "--nprocs", str(opts.nprocs),
                 "--seed", str(opts.seed)] + ["-v"] * opts.verbose
        templates = truth_template_options(bids_dir)
        group_options = ["--targets", "diagnosis", "medication", "response",
                         "--n-permutations", "20", "--introspect"]
        for level in ("participant", "group"):
            code = bids_app_command([*common, level, *extra,
                        *(templates if level == "participant" else group_options)])
            if code != ExitCode.OK:
                return code
        LOGGER.info("Demo finished: derivatives in %s", opts.out_dir / "derivatives" / "msica")
        return ExitCode.OK

    return guarded(_go, verbose=opts.verbose)
