"""Cost of recording gradient spectra every training step.

Times one optimisation step (forward, cross-entropy, backward, Adam) of an MLP
on FNC-sized inputs, and the same step plus a per-layer, per-group spectrum by

* ``recorded``: msica's :class:`SpectrumRecorder` (QR/Gram route, gradients
  never formed);
* ``explicit``: the same captured rows, but each group's gradient share
  ``D_gᵀ A_g`` formed and a full ``torch.linalg.svd`` taken;
* ``grad_svdvals``: ``torch.linalg.svdvals`` of every ``.grad`` (whole batch
  only: no per-group spectra);
* ``func``: per-sample gradients with ``torch.func`` (``vmap(grad)``), summed
  per group, then ``svdvals`` of each group's and the whole gradient.

Prints seconds per step and the ratio to the plain step. Goal: ``recorded`` <
1.5x plain for the MLP with 5000 inputs, batch 64, on CPU. ``--model cnn`` /
``--model gru`` time the time-course models instead (``--hidden`` gives the
CNN channels or the GRU hidden size).

Run ``python benchmarks/introspect.py --help`` for sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from pipeline.introspect import (
    FNCMLP,
    GradientCapture,
    SpectrumRecorder,
    TimecourseCNN,
    TimecourseGRU,
)


def _time_round_robin(fns: dict, reps: dict, warmup: int = 1) -> dict:
    """Median (wall, process CPU) seconds per call, variants interleaved.

    Interleaving makes load drift hit all variants alike; process CPU time is
    less sensitive than wall time to other processes on a shared machine.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    for r in range(max(reps.values())):
        for k, fn in fns.items():
            if r >= reps[k]:
                continue
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: (statistics.median(times[k]), statistics.median(cpu[k])) for k in fns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn", "gru"])
    parser.add_argument("--n-features", type=int, default=5000, help="MLP inputs")
    parser.add_argument("--n-volumes", type=int, default=100, help="CNN/GRU time points")
    parser.add_argument("--n-networks", type=int, default=53, help="CNN/GRU input channels")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-groups", type=int, default=2)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--method", default="auto", choices=["auto", "qr", "gram", "direct"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-func", action="store_true", help="skip the torch.func peer")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    random_state = 0

    rng = np.random.RandomState(random_state)
    shape = (args.batch_size, args.n_features) if args.model == "mlp" else (
        args.batch_size, args.n_volumes, args.n_networks)
    X = torch.as_tensor(rng.randn(*shape), dtype=dtype, device=device)
    y = torch.as_tensor(rng.randint(0, 2, args.batch_size), device=device)
    groups = np.asarray([f"g{i}" for i in rng.randint(0, args.n_groups, args.batch_size)])
    codes = torch.as_tensor(np.unique(groups, return_inverse=True)[1], device=device)

    def make():
        if args.model == "mlp":
            net = FNCMLP(args.n_features, hidden=tuple(args.hidden), random_state=random_state)
        elif args.model == "cnn":
            net = TimecourseCNN(args.n_networks, channels=tuple(args.hidden), random_state=random_state)
        else:
            net = TimecourseGRU(args.n_networks, hidden_size=args.hidden[0], random_state=random_state)
        net = net.to(device=device, dtype=dtype)
        return net, torch.optim.Adam(net.parameters(), lr=1e-4)

    loss_fn = nn.CrossEntropyLoss()

    # 1. plain
    net, opt = make()

    def plain():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(X), y).backward()
        opt.step()


    # 2. msica recorder, every step
    net_r, opt_r = make()
    rec = SpectrumRecorder(net_r, record_every=1, method=args.method)
    counter = iter(range(10**9))

    def recorded():
        opt_r.zero_grad(set_to_none=True)
        with rec.record(next(counter), groups=groups):
            loss_fn(net_r(X), y).backward()
        opt_r.step()


    # 3. explicit group gradients + full SVD
    net_e, opt_e = make()
    cap = GradientCapture(net_e)

    def explicit():
        opt_e.zero_grad(set_to_none=True)
        loss_fn(net_e(X), y).backward()
        for flist in cap.collect().values():
            for f in flist:
                rc = codes[f.sample]
                torch.linalg.svd(f.D.T @ f.A, full_matrices=False)
                for g in range(args.n_groups):
                    sel = rc == g
                    torch.linalg.svd(f.D[sel].T @ f.A[sel], full_matrices=False)
        cap.clear()
        opt_e.step()


    # 4. svdvals of every .grad (whole batch only)
    net_s, opt_s = make()

    def grad_svdvals():
        opt_s.zero_grad(set_to_none=True)
        loss_fn(net_s(X), y).backward()
        for p in net_s.parameters():
            if p.ndim >= 2:
                torch.linalg.svdvals(p.grad.reshape(p.shape[0], -1))
        opt_s.step()


    # 5. per-sample gradients with torch.func
    fns = {"plain": plain, "recorded": recorded, "explicit": explicit, "grad_svdvals": grad_svdvals}
    reps = {k: args.reps for k in fns}
    if not args.skip_func:
        net_f, opt_f = make()
        params = {k: v.detach() for k, v in net_f.named_parameters()}
        batch = args.batch_size

        def sample_loss(p, xi, yi):
            out = functional_call(net_f, p, (xi.unsqueeze(0),))
            return loss_fn(out, yi.unsqueeze(0)) / batch  # mean reduction share

        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
        onehot = torch.nn.functional.one_hot(codes, args.n_groups).to(dtype)

        def func():
            opt_f.zero_grad(set_to_none=True)
            for k, v in net_f.named_parameters():
                params[k] = v.detach()
            g = per_sample(params, X, y)
            for k, v in net_f.named_parameters():
                v.grad = g[k].sum(0)
                if g[k].ndim >= 3:
                    gk = g[k].reshape(g[k].shape[0], g[k].shape[1], -1)
                    torch.linalg.svdvals(v.grad.reshape(v.shape[0], -1))
                    shares = torch.einsum("bg,bmn->gmn", onehot, gk)
                    torch.linalg.svdvals(shares)
            opt_f.step()

        fns["func"] = func
        reps["func"] = max(3, args.reps // 4)
    t = _time_round_robin(fns, reps)
    n_rec = len(rec.spectra) // (args.reps + 1)
    rec.remove()
    cap.remove()

    print(
        f"model={args.model} device={device} dtype={args.dtype} torch_threads={torch.get_num_threads()} "
        f"input={tuple(X.shape)} hidden={args.hidden} batch={args.batch_size} "
        f"groups={args.n_groups} method={args.method} reps={args.reps}"
    )
    print(f"(singular values recorded per step: {n_rec}; CPU timings taken under shared load)")
    print(f"{'variant':<36}{'wall s/step':>12}{'x plain':>10}{'cpu s/step':>12}{'x plain':>10}")
    names = {
        "plain": "plain step",
        "recorded": "msica recorder (every step)",
        "explicit": "explicit group grads + full SVD",
        "grad_svdvals": "svdvals of every .grad (no groups)",
        "func": "torch.func per-sample grads",
    }
    w0, c0 = t["plain"]
    for key, (w, c) in t.items():
        print(f"{names[key]:<36}{w:>12.5f}{w / w0:>10.2f}{c:>12.5f}{c / c0:>10.2f}")


if __name__ == "__main__":
    main()
