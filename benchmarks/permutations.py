"""Permutation tests of the whole nested CV: cost per permutation, scaling, 1 vs 2 processes.

Each permutation reruns msica's complete nested cross-validation
(:func:`pipeline.classify.validation.permutation_test`), so the cost is linear
in the number of permutations; the permutations (and the outer folds of the
unpermuted run) are spread over ``n_jobs`` processes with joblib. This script

1. times a few permutations at several cohort sizes with a NeuroMark-53-sized
   feature table (1,378 edges), fits time per permutation against the number
   of participants (least squares on log-log: a power law), and extrapolates
   to ``--target-participants`` x ``--target-permutations`` (default 1000 x 1000);
2. times the same permutations with 1 and 2 processes and prints the speed-up.

Settings are msica's group-level defaults for ``--connectivity fnc``: F-ranked
k in (1%, 5%, 20%, all), L2 logistic with C in (0.001, 0.01, 0.1, 1), 5 inner
folds leaving sites out, 5 outer folds keeping 10 sites apart.

Usage::

    python benchmarks/permutations.py --sizes 100 200 400 --n-permutations 4
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

N_EDGES = 53 * 52 // 2  # NeuroMark 1.0: 53 networks


def make_data(n_participants, n_edges=N_EDGES, n_sites=10, random_state=0):
    """Gaussian edges, two balanced classes per site, 10 shifted edges, site offsets."""
    rng = np.random.RandomState(random_state)
    sites = np.arange(n_participants) % n_sites
    y = np.where((np.arange(n_participants) // n_sites) % 2 == 0, "patient", "control")
    X = rng.randn(n_participants, n_edges) + 0.5 * rng.randn(n_sites, n_edges)[sites]
    X[y == "patient", :10] += 0.4
    return X, y, sites.astype(str)


def make_estimator(random_state=0):
    """msica's classifier with the group level's default search."""
    from pipeline.classify.search import FastSearchClassifier

    return FastSearchClassifier(models=("logistic_l2",), k_grid=(0.01, 0.05, 0.2, "all"),
                                inner_cv=5, random_state=random_state)


def time_permutations(n_participants, n_permutations, n_jobs):
    """Seconds per permutation (after the unpermuted run, which is timed apart)."""
    from pipeline.classify.validation import nested_cross_validate, permutation_test

    X, y, sites = make_data(n_participants)
    est = make_estimator()
    t0 = time.perf_counter()
    observed = nested_cross_validate(est, X, y, groups=sites, random_state=0, n_bootstrap=0,
                                     n_jobs=n_jobs)
    t_observed = time.perf_counter() - t0
    t0 = time.perf_counter()
    permutation_test(est, X, y, groups=sites, n_permutations=n_permutations, random_state=0,
                     observed=observed, n_jobs=n_jobs)
    return (time.perf_counter() - t0) / n_permutations, t_observed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--n-permutations", type=int, default=4)
    parser.add_argument("--speedup-size", type=int, default=200)
    parser.add_argument("--target-participants", type=int, default=1000)
    parser.add_argument("--target-permutations", type=int, default=1000)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one BLAS thread per process: processes do the work
        _run(args)


def _run(args):
    print(f"machine: {platform.processor() or platform.machine()}, device cpu, float64, "
          f"{N_EDGES} edges (NeuroMark 53), 10 sites, 1 BLAS thread per process")
    per_perm = []
    for n in args.sizes:
        seconds, t_observed = time_permutations(n, args.n_permutations, n_jobs=1)
        per_perm.append(seconds)
        print(f"[scaling] {n:5d} participants: {seconds:6.2f} s per permutation "
              f"(unpermuted nested CV {t_observed:.2f} s; {args.n_permutations} permutations)")
    slope, intercept = np.polyfit(np.log(args.sizes), np.log(per_perm), 1)
    at_target = float(np.exp(intercept) * args.target_participants ** slope)
    total_h = at_target * args.target_permutations / 3600
    print(f"[extrapolation] time per permutation ~ n^{slope:.2f}; at "
          f"{args.target_participants} participants: {at_target:.1f} s per permutation, "
          f"{args.target_permutations} permutations: {total_h:.1f} CPU-hours on one process "
          f"({total_h / 2:.1f} h on 2, {total_h / 32:.2f} h on 32 processes, linear in "
          "permutations)")
    one, _ = time_permutations(args.speedup_size, args.n_permutations, n_jobs=1)
    two, _ = time_permutations(args.speedup_size, args.n_permutations, n_jobs=2)
    print(f"[processes] {args.speedup_size} participants, {args.n_permutations} permutations: "
          f"1 process {one:.2f} s, 2 processes {two:.2f} s per permutation; speed-up "
          f"{one / two:.2f}x")


if __name__ == "__main__":
    main()
