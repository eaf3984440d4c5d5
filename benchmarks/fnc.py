"""Benchmark msica's FNC features against nilearn's ConnectivityMeasure (same inputs, same run).

Participant level: post-processing + static FNC + dFNC of one participant
(default 105 networks, 200 volumes). Group level: static FNC of many
participants and the tidy edge table. The peer is nilearn's
``ConnectivityMeasure(kind="correlation")`` (static: on the whole run; dFNC:
on the list of tapered windows). Ratios are msica time / peer time.

Usage::

    python benchmarks/fnc.py --n-networks 105 --n-volumes 200 --n-participants 1000
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np

from pipeline.features import static_fnc_table
from pipeline.fnc.dynamic import _windows, sliding_window_fnc
from pipeline.fnc.names import network_labels
from pipeline.fnc.static import StaticFNC, static_fnc
from pipeline.fnc.timecourse import postprocess

RANDOM_STATE = 0
T_R = 2.0
PARAMS = {"window": [30], "sigma": [3.0]}


def make_data(n_participants: int, n_volumes: int, n_networks: int) -> np.ndarray:
    """Smooth random time courses, float64, shape (n_participants, n_volumes, n_networks)."""
    rng = np.random.default_rng(RANDOM_STATE)
    mixing = rng.standard_normal((n_networks, n_networks)) / np.sqrt(n_networks)
    x = rng.standard_normal((n_participants, n_volumes, n_networks)) @ mixing
    return np.cumsum(x, axis=1) * 0.1 + x


def make_peer():
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance

    # nilearn's default estimator is Ledoit-Wolf; the empirical one matches GIFT/msica
    return ConnectivityMeasure(
        cov_estimator=EmpiricalCovariance(store_precision=False), kind="correlation",
        standardize=False,
    )


def _best_of(func: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_participant(tcs: np.ndarray, window: int, sigma: float, repeats: int) -> dict:
    clean = postprocess(tcs, T_R)
    t_post = _best_of(lambda: postprocess(tcs, T_R), repeats)
    t_static = _best_of(lambda: static_fnc(clean), repeats)
    t_dyn = _best_of(lambda: sliding_window_fnc(clean, window=window, sigma=sigma), repeats)
    peer = make_peer()
    t_peer_static = _best_of(lambda: peer.fit_transform([clean]), repeats)
    wins = _windows(clean, window, sigma, False)
    t_peer_dyn = _best_of(lambda: make_peer().fit_transform(wins), repeats)
    # agreement with the peer (arctanh of nilearn correlations, zero diagonal)
    ref = np.arctanh(np.clip(peer.fit_transform([clean])[0], -0.999999, 0.999999))
    np.fill_diagonal(ref, 0)
    return {
        "postprocess_s": t_post,
        "static_s": t_static,
        "dfnc_s": t_dyn,
        "peer_static_s": t_peer_static,
        "peer_dfnc_s": t_peer_dyn,
        "max_abs_diff_static": float(np.abs(static_fnc(clean) - ref).max()),
    }


def bench_group(data: np.ndarray, repeats: int) -> dict:
    n_sub, _, n = data.shape
    split = n // 4
    subjects = [{25: x[:, :split], 80: x[:, split:]} for x in data]
    labels = network_labels(25, split) + network_labels(80, n - split)
    ids = [f"sub-{i:04d}" for i in range(n_sub)]
    est = StaticFNC().fit(subjects[0])
    fnc = est.transform(subjects)
    t_fnc = _best_of(lambda: est.transform(subjects), repeats)
    t_table = _best_of(lambda: static_fnc_table(fnc, labels, ids), repeats)
    peer = make_peer()
    peer.set_params(vectorize=True, discard_diagonal=True)
    listed = list(data)
    t_peer = _best_of(lambda: peer.fit_transform(listed), repeats)
    return {"static_group_s": t_fnc, "table_s": t_table, "peer_group_vectorized_s": t_peer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-networks", type=int, default=105)
    parser.add_argument("--n-volumes", type=int, default=200)
    parser.add_argument("--n-participants", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"device: CPU ({platform.processor() or platform.machine()}), dtype: float64")
    print(f"shapes: participant ({args.n_volumes}, {args.n_networks}); group "
          f"({args.n_participants}, {args.n_volumes}, {args.n_networks}); t_r={T_R}")
    for window in PARAMS["window"]:
        for sigma in PARAMS["sigma"]:
            one = make_data(1, args.n_volumes, args.n_networks)[0]
            res = bench_participant(one, window, sigma, args.repeats)
            print(f"\n[participant] window={window} sigma={sigma}")
            for key, val in res.items():
                print(f"  {key:24s} {val:.4g}")
            print(f"  ratio static  msica/nilearn     {res['static_s'] / res['peer_static_s']:.3f}")
            print(f"  ratio dFNC    msica/nilearn     {res['dfnc_s'] / res['peer_dfnc_s']:.3f}")
            total = res["postprocess_s"] + res["static_s"] + res["dfnc_s"]
            print(f"  msica participant total (s)     {total:.4g}")
    group = make_data(args.n_participants, args.n_volumes, args.n_networks)
    res = bench_group(group, max(1, args.repeats - 2))
    print(f"\n[group] {args.n_participants} participants, {args.n_networks} networks "
          f"({args.n_networks * (args.n_networks - 1) // 2} edges)")
    for key, val in res.items():
        print(f"  {key:24s} {val:.4g}")
    ratio = res["static_group_s"] / res["peer_group_vectorized_s"]
    print(f"  ratio static FNC msica/nilearn  {ratio:.3f}")
    print(f"  ratio FNC+table  msica/nilearn  "
          f"{(res['static_group_s'] + res['table_s']) / res['peer_group_vectorized_s']:.3f}")


if __name__ == "__main__":
    main()
