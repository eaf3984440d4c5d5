"""Benchmark: bytes and time per step of dsgd, dad, rankdad vs PyTorch's PowerSGD.

Two local processes (sites), gloo on 127.0.0.1, CPU, float32. For each local
batch ``B`` and layer width ``w`` an MLP ``w -> w -> 2`` (FNCMLP) takes a few
SGD steps in each mode; the peer is :class:`~torch.nn.parallel.DistributedDataParallel`
with ``powerSGD_hook`` at the same rank (``start_powerSGD_iter=2``, PyTorch's
defaults otherwise; its bytes are counted exactly by wrapping
``torch.distributed.all_reduce`` in the worker, after the two warm-up steps of
vanilla all-reduce). Bytes are the nbytes each process passes to collectives
per step; the ratios are to dsgd.

A second part trains on a simulated cohort (true static FNC, diagnosis label,
three sites) and compares held-out accuracy of the four modes.

Run: ``python benchmarks/distributed.py --batches 16 64 256 --widths 256 1024 4096``.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pipeline._validation import check_random_state, derive_seeds
from pipeline.distributed.launch import init_local_group, leave
from pipeline.distributed.training import pooled_standardizer, train_site
from pipeline.introspect.models import FNCMLP

__all__: list[str] = []

RANDOM_STATE = 0


def train_powersgd(rank, world, X, y, *, rank_r, epochs, batch_size, lr, hidden, random_state,
                   X_test=None, y_test=None, standardize=True):
    """DDP + powerSGD_hook, same init, batching and SGD as ``train_site``."""
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

    X = torch.as_tensor(X, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    scale = pooled_standardizer(X, dist.all_reduce) if standardize else None
    if scale is not None:
        X = scale(X)
    steps_t = torch.tensor([math.ceil(X.shape[0] / batch_size)])
    dist.all_reduce(steps_t, op=dist.ReduceOp.MAX)
    steps = int(steps_t)
    seed_model, seed_order, _ = derive_seeds(random_state, 3)
    n_classes = 2
    model = FNCMLP(X.shape[1], n_classes, hidden=tuple(hidden), random_state=seed_model)
    ddp = nn.parallel.DistributedDataParallel(model)
    state = psgd.PowerSGDState(process_group=None, matrix_approximation_rank=rank_r,
                               start_powerSGD_iter=2, random_seed=int(seed_order) % 2**31)
    ddp.register_comm_hook(state, psgd.powerSGD_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    order_rng = check_random_state(int(seed_order) + 7919 * rank)
    counted = {"bytes": 0}
    orig = dist.all_reduce

    def counting(tensor, *args, **kwargs):
        counted["bytes"] += tensor.numel() * tensor.element_size()
        return orig(tensor, *args, **kwargs)

    dist.all_reduce = counting
    out = {"bytes_per_step": [], "step_seconds": []}
    try:
        for _ in range(epochs):
            need = steps * batch_size
            order = np.concatenate([order_rng.permutation(X.shape[0])
                                    for _ in range(math.ceil(need / X.shape[0]))])[:need]
            for b in range(steps):
                idx = torch.as_tensor(order[b * batch_size:(b + 1) * batch_size])
                counted["bytes"] = 0
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss_fn(ddp(X[idx]), y[idx]).backward()
                opt.step()
                out["step_seconds"].append(time.perf_counter() - t0)
                out["bytes_per_step"].append(counted["bytes"])
    finally:
        dist.all_reduce = orig
    if X_test is not None:
        Xt = torch.as_tensor(X_test, dtype=torch.float32)
        if scale is not None:
            Xt = scale(Xt)
        with torch.no_grad():
            c = (model(Xt).argmax(1) == torch.as_tensor(y_test)).sum().double()
        t = torch.stack([c, torch.tensor(float(len(y_test)), dtype=torch.float64)])
        dist.all_reduce(t)
        out["test_accuracy"] = float(t[0] / t[1])
    return out


def _worker(rank, world, opts, result_path):
    torch.set_num_threads(opts.threads)  # this child process only
    init_local_group(rank, world, os.path.dirname(result_path))
    rows = []
    steps = opts.steps
    for B in opts.batches:
        for w in opts.widths:
            rng = np.random.RandomState(RANDOM_STATE + rank)
            X = rng.randn(steps * B, w).astype(np.float32)
            y = rng.randint(0, 2, steps * B)
            common = dict(epochs=1, batch_size=B, lr=0.01, hidden=(w,), random_state=RANDOM_STATE,
                          record_spectra=False, standardize=False)
            for mode, kw in (("dsgd", {}), ("dad", {}), ("rankdad", {"rank_r": opts.rank})):
                res = train_site(rank, world, X, y, mode=mode, **common, **kw)
                rows.append((B, w, mode, res["bytes_per_step"][-1],
                             float(np.median(res["step_seconds"][1:]))))
            res = train_powersgd(rank, world, X, y, rank_r=opts.rank, epochs=1, batch_size=B,
                                 lr=0.01, hidden=(w,), random_state=RANDOM_STATE, standardize=False)
            rows.append((B, w, "powersgd", res["bytes_per_step"][-1],
                         float(np.median(res["step_seconds"][2:]))))
            dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        torch.save({"rows": rows}, result_path)
    leave()


def _acc_worker(rank, world, opts, sim, result_path):
    torch.set_num_threads(1)
    init_local_group(rank, world, os.path.dirname(result_path))
    Xtr, ytr, Xte, yte = (s[rank] for s in sim)
    common = dict(epochs=opts.acc_epochs, batch_size=opts.acc_batch, lr=opts.lr,
                  hidden=(opts.acc_hidden,), random_state=RANDOM_STATE)
    acc = {}
    for seed in range(opts.acc_seeds):
        common["random_state"] = seed
        for mode, kw in (("dsgd", {}), ("dad", {}), ("rankdad", {"rank_r": opts.rank})):
            res = train_site(rank, world, Xtr, ytr, mode=mode, X_test=Xte, y_test=yte,
                             record_spectra=False, **common, **kw)
            acc.setdefault(mode, []).append(res["test_accuracy"])
            acc.setdefault(mode + "_bytes", []).append(res["bytes_per_step"][-1])
        res = train_powersgd(rank, world, Xtr, ytr, rank_r=opts.rank, X_test=Xte, y_test=yte,
                             **common)
        acc.setdefault("powersgd", []).append(res["test_accuracy"])
        acc.setdefault("powersgd_bytes", []).append(res["bytes_per_step"][-1])
    dist.destroy_process_group()
    if rank == 0:
        torch.save(acc, result_path)
    leave()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--rank", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--acc-subjects", type=int, default=120)
    parser.add_argument("--acc-sites", type=int, default=3)
    parser.add_argument("--acc-effect", type=float, default=0.2)
    parser.add_argument("--acc-noise", type=float, default=0.1,
                        help="sd of Gaussian estimation noise added to the true FNC edges "
                             "(about 1/sqrt(n_volumes) for a 100-volume scan)")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--acc-epochs", type=int, default=30)
    parser.add_argument("--acc-batch", type=int, default=8)
    parser.add_argument("--acc-hidden", type=int, default=256)
    parser.add_argument("--acc-seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    opts = parser.parse_args()

    print(f"device=cpu (gloo, local FileStore rendezvous), dtype=float32, sites={opts.sites}, rank r={opts.rank}, "
          f"torch {torch.__version__}, {opts.threads} thread(s) per site; timings on a shared, "
          "loaded machine")
    if not opts.skip_grid:
        _grid(opts)
    _accuracy(opts)


def _grid(opts) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "res.pt")
        mp.spawn(_worker, args=(opts.sites, opts, path), nprocs=opts.sites)
        rows = torch.load(path)["rows"]
    table = {}
    for B, w, mode, nbytes, sec in rows:
        table[(B, w, mode)] = (nbytes, sec)
    print(f"\nMLP w -> w -> 2, local batch B per site, {opts.steps} steps; bytes per step per site "
          "and median seconds per step; ratios to dsgd")
    print(f"{'B':>4} {'w':>5} {'dsgd bytes':>11} {'dsgd s':>8} | " + " | ".join(
        f"{m:>8} bytes/x  s/x" for m in ("dad", "rankdad", "powersgd")))
    for B in opts.batches:
        for w in opts.widths:
            b0, s0 = table[(B, w, "dsgd")]
            cells = []
            for m in ("dad", "rankdad", "powersgd"):
                b, s = table[(B, w, m)]
                cells.append(f"{b / b0:14.4f} {s / s0:5.2f}")
            flag = "B<w" if B < w else "   "
            print(f"{B:>4} {w:>5} {b0:>11d} {s0:8.4f} | " + " | ".join(cells) + f"  {flag}")
    print("\nwhere B < w: dad < dsgd bytes:",
          all(table[(B, w, 'dad')][0] < table[(B, w, 'dsgd')][0]
              for B in opts.batches for w in opts.widths if B < w),
          "; rankdad < dad:",
          all(table[(B, w, 'rankdad')][0] < table[(B, w, 'dad')][0]
              for B in opts.batches for w in opts.widths if B < w))


def _accuracy(opts) -> None:
    import tempfile

    from sklearn.model_selection import train_test_split

    from workflows.cli.sites import simulated_sites
    table_sim = simulated_sites(opts.acc_subjects, opts.acc_sites, effect_size=opts.acc_effect,
                                random_state=RANDOM_STATE)
    edges = [c for c in table_sim.columns if "__" in c]
    noise = np.random.RandomState(RANDOM_STATE).normal(0, opts.acc_noise,
                                                       (len(table_sim), len(edges)))
    table_sim[edges] = table_sim[edges].to_numpy() + noise
    sim = ([], [], [], [])
    for site in sorted(table_sim["site"].unique()):
        part = table_sim[table_sim["site"] == site]
        y = (part["diagnosis"] == "patient").to_numpy().astype(int)
        parts = train_test_split(part[edges].to_numpy(), y, test_size=0.3, stratify=y,
                                 random_state=RANDOM_STATE)
        for lst, arr in zip(sim, (parts[0], parts[2], parts[1], parts[3])):
            lst.append(arr)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "acc.pt")
        mp.spawn(_acc_worker, args=(opts.acc_sites, opts, sim, path),
                 nprocs=opts.acc_sites)
        acc = torch.load(path)
    print(f"\nsimulated cohort: {opts.acc_subjects} subjects, {opts.acc_sites} sites, "
          f"effect_size={opts.acc_effect}, noise sd {opts.acc_noise}, {len(edges)} FNC edges, "
          f"MLP hidden {opts.acc_hidden}, "
          f"B={opts.acc_batch}/site, {opts.acc_epochs} epochs, lr={opts.lr}, "
          f"{opts.acc_seeds} seeds; held-out accuracy (30% per site)")
    for m in ("dsgd", "dad", "rankdad", "powersgd"):
        a = np.array(acc[m])
        print(f"  {m:9s} accuracy {a.mean():.3f} +- {a.std():.3f}  "
              f"bytes/step/site {int(np.mean(acc[m + '_bytes']))}")


if __name__ == "__main__":
    main()
