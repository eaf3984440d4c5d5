"""Per-mode gradient exchange for multi-site training without pooling data.

Every site holds its own rows; the model's parameters are the same on all
sites. After the local backward pass of one step, the sites exchange what is
needed to rebuild the gradient of the *global* batch loss, so that all sites
take the same update. Three modes are offered:

``"dsgd"``
    Distributed SGD (the baseline, :class:`torch.nn.parallel.DistributedDataParallel`
    semantics): the local gradients are concatenated and all-reduced (summed);
    every site sends ``Σ_params numel`` values per step.
``"dad"``
    Distributed auto-differentiation [1]_: for each ``nn.Linear`` layer the
    activations ``A_s`` (``B x (n + 1)``, ones column for the bias) and deltas
    ``D_s`` (``B x m``) of site ``s`` are all-gathered, and every site rebuilds
    ``G = Σ_s D_sᵀ A_s / B_total`` locally. This is exactly the dsgd gradient
    (up to rounding). A site sends ``B (n + 1 + m)`` values per layer, fewer
    than the ``m (n + 1)`` of dsgd when the local batch ``B`` is smaller than
    the layer's width.
``"rankdad"``
    Rank-dAD [1]_: each site factorizes its share ``G_s = D_sᵀ A_s`` to rank
    ``r`` by structured power (subspace) iterations that never form ``G_s``
    (products ``D_sᵀ (A_s V)`` and ``A_sᵀ (D_s U)`` only), and only the factors
    ``P_s`` (``m x r``) and ``Q_s`` (``(n + 1) x r``) with ``G_s ≈ P_s Q_sᵀ`` are
    all-gathered: ``r (m + n + 1)`` values per layer. With ``r >= rank(G_s)``
    the result equals dad up to rounding. ``r`` may also be chosen adaptively
    per layer and step from the spectrum energy of the local shares (the
    largest choice over sites is used so that all sites send equal shapes).

Bytes are counted exactly as the sum of the ``nbytes`` of the tensors each
process passes to a collective (the *input* of an all-reduce or all-gather).
This is the payload a site contributes; the traffic on the wire depends on the
collective's algorithm (a ring all-reduce moves about ``2 (W - 1) / W`` times
its input per process; an all-gather delivers ``W - 1`` times the input to
every process).

References
----------
.. [1] Baker, B. T., Khanal, A., Calhoun, V. D., Pearlmutter, B., & Plis, S. M.
   (2022). Peering beyond the gradient veil with distributed
   auto-differentiation. arXiv:2102.09631.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from pipeline.introspect.derivatives import Factors
from pipeline.introspect.linalg import gradient_svdvals

__all__ = [
    "MODES",
    "ByteCounter",
    "LayerExchange",
    "choose_rank",
    "exchange_dad",
    "exchange_dsgd",
    "exchange_rankdad",
    "expected_bytes",
    "linear_layers",
    "low_rank_factors",
]

MODES = ("dsgd", "dad", "rankdad")


@dataclass
class ByteCounter:
    """Count the bytes a process passes to collectives.

    Attributes
    ----------
    total : int
        Bytes over all calls since creation.
    step : int
        Bytes since the last :meth:`new_step`.
    calls : int
        Number of collective calls since the last :meth:`new_step`.
    """

    group: object = None
    total: int = 0
    step: int = 0
    calls: int = 0

    def new_step(self) -> None:
        """Start counting a new step."""
        self.step = 0
        self.calls = 0

    def _add(self, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        self.total += nbytes
        self.step += nbytes
        self.calls += 1

    def all_reduce(self, tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        """In-place all-reduce of ``tensor`` (counted)."""
        self._add(tensor)
        dist.all_reduce(tensor, op=op, group=self.group)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """All-gather ``tensor`` (same shape on every process; counted)."""
        self._add(tensor)
        world = dist.get_world_size(self.group)
        out = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(out, tensor.contiguous(), group=self.group)
        return out


@dataclass
class LayerExchange:
    """What one site received for one ``nn.Linear`` layer in one step.

    Attributes
    ----------
    D : list of Tensor
        Per site, rows whose transposed product with ``A`` is the site's share
        of the summed (unscaled) gradient: the deltas ``(B, m)`` for dad, the
        transposed left factors ``(r, m)`` for rankdad.
    A : list of Tensor
        Per site, activations ``(B, n + 1)`` for dad, transposed right factors
        ``(r, n + 1)`` for rankdad.
    rank : int
        Rank sent per site (``B`` for dad).
    """

    D: list = field(default_factory=list)
    A: list = field(default_factory=list)
    rank: int = 0


def linear_layers(model: nn.Module, capture_layers: dict[str, nn.Module]) -> dict[str, nn.Linear]:
    """Check that every trainable parameter belongs to a captured ``nn.Linear``."""
    covered = set()
    for module in capture_layers.values():
        if not isinstance(module, nn.Linear):
            raise ValueError(
                f"mode 'dad'/'rankdad' exchanges nn.Linear layers only; got a "
                f"{type(module).__name__}. Use mode='dsgd' for this model."
            )
        covered.update(id(p) for p in module.parameters())
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if missing:
        raise ValueError(
            f"mode 'dad'/'rankdad' needs every trainable parameter in an nn.Linear layer; "
            f"{missing} are not. Use mode='dsgd' for this model."
        )
    return capture_layers


def _set_grad(module: nn.Linear, G: torch.Tensor, includes_bias: bool) -> None:
    n = module.weight.shape[1]
    module.weight.grad = G[:, :n].contiguous().to(module.weight.dtype)
    if module.bias is not None and module.bias.requires_grad:
        if not includes_bias:  # pragma: no cover - capture always includes it
            raise RuntimeError("bias gradient missing from the captured factors")
        module.bias.grad = G[:, n].contiguous().to(module.bias.dtype)


def exchange_dsgd(model: nn.Module, counter: ByteCounter, total_batch: int) -> None:
    """All-reduce the (summed-loss) local gradients and divide by ``total_batch``.

    Parameters
    ----------
    model : torch.nn.Module
        Local gradients ``.grad`` of a loss with ``reduction="sum"``.
    counter : ByteCounter
    total_batch : int
        Rows of the global batch (sum over sites).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
    ])
    counter.all_reduce(flat)
    flat /= total_batch
    start = 0
    for p in params:
        p.grad = flat[start: start + p.numel()].view_as(p).clone()
        start += p.numel()


