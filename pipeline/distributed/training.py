"""Per-process training loop of one site (``torch.distributed``, any backend).

:func:`train_site` runs inside a process whose default process group is
already initialised (see :mod:`pipeline.distributed.launch`). Each site keeps
its rows; the parameters stay identical on all sites because every site
applies the same rebuilt global gradient (see :mod:`pipeline.distributed.modes`).

Batching: every site draws a local batch of exactly ``batch_size`` rows per
step (its own rows reshuffled every epoch, cycled when it has fewer rows than
the number of steps needs), so the global batch has ``world_size *
batch_size`` rows. The number of steps per epoch is the largest over sites of
``ceil(n_site / batch_size)``. The loss is the cross-entropy summed over the
local batch; the exchange divides by the global batch size, so the update is
that of the mean loss over the global batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pipeline._validation import check_in_allowed, check_int, check_random_state, derive_seeds
from pipeline.distributed.modes import (
    MODES,
    ByteCounter,
    exchange_dad,
    exchange_dsgd,
    exchange_rankdad,
    linear_layers,
)
from pipeline.introspect.hooks import GradientCapture
from pipeline.introspect.linalg import batch_and_group_svdvals
from pipeline.introspect.models import FNCMLP

__all__ = ["pooled_standardizer", "train_site"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _spectra(received, world: int, total_batch: int, step: int, epoch: int) -> list[dict]:
    """Whole-batch and per-site spectra of each layer from the exchanged rows."""
    rows = []
    for name, ex in received.items():
        D = torch.cat(ex.D).double()
        A = torch.cat(ex.A).double()
        codes = torch.cat([torch.full((d.shape[0],), s, dtype=torch.long)
                           for s, d in enumerate(ex.D)])
        whole, groups = batch_and_group_svdvals(D, A, codes, world)
        rows.append({"epoch": epoch, "step": step, "layer": name, "group": "all",
                     "svdvals": (whole / total_batch).numpy()})
        for s, g in enumerate(groups):
            rows.append({"epoch": epoch, "step": step, "layer": name, "group": f"site-{s}",
                         "svdvals": (g / total_batch).numpy()})
    return rows


def _global_accuracy(model, X, y) -> float:
    with torch.no_grad():
        correct = (model(X).argmax(1) == y).sum().to(torch.float64) if len(y) else torch.zeros(
            (), dtype=torch.float64)
    t = torch.stack([correct, torch.tensor(float(len(y)), dtype=torch.float64)])
    dist.all_reduce(t)
    return float(t[0] / t[1]) if t[1] > 0 else float("nan")


def pooled_standardizer(
    X: torch.Tensor, all_reduce: Callable[[torch.Tensor], Any]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The standardisation by the mean and SD of the features pooled over all sites.

    Each site passes its own rows; one all-reduce of the per-feature sums,
    sums of squares and row count (float64) gives every site the same
    statistics. Constant features are divided by 1.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
        This site's rows.
    all_reduce : callable
        Sums a tensor in place over the sites (``torch.distributed.all_reduce``
        or a counting wrapper of it).

    Returns
    -------
    callable
        ``scale(Z) = (Z - mean) / std`` in ``Z``'s dtype.

    Examples
    --------
    >>> import torch
    >>> scale = pooled_standardizer(torch.tensor([[1.0], [3.0]]), lambda t: t)  # one site
    >>> scale(torch.tensor([[1.0], [3.0]]))
    tensor([[-1.],
            [ 1.]])
    """
    stats = torch.cat([X.sum(0), (X * X).sum(0), torch.tensor([float(X.shape[0])])]).double()
    all_reduce(stats)
    p = X.shape[1]
    mean = stats[:p] / stats[-1]
    std = (stats[p:2 * p] / stats[-1] - mean ** 2).clamp_min(0).sqrt()
    std[std == 0] = 1.0
    return lambda Z: (Z - mean.to(Z.dtype)) / std.to(Z.dtype)


def _identity(Z: torch.Tensor) -> torch.Tensor:
    return Z


