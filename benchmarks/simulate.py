"""Time the simulator: ``simulate_cohort`` (arrays) and ``write_bids_dataset`` (files).

There is no peer implementation to race; the two stages are timed side by side
so the ratio shows where the time goes.

Example::

    python benchmarks/simulate.py --n-subjects 24 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


from pipeline.simulate import simulate_cohort
from workflows.bids.simulated import write_bids_dataset


def make_data(n_subjects: int, n_volumes: int, grid_mm: float):
    """Simulate a cohort (timed by the caller)."""
    return simulate_cohort(n_subjects=n_subjects, n_volumes=n_volumes, grid_mm=grid_mm,
                           random_state=0)


def run(n_subjects: int, n_volumes: int, grid_mm: float) -> dict:
    """Simulate and write one cohort; return timings in seconds."""
    t0 = time.perf_counter()
    cohort = make_data(n_subjects, n_volumes, grid_mm)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_bids_dataset(cohort, Path(tmp) / "bids")
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in (Path(tmp) / "bids").rglob("*") if p.is_file())
    return {"simulate": t1 - t0, "write": t2 - t1, "voxels": int(cohort.mask.sum()),
            "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, nargs="+", default=[24, 200])
    parser.add_argument("--n-volumes", type=int, default=150)
    parser.add_argument("--grid-mm", type=float, default=6.0)
    args = parser.parse_args()
    print(f"device=cpu dtype=float32 (bold) n_volumes={args.n_volumes} grid_mm={args.grid_mm} "
          f"random_state=0")
    print(f"{'n_subj':>7} {'voxels':>7} {'sim_s':>8} {'write_s':>8} {'total_s':>8} "
          f"{'s/subj':>7} {'write/sim':>9} {'MB':>7}")
    for n in args.n_subjects:
        res = run(n, args.n_volumes, args.grid_mm)
        total = res["simulate"] + res["write"]
        print(f"{n:>7d} {res['voxels']:>7d} {res['simulate']:>8.2f} {res['write']:>8.2f} "
              f"{total:>8.2f} {total / n:>7.3f} {res['write'] / res['simulate']:>9.2f} "
              f"{res['bytes'] / 1e6:>7.1f}")



if __name__ == "__main__":
    main()
