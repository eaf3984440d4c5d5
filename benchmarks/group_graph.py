"""The data-driven group level at two or more cohort sizes: graph size, wall and CPU time.

Issue 15, item 3: the group level's Nipype graph must not grow with the number of
participants. For each size this script simulates a cohort (``msica simulate``), runs the
participant level in data-driven mode once (kept under ``ROOT/n<N>/``), then runs the group
level on a fresh copy of the participant outputs in a child process and prints:

- ``nodes``: the nodes of :func:`workflows.group.groupica.init_group_ica_wf` on those runs
  (the graph Nipype schedules for back-reconstruction, FNC and their sinks);
- ``wall s`` and ``CPU s``: the group level (``ru_utime + ru_stime`` of the child and every
  process it waited for), and the CPU share of the wall;
- ``peak RSS``: the largest ``ru_maxrss`` of those processes.

Example::

    python benchmarks/group_graph.py /tmp/gg --n-subjects 8 24 --grid-mm 12 --orders 4 10

Sizes already prepared under ``ROOT`` are reused (delete ``ROOT/n<N>`` to rebuild one).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

_CLI = "import sys; from workflows.cli import run; sys.exit(run(sys.argv[1:]))"


def msica(*argv: str) -> subprocess.CompletedProcess:
    """Run the msica command line with ``argv`` in a child process (its output discarded)."""
    return subprocess.run([sys.executable, "-c", _CLI, *map(str, argv)], check=True,
                          stdout=subprocess.DEVNULL)


def run_measured(*argv: str) -> dict:
    """:func:`msica` with ``argv``: wall, CPU (the child and every process it waited for), and
    the largest peak RSS of those processes so far (GB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    msica(*argv)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rss_gb": after.ru_maxrss / 2**20}


def prepare(root: Path, n_subjects: int, grid_mm: float, orders: list[str],
            nprocs: int) -> Path:
    """Simulate ``n_subjects`` and run the participant level once; return the size's folder."""
    folder = root / f"n{n_subjects}"
    if (folder / "participant.done").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    msica("simulate", folder / "bids", "--n-subjects", n_subjects, "--grid-mm", grid_mm,
           "--n-volumes", 120, "--seed", 3)
    msica(folder / "bids", folder / "out_participant", "participant", "-w", folder / "work",
           "--nprocs", nprocs, "--model-orders", *orders, "--no-reports")
    (folder / "participant.done").touch()
    return folder


def count_nodes(folder: Path, orders: list[str], nprocs: int) -> int:
    """Nodes of the data-driven group graph on the runs of ``folder`` (built, not run)."""
    from workflows.group.groupica import collect_subject_pcas, init_group_ica_wf

    workflow = init_group_ica_wf(pca_files=collect_subject_pcas(folder / "work" / "subject_pca"),
                                 output_dir=folder / "scratch",
                                 model_orders=tuple(map(int, orders)), nprocs=nprocs)
    return len(workflow._get_all_nodes())


def time_group(folder: Path, orders: list[str], nprocs: int) -> dict:
    """Run the group level on a fresh copy of the participant outputs; wall, CPU, peak RSS."""
    out, work = folder / "out_group", folder / "work_group"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(folder / "out_participant", out)
    return run_measured(folder / "bids", out, "group", "-w", work, "--pca-dir",
                        folder / "work" / "subject_pca", "--nprocs", nprocs, "--model-orders",
                        *orders, "--icasso-runs", 4, "--no-reports")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder of the simulated cohorts (kept)")
    parser.add_argument("--n-subjects", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--grid-mm", type=float, default=12.0)
    parser.add_argument("--orders", nargs="+", default=["4", "10"])
    parser.add_argument("--nprocs", type=int, default=2)
    args = parser.parse_args()
    print(f"{'participants':>12} {'nodes':>6} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>8} "
          f"{'peak RSS GB':>11}")
    for n_subjects in args.n_subjects:
        folder = prepare(args.root, n_subjects, args.grid_mm, args.orders, args.nprocs)
        nodes = count_nodes(folder, args.orders, args.nprocs)
        res = time_group(folder, args.orders, args.nprocs)
        print(f"{n_subjects:>12} {nodes:>6} {res['wall']:>8.1f} {res['cpu']:>8.1f} "
              f"{res['cpu'] / res['wall']:>8.2f} {res['rss_gb']:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
