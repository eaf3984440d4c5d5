"""Per-layer math: which rows ``(A, D)`` make up each weight gradient.

One handler per layer type (BackPACK style). A handler knows

* what to keep from a forward call (:meth:`LayerHandler.keep`), under
  ``torch.no_grad`` and without touching the autograd graph;
* which output tensors carry the gradient that defines the deltas
  (:meth:`LayerHandler.outputs`);
* how to turn the kept tensors and the output gradients of every call in one
  batch into :class:`Factors`: activation rows ``A``, delta rows ``D`` and the
  sample each row belongs to, such that ``param.grad == Dᵀ A`` (with the bias
  gradient as the last column when ``include_bias=True``).

The hook plumbing lives in :mod:`pipeline.introspect.hooks`; the spectra in
:mod:`pipeline.introspect.linalg`.

Rows per layer type:

* ``nn.Linear``: one row per sample, or per sample and leading position for
  inputs of shape ``(batch, ..., n)`` (dim 0 is the sample).
* ``nn.Conv1d`` / ``nn.Conv2d``: one row per sample and output position; the
  activation row is the unfolded input patch (``torch.nn.functional.unfold``),
  so ``n = in_channels * prod(kernel_size)``.
* ``nn.RNNCell`` / ``nn.GRUCell`` called once per time step
  (an unrolled recurrent net): one row per sample and time step, for
  ``weight_ih`` (rows ``[x_t, 1]``) and ``weight_hh`` (rows ``[h_{t-1}, 1]``).
  The deltas are the gradients of the loss w.r.t. the gate pre-activations,
  derived in closed form from the gradient w.r.t. the cell output.
  ``nn.LSTMCell`` is not supported: on CPU its cell state is an intermediate of
  the hidden state in the autograd graph, on CUDA a separate output of one fused
  node, so the gradient seen on the cell state differs by device. The fused
  ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` do not expose per-step states and are
  not supported: unroll a cell instead (see
  :class:`pipeline.introspect.models.TimecourseGRU`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvHandler",
    "Factors",
    "GRUCellHandler",
    "LayerHandler",
    "LinearHandler",
    "RNNCellHandler",
]


@dataclass
class Factors:
    """Rows whose outer products sum to one weight gradient.

    Attributes
    ----------
    parameter : str
        Name of the weight, e.g. ``"weight"`` or ``"weight_hh"``.
    A : Tensor of shape (n_rows, n)
        Activation rows (last column all ones when the bias is included).
    D : Tensor of shape (n_rows, m)
        Delta rows: gradient of the loss (with its reduction scaling) w.r.t.
        the layer's pre-activation output.
    sample : LongTensor of shape (n_rows,)
        Index of the sample (row of the batch) each row comes from.
    n_samples : int
        Batch size.
    includes_bias : bool
        Whether ``A`` ends with the ones column of the bias.
    """

    parameter: str
    A: torch.Tensor
    D: torch.Tensor
    sample: torch.Tensor
    n_samples: int
    includes_bias: bool

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(m, n)`` of the gradient matrix ``Dᵀ A``."""
        return int(self.D.shape[1]), int(self.A.shape[1])

    def rank_bound(self, n_rows: int | None = None) -> int:
        """Structural rank bound ``min(n_rows, m, n)`` of ``Dᵀ A``.

        ``n_rows`` is the number of rows (samples x positions or time steps);
        pass a group's row count for the bound of that group's share.
        """
        rows = int(self.A.shape[0]) if n_rows is None else int(n_rows)
        return min(rows, *self.shape)


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate rows; a single tensor is returned as is (no copy)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _rows_with_ones(blocks: list[torch.Tensor], include: bool) -> torch.Tensor:
    """Stack ``(..., n)`` blocks into rows ``(n_rows, n [+ 1])``, copying once at most."""
    n = blocks[0].shape[-1]
    if not include:
        return _cat([b.reshape(-1, n) for b in blocks])
    counts = [b.numel() // n for b in blocks]
    out = blocks[0].new_empty((sum(counts), n + 1))
    start = 0
    for b, rows in zip(blocks, counts):
        out[start: start + rows, :n].view(*b.shape[:-1], n).copy_(b)
        start += rows
    out[:, n] = 1
    return out


class LayerHandler:
    """Base class: one instance per supported layer type."""

    #: weights handled, each with the name of its bias
    parameters: tuple[tuple[str, str], ...] = (("weight", "bias"),)

    def check(self, module: nn.Module, name: str) -> None:
        """Raise ``NotImplementedError`` for configurations not covered."""

    def keep(self, module: nn.Module, inputs: tuple, output: Any) -> Any:
        """What to keep from one forward call (detached tensors)."""
        raise NotImplementedError

    def outputs(self, output: Any) -> list[torch.Tensor]:
        """Output tensors whose gradients define the deltas."""
        return [output]

    def factors(
        self, module: nn.Module, calls: list[tuple[Any, list]], include_bias: bool
    ) -> list[Factors]:
        """Combine the calls of one batch into :class:`Factors` per weight."""
        raise NotImplementedError

    @staticmethod
    def _has_bias(module: nn.Module, bias_name: str) -> bool:
        b = getattr(module, bias_name, None)
        return b is not None and b.requires_grad


class _SingleWeightHandler(LayerHandler):
    """Shared parts of the layers with one ``weight`` (and its ``bias``) applied per row."""

    def _call_rows(
        self, module: nn.Module, x: torch.Tensor, g: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """One call's input rows ``(..., n_in)``, deltas ``(n_rows, n_out)``, batch, rows/sample."""
        raise NotImplementedError

    def keep(self, module, inputs, output):
        return inputs[0].detach()

    def factors(self, module, calls, include_bias):
        A_list, D_list, s_list = [], [], []
        n_samples = 0
        for x, (g,) in calls:
            a, d, b, per = self._call_rows(module, x, g)
            A_list.append(a)
            D_list.append(d)
            s_list.append(torch.arange(b, device=x.device).repeat_interleave(per))
            n_samples = max(n_samples, b)
        bias = include_bias and self._has_bias(module, "bias")
        A = _rows_with_ones(A_list, bias)
        return [Factors("weight", A, _cat(D_list), _cat(s_list), n_samples, bias)]


class LinearHandler(_SingleWeightHandler):
    """``nn.Linear``: ``weight.grad = Σ_rows d aᵀ``."""

    def _call_rows(self, module, x, g):
        if x.ndim == 1:
            x, g = x.unsqueeze(0), g.unsqueeze(0)
        return x, g.reshape(-1, g.shape[-1]), x.shape[0], x[0].numel() // x.shape[-1]


class ConvHandler(_SingleWeightHandler):
    """``nn.Conv1d`` / ``nn.Conv2d`` through unfolded input patches."""

    def __init__(self, n_spatial: int) -> None:
        self.n_spatial = n_spatial

    def check(self, module, name):
        if module.groups != 1:
            raise NotImplementedError(
                f"Gradient spectra for layer '{name}' ({type(module).__name__} with "
                f"groups={module.groups}) are not implemented; only groups=1 convolutions are. "
                "Pass on_unsupported='warn' to skip it."
            )

    def _patches(self, module, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == self.n_spatial + 1:  # unbatched
            x = x.unsqueeze(0)
        pad = module._reversed_padding_repeated_twice
        if any(p != 0 for p in pad):
            mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
            x = F.pad(x, pad, mode=mode)
        if self.n_spatial == 1:
            x = x.unsqueeze(2)
            kernel, dil, stride = (1, *module.kernel_size), (1, *module.dilation), (1, *module.stride)
        else:
            kernel, dil, stride = module.kernel_size, module.dilation, module.stride
        cols = F.unfold(x, kernel_size=kernel, dilation=dil, padding=0, stride=stride)
        return cols.transpose(1, 2)  # (batch, positions, C * prod(kernel))

    def _call_rows(self, module, x, g):
        patches = self._patches(module, x)
        b, n_pos = patches.shape[0], patches.shape[1]
        g = g.reshape(b, g.shape[-self.n_spatial - 1], -1).transpose(1, 2)
        return patches, g.reshape(b * n_pos, -1), b, n_pos


class _CellHandler(LayerHandler):
    """Shared parts of the recurrent cells (one call = one time step)."""

    parameters = (("weight_ih", "bias_ih"), ("weight_hh", "bias_hh"))
    n_gates = 1

    def check(self, module, name):
        pass

    @staticmethod
    def _batched(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0) if x.ndim == 1 else x

    def _state(self, module, inputs):
        x = self._batched(inputs[0].detach())
        hx = inputs[1] if len(inputs) > 1 else None
        return x, hx

    def _pre(self, module, x, h):
        gi = F.linear(x, module.weight_ih, module.bias_ih)
        gh = F.linear(h, module.weight_hh, module.bias_hh)
        return gi, gh

    def _assemble(self, module, rows, include_bias):
        """rows: list of (x, h, D_ih, D_hh) per call."""
        b = max(r[0].shape[0] for r in rows)
        out = []
        for j, (pname, bname) in enumerate(self.parameters):
            bias = include_bias and self._has_bias(module, bname)
            A = _rows_with_ones([r[j] for r in rows], bias)
            D = torch.cat([r[2 + j] for r in rows])
            s = torch.cat([torch.arange(r[0].shape[0], device=A.device) for r in rows])
            out.append(Factors(pname, A, D, s, b, bias))
        return out


class RNNCellHandler(_CellHandler):
    """``nn.RNNCell`` (tanh or relu): ``D = dh' ⊙ act'(pre)``."""

    def keep(self, module, inputs, output):
        x, hx = self._state(module, inputs)
        h = x.new_zeros((x.shape[0], module.hidden_size)) if hx is None else self._batched(hx.detach())
        return x, h, self._batched(output.detach())

    def factors(self, module, calls, include_bias):
        rows = []
        for (x, h, h_new), (g,) in calls:
            g = self._batched(g)
            if module.nonlinearity == "tanh":
                d = g * (1 - h_new * h_new)
            else:
                d = g * (h_new > 0).to(g.dtype)
            rows.append((x, h, d, d))
        return self._assemble(module, rows, include_bias)


class GRUCellHandler(_CellHandler):
    """``nn.GRUCell``; gates ordered (r, z, n) as in PyTorch.

    ``r = σ(gi_r + gh_r)``, ``z = σ(gi_z + gh_z)``,
    ``n = tanh(gi_n + r ⊙ gh_n)``, ``h' = (1 - z) ⊙ n + z ⊙ h``.
    """

    def keep(self, module, inputs, output):
        x, hx = self._state(module, inputs)
        h = x.new_zeros((x.shape[0], module.hidden_size)) if hx is None else self._batched(hx.detach())
        gi, gh = self._pre(module, x, h)
        return x, h, gi, gh

    def factors(self, module, calls, include_bias):
        rows = []
        for (x, h, gi, gh), (g,) in calls:
            g = self._batched(g)
            i_r, i_z, i_n = gi.chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            d_n = g * (1 - z) * (1 - n * n)
            d_z = g * (h - n) * z * (1 - z)
            d_r = d_n * h_n * r * (1 - r)
            D_ih = torch.cat([d_r, d_z, d_n], dim=1)
            D_hh = torch.cat([d_r, d_z, d_n * r], dim=1)
            rows.append((x, h, D_ih, D_hh))
        return self._assemble(module, rows, include_bias)
