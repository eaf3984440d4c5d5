"""Start one process per site and run :func:`~pipeline.distributed.training.train_site`.

Local (one machine, for tests and simulations): :func:`run_local` spawns
``n_sites`` processes with :func:`torch.multiprocessing.spawn`, joins them in a
``gloo`` process group through a file in a private temporary folder
(:func:`init_local_group`: no TCP port to choose, so no race for one), and
returns each site's result.

Real multi-site runs (one process per site, on separate machines) use the
``env://`` rendezvous of :func:`torch.distributed.init_process_group`: every
process needs ``MASTER_ADDR`` (host of rank 0, reachable by all sites),
``MASTER_PORT`` (a free TCP port there), ``WORLD_SIZE`` (number of sites) and
``RANK`` (this site, ``0 .. WORLD_SIZE - 1``). Then call :func:`run_from_env`
with the site's own rows. With ``torchrun``::

    # on each of 3 sites (node_rank 0, 1, 2), one process per site
    torchrun --nnodes=3 --nproc-per-node=1 --node-rank=$SITE \\
        --master-addr=site0.example.org --master-port=29500 my_site_script.py

where ``my_site_script.py`` loads the local feature table and calls
``run_from_env(X, y, mode="rankdad", rank_r=4, ...)`` (torchrun sets
``RANK``/``WORLD_SIZE``/``MASTER_*``). Under SLURM, one task per site::

    #SBATCH --ntasks=3 --nodes=3
    export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)
    export MASTER_PORT=29500
    srun bash -c 'RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS python my_site_script.py'

Only gradients (dsgd), activations and deltas (dad) or their low-rank factors
(rankdad) leave a site, plus the per-feature sums used for global
standardization and a few integers at setup.
"""

from __future__ import annotations

import datetime
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline._validation import check_int
from pipeline.distributed.training import train_site

__all__ = ["init_local_group", "leave", "run_from_env", "run_local"]


def init_local_group(rank: int, world_size: int, folder: str | os.PathLike) -> None:
    """Join the ``gloo`` default process group of processes on this machine.

    The rendezvous is a file in ``folder`` (a :class:`torch.distributed.FileStore`):
    give every process of the group the same folder, and each group a new one
    (a temporary folder of the launching process), so that no rendezvous file of
    an earlier group is found there.

    Parameters
    ----------
    rank : int
        This process, ``0 .. world_size - 1``.
    world_size : int
        Number of processes.
    folder : path-like
        Folder that holds the rendezvous file.
    """
    init_method = (Path(folder).resolve() / "rendezvous").as_uri()
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=120))


def _worker(rank, world_size, data, configs, n_threads, out_dir):
    """One site's process: train every config, write the results, then :func:`leave`."""
    torch.set_num_threads(n_threads)  # this child process only
    init_local_group(rank, world_size, out_dir)
    try:
        X, y, Xt, yt = data[rank]
        results = []
        for cfg in configs:
            results.append(train_site(rank, world_size, X, y, X_test=Xt, y_test=yt, **cfg))
            dist.barrier()
        tmp = Path(out_dir) / f".rank{rank}.pkl"
        with open(tmp, "wb") as fh:
            pickle.dump(results, fh)
        tmp.rename(tmp.with_name(f"rank{rank}.pkl"))
    finally:
        dist.destroy_process_group()
    leave()


def leave() -> None:
    """End a spawned site process now, skipping the interpreter's shutdown.

    Call it once the process's results are on disk and its process group is
    destroyed. gloo's transport threads can abort the interpreter's shutdown
    ("terminate called without an active exception", SIGABRT; 5 of 66 local
    runs on this machine), which :func:`torch.multiprocessing.spawn` reports
    as a failed process although its work is done.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_local(
    n_sites: int,
    X_sites: Sequence[np.ndarray],
    y_sites: Sequence[np.ndarray],
    *,
    configs: Sequence[dict[str, Any]] = ({"mode": "dsgd"},),
    X_test_sites: Sequence[np.ndarray] | None = None,
    y_test_sites: Sequence[np.ndarray] | None = None,
    n_threads: int = 1,
    timeout: float = 120.0,
) -> list[list[dict]]:
    """Train across ``n_sites`` local processes (gloo).

    Parameters
    ----------
    n_sites : int
        Number of processes, one per site (>= 1).
    X_sites, y_sites : sequence of ndarray
        Per site, features ``(n_site, n_features)`` and labels ``(n_site,)``.
    configs : sequence of dict
        Keyword arguments of :func:`~pipeline.distributed.training.train_site`
        (``mode``, ``rank_r``, ``epochs``, ...); each is run in turn in the
        same processes (one spawn for all).
    X_test_sites, y_test_sites : sequence of ndarray or None
        Per site held-out rows.
    n_threads : int, default=1
        Torch threads of each child process.
    timeout : float, default=120
        Seconds before the children are terminated and ``TimeoutError`` raised.

    Returns
    -------
    list of list of dict
        ``results[c][s]``: result of config ``c`` on site ``s``.

    Raises
    ------
    ValueError
        If the number of per-site arrays differs from ``n_sites``.
    TimeoutError
        If training did not finish within ``timeout`` seconds.
    """
    check_int("n_sites", n_sites, 1)
    if len(X_sites) != n_sites or len(y_sites) != n_sites:
        raise ValueError(
            f"'X_sites' and 'y_sites' must hold one array per site ({n_sites}). Got "
            f"{len(X_sites)} and {len(y_sites)}."
        )
    Xt = list(X_test_sites) if X_test_sites is not None else [None] * n_sites
    yt = list(y_test_sites) if y_test_sites is not None else [None] * n_sites
    data = [(np.asarray(X_sites[s]), np.asarray(y_sites[s]), Xt[s], yt[s]) for s in range(n_sites)]
    with tempfile.TemporaryDirectory(prefix="msica-dist-") as out_dir:
        ctx = mp.spawn(_worker, args=(n_sites, data, list(configs), n_threads, out_dir),
                       nprocs=n_sites, join=False)
        deadline = time.monotonic() + timeout
        while not ctx.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
                raise TimeoutError(
                    f"distributed training did not finish within timeout={timeout} s; raise "
                    "'timeout' or reduce epochs/sizes."
                )
        per_rank = []
        for s in range(n_sites):
            with open(Path(out_dir) / f"rank{s}.pkl", "rb") as fh:
                per_rank.append(pickle.load(fh))
    return [[per_rank[s][c] for s in range(n_sites)] for c in range(len(configs))]


def run_from_env(X_site: np.ndarray, y_site: np.ndarray, **kwargs: Any) -> dict:
    """Join the ``env://`` process group (gloo) and train this site.

    Reads ``RANK`` and ``WORLD_SIZE`` (and ``MASTER_ADDR``/``MASTER_PORT``)
    from the environment, as set by ``torchrun`` or the ``srun`` line in the
    module docstring. ``kwargs`` go to
    :func:`~pipeline.distributed.training.train_site`.
    """
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise ValueError(
            f"environment variables {missing} must be set for env:// rendezvous; launch with "
            "torchrun or export them (see pipeline.distributed.launch)."
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    try:
        return train_site(rank, world, X_site, y_site, **kwargs)
    finally:
        dist.destroy_process_group()
