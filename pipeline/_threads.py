"""The one place where msica changes torch's CPU thread count (temporarily)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n_threads: int | None, device=None) -> Iterator[None]:
    """Run a block with ``n_threads`` intra-op torch CPU threads, then restore the count.

    Iterative solvers made of many small matrix products (Infomax, FastICA, the
    MLP classifier) run several times faster with one thread than with
    oversubscribed ones. ``n_threads=None`` or a non-CPU ``device`` changes
    nothing. The setting is process-wide while the block runs.
    """
    import torch

    if n_threads is None or (device is not None and torch.device(device).type != "cpu"):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
