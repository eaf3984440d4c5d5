"""The group level's report step: nothing stale vs every participant report stale, 1 vs N processes.

Runs both levels of msica with ``--no-reports`` on a small simulated dataset (template
mode), then times :func:`workflows.reports.write_reports` as the data-driven group level
calls it (``group.html`` plus the stale participant reports) in this process: wall time
and CPU time (this process and its reaped worker processes, the loky workers being shut
down after each step so that their CPU is counted, and started again by the next).

Printed: each case's wall and CPU seconds, and the ratios all stale / nothing stale and
1 process / N processes, from the same run.

Usage::

    python benchmarks/reports.py [--n-subjects 8] [--nprocs 2] [--repeats 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings
from pathlib import Path


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _prepare(root: Path, n_subjects: int) -> tuple[Path, Path]:
    from pipeline.exceptions import ConvergenceWarning
    from workflows.bids.simulated import run_simulate, truth_templates
    from workflows.cli import run

    bids = run_simulate(root / "bids", n_subjects=n_subjects, n_sites=2, n_volumes=60, tr=2.0,
                        grid_mm=12.0, seed=1)
    out, work = root / "out", root / "work"
    argv = [str(bids), str(out), "participant", "-w", str(work), "--nprocs", "2", "--no-reports"]
    for template, labels in truth_templates(bids):
        argv += ["--template", str(template), "--template-labels", str(labels)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert run(argv) == 0
        assert run([str(bids), str(out), "group", "-w", str(work), "--no-reports"]) == 0
    return bids, out


def _time_step(bids: Path, out: Path, *, nprocs: int, stale: bool) -> tuple[float, float, int]:
    """Wall s, CPU s and reports written by one group-level report step."""
    from joblib.externals.loky import get_reusable_executor

    from workflows.config import Settings
    from workflows.reports import write_reports

    if stale:
        for page in out.glob("sub-*.html"):
            page.unlink()
    settings = Settings(bids_dir=bids, output_dir=out, analysis_level="group",
                        work_dir=out.parent / "work", model_orders=(4, 10), nprocs=nprocs)
    wall, cpu = time.perf_counter(), _cpu()
    written = write_reports(settings, {})
    get_reusable_executor().shutdown(wait=True)  # reap the workers: their CPU counts
    return time.perf_counter() - wall, _cpu() - cpu, len(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=8)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder for the dataset (default: temporary)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="msica-reports-"))
    bids, out = _prepare(root, args.n_subjects)
    _time_step(bids, out, nprocs=1, stale=True)  # warm-up: imports, font cache
    cases = [(1, True), (1, False), (args.nprocs, True), (args.nprocs, False)]
    best: dict[tuple[int, bool], tuple[float, float]] = {}
    for repeat in range(args.repeats):
        for nprocs, stale in cases:
            wall, cpu, n = _time_step(bids, out, nprocs=nprocs, stale=stale)
            print(f"repeat {repeat}: nprocs {nprocs}, {'all stale' if stale else 'none stale'}: "
                  f"{n} report(s), wall {wall:.2f} s, CPU {cpu:.2f} s")
            old = best.get((nprocs, stale), (float("inf"), float("inf")))
            best[nprocs, stale] = (min(old[0], wall), min(old[1], cpu))
    n = args.nprocs
    print(f"\nbest of {args.repeats}, {args.n_subjects} participants:")
    for nprocs in (1, n):
        (ws, cs), (wn, cn) = best[nprocs, True], best[nprocs, False]
        print(f"nprocs {nprocs}: all stale / none stale: wall {ws / wn:.1f}x "
              f"({ws:.2f} / {wn:.2f} s), CPU {cs / cn:.1f}x ({cs:.2f} / {cn:.2f} s)")
    (w1, c1), (wn, cn) = best[1, True], best[n, True]
    print(f"all stale, nprocs 1 / nprocs {n}: wall {w1 / wn:.2f}x ({w1:.2f} / {wn:.2f} s), "
          f"CPU {c1 / cn:.2f}x ({c1:.2f} / {cn:.2f} s)")


if __name__ == "__main__":
    main()