def train_site(
    rank: int,
    world_size: int,
    X_site: np.ndarray,
    y_site: np.ndarray,
    *,
    mode: str = "dsgd",
    rank_r: int | None = None,
    energy: float | None = None,
    epochs: int = 10,
    batch_size: int = 16,
    lr: float = 0.1,
    random_state: Any = 0,
    hidden: tuple = (32,),
    dtype: str = "float32",
    n_power_iter: int = 2,
    standardize: bool = True,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    record_params: bool = False,
    record_spectra: bool = True,
) -> dict:
    """Train an :class:`~pipeline.introspect.models.FNCMLP` on this site's rows.

    Parameters
    ----------
    rank : int
        This process's rank in the default process group.
    world_size : int
        Number of sites (processes).
    X_site : ndarray of shape (n_site, n_features)
        This site's features (never sent).
    y_site : ndarray of shape (n_site,)
        Integer class labels in ``[0, n_classes)``.
    mode : {"dsgd", "dad", "rankdad"}, default="dsgd"
        Gradient exchange (see :mod:`pipeline.distributed.modes`).
    rank_r : int or None, default=None
        Rank of the rankdad factors (capped per layer by ``min(batch_size, m, n + 1)``);
        ``None`` means full rank (or, with ``energy``, no cap).
    energy : float in (0, 1] or None, default=None
        rankdad only: choose ``r`` per layer and step as the smallest rank
        whose singular values hold this share of the squared Frobenius norm
        of the local share (largest over sites).
    epochs, batch_size : int
        Passes over the data; rows per site per step.
    lr : float
        Learning rate of plain SGD.
    random_state : None, int or RandomState
        Same value on every site: gives the same initial weights everywhere;
        the batch order is drawn from a sub-seed that differs per rank.
    hidden : tuple of int, default=(32,)
        Hidden widths of the MLP.
    dtype : {"float32", "float64"}, default="float32"
    n_power_iter : int, default=2
        rankdad power sweeps.
    standardize : bool, default=True
        Standardize features with the *global* mean and standard deviation,
        obtained by all-reducing per-site sums (setup bytes, not per step).
    X_test, y_test : ndarray or None
        This site's held-out rows; the global test accuracy is reported.
    record_params : bool, default=False
        Keep the flattened parameters after every step (for tests).
    record_spectra : bool, default=True
        At the last step of each epoch, compute whole-batch and per-site
        gradient spectra from the exchanged rows (dad, rankdad) or from the
        local rows and the all-reduced gradient (dsgd: own site only).

    Returns
    -------
    dict
        ``bytes_per_step`` (list of int), ``calls_per_step``, ``step_seconds``,
        ``exchange_seconds``, ``loss`` (global mean loss per epoch),
        ``train_accuracy``, ``test_accuracy`` (global), ``ranks`` (rankdad: rank
        sent per layer at the last step), ``spectra`` (list of dict rows with
        ``epoch, step, layer, group, svdvals``), ``param_spread`` (max abs
        difference of the final parameters across sites), ``params`` (list of
        ndarray with ``record_params``), ``setup_bytes``, ``n_parameters``.

    Raises
    ------
    ValueError
        For an unknown mode, bad sizes, or labels/features that differ in shape
        across sites.
    """
    check_in_allowed("mode", mode, MODES)
    check_in_allowed("dtype", dtype, list(_DTYPES))
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1),
                             ("n_power_iter", n_power_iter, 0)):
        check_int(name, value, low)
    if rank_r is not None:
        check_int("rank_r", rank_r, 1)
    if energy is not None and not 0 < float(energy) <= 1:
        raise ValueError(f"'energy' must be in (0, 1]. Got {energy!r}.")
    tdtype = _DTYPES[dtype]
    X = torch.as_tensor(np.asarray(X_site), dtype=tdtype)
    y = torch.as_tensor(np.asarray(y_site), dtype=torch.long)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] < 1:
        raise ValueError(
            f"'X_site' must be 2-D with one row per label and at least one row. Got shapes "
            f"{tuple(X.shape)} and {tuple(y.shape)}."
        )
    setup = ByteCounter()
    info = torch.tensor([X.shape[1], int(y.max()) + 1, math.ceil(X.shape[0] / batch_size)],
                        dtype=torch.int64)
    lo, hi = info.clone(), info.clone()
    setup.all_reduce(lo, op=dist.ReduceOp.MIN)
    setup.all_reduce(hi, op=dist.ReduceOp.MAX)
    if lo[0] != hi[0]:
        raise ValueError(
            f"'X_site' must have the same number of features on every site. Got {int(lo[0])} "
            f"to {int(hi[0])}; align the feature tables."
        )
    n_classes, steps_per_epoch = max(2, int(hi[1])), int(hi[2])
    scale = pooled_standardizer(X, setup.all_reduce) if standardize else _identity
    X = scale(X)

    seed_model, seed_order, seed_power = derive_seeds(random_state, 3)
    model = FNCMLP(X.shape[1], n_classes, hidden=tuple(hidden), random_state=seed_model).to(tdtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    capture = GradientCapture(model, include_bias=True)
    layers = linear_layers(model, capture.layers_) if mode != "dsgd" else capture.layers_
    total_batch = world_size * batch_size
    order_rng = check_random_state(int(seed_order) + 7919 * rank)
    gen = torch.Generator().manual_seed(int(seed_power) + 104729 * rank)
    counter = ByteCounter()
    out: dict = {"rank": rank, "mode": mode, "bytes_per_step": [], "calls_per_step": [],
                 "step_seconds": [], "exchange_seconds": [], "loss": [], "spectra": [],
                 "params": [], "ranks": {},
                 "n_parameters": sum(p.numel() for p in model.parameters())}

    n_local = X.shape[0]
    step = 0
    for epoch in range(epochs):
        need = steps_per_epoch * batch_size
        order = np.concatenate([order_rng.permutation(n_local)
                                for _ in range(math.ceil(need / n_local))])[:need]
        epoch_loss = 0.0
        for b in range(steps_per_epoch):
            idx = torch.as_tensor(order[b * batch_size:(b + 1) * batch_size])
            record = record_spectra and b == steps_per_epoch - 1
            t0 = time.perf_counter()
            counter.new_step()
            capture.clear()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            factors = capture.collect()
            t1 = time.perf_counter()
            if mode == "dsgd":
                exchange_dsgd(model, counter, total_batch)
                received = None
            elif mode == "dad":
                received = exchange_dad(layers, factors, counter, total_batch)
            else:
                received = exchange_rankdad(layers, factors, counter, total_batch, rank_r=rank_r,
                                            energy=energy, n_iter=n_power_iter, generator=gen)
                out["ranks"] = {k: v.rank for k, v in received.items()}
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            out["bytes_per_step"].append(counter.step)
            out["calls_per_step"].append(counter.calls)
            out["step_seconds"].append(t3 - t0)
            out["exchange_seconds"].append(t2 - t1)
            epoch_loss += float(loss.detach())
            if record_params:
                out["params"].append(torch.cat([p.detach().reshape(-1) for p in
                                                model.parameters()]).double().numpy().copy())
            if record:
                out["spectra"] += _record(mode, received, factors, layers, world_size,
                                          rank, total_batch, step, epoch)
            step += 1
        t = torch.tensor([epoch_loss], dtype=torch.float64)
        dist.all_reduce(t)
        out["loss"].append(float(t[0]) / (steps_per_epoch * total_batch))
    capture.remove()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    allp = [torch.empty_like(flat) for _ in range(world_size)]
    dist.all_gather(allp, flat)
    out["param_spread"] = float(max((a - flat).abs().max() for a in allp))
    out["train_accuracy"] = _global_accuracy(model, X, y)
    if X_test is not None and y_test is not None:
        Xt = scale(torch.as_tensor(np.asarray(X_test), dtype=tdtype))
        out["test_accuracy"] = _global_accuracy(model, Xt, torch.as_tensor(np.asarray(y_test),
                                                                           dtype=torch.long))
    else:
        out["test_accuracy"] = float("nan")
    out["setup_bytes"] = setup.total
    return out


def _record(mode, received, factors, layers, world, rank, total_batch, step, epoch):
    if mode != "dsgd":
        return _spectra(received, world, total_batch, step, epoch)
    rows = []
    for name, module in layers.items():
        f = factors[name][0]
        whole = module.weight.grad.double()
        if module.bias is not None:
            whole = torch.cat([whole, module.bias.grad.double()[:, None]], 1)
        local, _ = batch_and_group_svdvals(f.D.double(), f.A.double(), None, 0)
        rows.append({"epoch": epoch, "step": step, "layer": name, "group": "all",
                     "svdvals": torch.linalg.svdvals(whole).numpy()})
        rows.append({"epoch": epoch, "step": step, "layer": name, "group": f"site-{rank}",
                     "svdvals": (local / total_batch).numpy()})
    return rows