def exchange_dad(
    layers: dict[str, nn.Linear],
    factors: dict[str, list[Factors]],
    counter: ByteCounter,
    total_batch: int,
) -> dict[str, LayerExchange]:
    """All-gather ``[D_s | A_s]`` per layer and rebuild ``G = Σ_s D_sᵀ A_s / B_total``.

    Returns
    -------
    dict of str to LayerExchange
        The gathered rows of every site (for introspection).
    """
    received = {}
    for name, module in layers.items():
        f = factors[name][0]
        m = f.D.shape[1]
        packed = torch.cat([f.D, f.A], dim=1)
        parts = counter.all_gather(packed)
        Ds = [p[:, :m] for p in parts]
        As = [p[:, m:] for p in parts]
        G = torch.cat(Ds).T @ torch.cat(As)
        _set_grad(module, G / total_batch, f.includes_bias)
        received[name] = LayerExchange(Ds, As, int(f.D.shape[0]))
    return received


def low_rank_factors(
    D: torch.Tensor, A: torch.Tensor, r: int, *, n_iter: int = 2, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-``r`` factors ``P, Q`` with ``Dᵀ A ≈ P Qᵀ``, never forming ``Dᵀ A``.

    Subspace iteration started from a random ``(n, r)`` basis: ``n_iter``
    sweeps of ``U = orth(Dᵀ (A V))``, ``V = orth(Aᵀ (D U))``, then
    ``U = orth(Dᵀ (A V))``, ``P = U`` and ``Q = Aᵀ (D U)`` so that
    ``P Qᵀ = U Uᵀ Dᵀ A`` is the projection of ``Dᵀ A`` onto the subspace
    found. Exact (up to rounding) when ``r >= rank(Dᵀ A)``.

    Parameters
    ----------
    D : Tensor of shape (n_rows, m)
    A : Tensor of shape (n_rows, n)
    r : int
        ``1 <= r <= min(m, n)``.
    n_iter : int, default=2
        Power sweeps (more sweeps, better top subspace).
    generator : torch.Generator
        Source of the random start (CPU generator).

    Returns
    -------
    P : Tensor of shape (m, r)
        Orthonormal columns.
    Q : Tensor of shape (n, r)
    """
    n = A.shape[1]
    V = torch.randn(n, r, generator=generator, dtype=torch.float64).to(A.dtype)
    V = torch.linalg.qr(V)[0]
    for _ in range(n_iter):
        U = torch.linalg.qr(D.T @ (A @ V))[0]
        V = torch.linalg.qr(A.T @ (D @ U))[0]
    U = torch.linalg.qr(D.T @ (A @ V))[0]
    return U, A.T @ (D @ U)


def choose_rank(D: torch.Tensor, A: torch.Tensor, energy: float) -> int:
    """Smallest ``r`` whose top singular values hold ``energy`` of ``‖Dᵀ A‖_F²``.

    Uses :func:`pipeline.introspect.linalg.gradient_svdvals` (exact, without
    forming ``Dᵀ A`` when the batch is smaller than the layer).
    """
    s2 = gradient_svdvals(D, A).double() ** 2
    total = float(s2.sum())
    if total <= 0:
        return 1
    cum = torch.cumsum(s2, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(energy - 1e-12, dtype=cum.dtype))) + 1


def exchange_rankdad(
    layers: dict[str, nn.Linear],
    factors: dict[str, list[Factors]],
    counter: ByteCounter,
    total_batch: int,
    *,
    rank_r: int | None,
    energy: float | None,
    n_iter: int,
    generator: torch.Generator,
) -> dict[str, LayerExchange]:
    """Factorize each site's share to rank ``r``, all-gather the factors, rebuild ``G``.

    ``r`` per layer is ``min(rank_r, B, m, n + 1)`` (``rank(G_s) <= B``, so
    capping by the local batch ``B`` loses nothing); with ``energy`` set, it is
    the largest over sites of :func:`choose_rank` (capped by ``rank_r`` when
    given), agreed on by an all-reduce (MAX) of one int64 (8 bytes, counted).
    """
    received = {}
    for name, module in layers.items():
        f = factors[name][0]
        m, n = f.D.shape[1], f.A.shape[1]
        b = f.D.shape[0]
        cap = min(b, m, n) if rank_r is None else min(rank_r, b, m, n)
        if energy is not None:
            r_loc = torch.tensor([min(choose_rank(f.D, f.A, energy), cap)], dtype=torch.int64)
            r = int(counter.all_reduce(r_loc, op=dist.ReduceOp.MAX)[0])
        else:
            r = cap
        P, Q = low_rank_factors(f.D, f.A, r, n_iter=n_iter, generator=generator)
        parts = counter.all_gather(torch.cat([P, Q], dim=0))
        Ps = [p[:m] for p in parts]
        Qs = [p[m:] for p in parts]
        G = torch.cat(Ps, dim=1) @ torch.cat(Qs, dim=1).T
        _set_grad(module, G / total_batch, f.includes_bias)
        received[name] = LayerExchange([p.T for p in Ps], [q.T for q in Qs], r)
    return received


def expected_bytes(
    model: nn.Module, mode: str, batch_size: int, rank_r: int | None = None, itemsize: int = 4
) -> int:
    """Analytic bytes one site sends per step (fixed rank; no adaptive option).

    dsgd: ``Σ_params numel``; dad: ``Σ_layers B (n + 1 + m)``; rankdad:
    ``Σ_layers r (m + n + 1)`` with ``r = min(rank_r, B, m, n + 1)``; each times
    ``itemsize``. Layers are the ``nn.Linear`` modules of ``model`` (with bias).
    """
    if mode == "dsgd":
        return itemsize * sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            m, n = module.out_features, module.in_features + (module.bias is not None)
            if mode == "dad":
                total += batch_size * (n + m)
            else:
                r = min(batch_size, m, n) if rank_r is None else min(rank_r, batch_size, m, n)
                total += r * (m + n)
    return itemsize * total
