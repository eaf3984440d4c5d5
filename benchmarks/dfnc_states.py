"""Peak memory of the group dFNC states step against the size of the windows it clusters.

The group level's ``DFNCStates`` node reads every run's sliding-window FNC
(``desc-dfnc_timeseries.tsv``) and clusters all windows (GIFT's exemplar L1
k-means): the windows must be in memory together, so they are the floor. Each
case runs in a fresh process; the figure is the peak resident memory above the
process's imports divided by the bytes of the windows (float64).

Usage::

    python benchmarks/dfnc_states.py --n-runs 100 300 1000 --n-networks 53 --n-states 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RANDOM_STATE = 0


def make_runs(folder: Path, n_runs: int, n_windows: int, n_networks: int) -> list[str]:
    """Write ``n_runs`` random dFNC tables (correlation-like values) as the participant level does."""
    from pipeline.fnc.names import edge_name

    rng = np.random.default_rng(RANDOM_STATE)
    nodes = [f"s{n_networks}-N{i + 1}" for i in range(n_networks)]
    columns = [edge_name(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]
    files = []
    for run in range(n_runs):
        path = folder / f"sub-{run + 1:04d}_task-rest_desc-dfnc_timeseries.tsv"
        if not path.exists():
            values = np.tanh(rng.standard_normal((n_windows, len(columns))) * 0.3)
            pd.DataFrame(values, columns=columns).to_csv(path, sep="\t", index=False,
                                                         float_format="%.6f")
        files.append(str(path))
    return files


def _case(files: list[str], n_states: int | None) -> None:
    """One measurement, in this (fresh) process: print a JSON line."""
    import contextlib

    # the node's lazy imports, before the baseline
    import pipeline.features
    import pipeline.fnc.states  # noqa: F401
    from workflows.interfaces.features import DFNCStates

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as cwd, contextlib.chdir(cwd):
        node = DFNCStates(dfnc_files=files, random_state=RANDOM_STATE)
        if n_states:
            node.inputs.n_states = n_states
        node.run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"cpu_s": time.process_time() - cpu, "above_imports_kib": peak - base}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-runs", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--n-networks", type=int, default=53)
    parser.add_argument("--n-windows", type=int, default=120)
    parser.add_argument("--n-states", type=int, default=4,
                        help="given number of states (0: chosen by the elbow, slower)")
    parser.add_argument("--data-dir", help="where the tables are written (default: a temp dir)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        _case(json.loads(Path(args.case).read_text()), args.n_states or None)
        return
    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="dfnc_states_"))
    folder.mkdir(parents=True, exist_ok=True)
    n_pairs = args.n_networks * (args.n_networks - 1) // 2
    print(f"DFNCStates: {args.n_windows} windows x {n_pairs} pairs per run, "
          f"states {args.n_states or 'elbow'}; peak above imports / bytes of the windows")
    print(f"{'runs':>6} {'windows GB':>11} {'peak GB':>8} {'x windows':>10} {'CPU s':>7}")
    for n_runs in args.n_runs:
        files = make_runs(folder, n_runs, args.n_windows, args.n_networks)
        listing = folder / f"files_{n_runs}.json"
        listing.write_text(json.dumps(files))
        out = subprocess.run([sys.executable, __file__, "--case", str(listing),
                              "--n-states", str(args.n_states)],
                             capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        windows = n_runs * args.n_windows * n_pairs * 8
        peak = res["above_imports_kib"] * 1024
        print(f"{n_runs:>6} {windows / 1e9:>11.3f} {peak / 1e9:>8.3f} {peak / windows:>10.2f} "
              f"{res['cpu_s']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
