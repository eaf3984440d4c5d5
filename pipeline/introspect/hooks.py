"""Hook plumbing: capture activations and deltas of every supported layer.

:class:`GradientCapture` registers a forward hook on each layer that has
trainable parameters. For a forward call made with autograd enabled, the hook
keeps detached references to what the layer's handler needs
(:mod:`pipeline.introspect.derivatives`) and registers a tensor hook on the
layer's output; during ``backward`` that tensor hook receives the gradient of
the loss w.r.t. the output (accumulated over all its uses, with the loss's
reduction scaling). The hooks return ``None``: no tensor, gradient or
parameter is changed, so training is identical with and without them.

Tensor hooks on outputs are used instead of ``register_full_backward_hook``
because they work for layers called several times per forward pass (unrolled
recurrent cells, shared layers) and with in-place operations on the output.

Forward calls under ``torch.no_grad`` / ``torch.inference_mode``, or whose
output does not require grad, are ignored. A forward call whose output
receives no gradient before :meth:`GradientCapture.collect` (for instance a
validation pass run with autograd on but never backpropagated) is dropped.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from pipeline._validation import check_in_allowed, check_type
from pipeline.introspect.derivatives import (
    ConvHandler,
    Factors,
    GRUCellHandler,
    LayerHandler,
    LinearHandler,
    RNNCellHandler,
)

__all__ = ["HANDLERS", "GradientCapture", "find_handler"]

#: layer type -> handler (looked up along the MRO, so subclasses are covered)
HANDLERS: dict[type, LayerHandler] = {
    nn.Linear: LinearHandler(),
    nn.Conv1d: ConvHandler(1),
    nn.Conv2d: ConvHandler(2),
    nn.RNNCell: RNNCellHandler(),
    nn.GRUCell: GRUCellHandler(),
}


def find_handler(module: nn.Module) -> LayerHandler | None:
    """Handler for ``module``'s type (or its closest registered base class)."""
    for cls in type(module).__mro__:
        if cls in HANDLERS:
            return HANDLERS[cls]
    return None


class _Call:
    """One forward call of one layer: kept tensors and output gradients."""

    __slots__ = ("kept", "grads", "n_received")

    def __init__(self, kept: Any, n_outputs: int) -> None:
        self.kept = kept
        self.grads: list = [None] * n_outputs
        self.n_received = 0


class GradientCapture:
    """Record activations and deltas of each layer for the current batch.

    Parameters
    ----------
    model : torch.nn.Module
        Model to watch. Every submodule with trainable parameters of its own
        must be a supported layer (see :data:`HANDLERS`).
    include_bias : bool, default=True
        Append a ones column to the activations so that the spectrum is that
        of ``[weight.grad | bias.grad]``. With ``False`` the bias is ignored
        and the spectrum is that of ``weight.grad`` alone.
    on_unsupported : {"error", "warn"}, default="error"
        What to do with a layer that has trainable parameters but no handler:
        raise ``NotImplementedError`` naming it, or warn once (listing all
        such layers) and leave them out.

    Attributes
    ----------
    layers_ : dict of str to torch.nn.Module
        Watched layers by qualified name.
    skipped_ : list of str
        Layers left out with ``on_unsupported="warn"``.
    enabled : bool
        Capture only while ``True`` (toggled by
        :class:`~pipeline.introspect.recorder.SpectrumRecorder` so that steps
        that are not recorded cost nothing).

    Raises
    ------
    NotImplementedError
        For an unsupported layer when ``on_unsupported="error"``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> cap = GradientCapture(net)
    >>> net(torch.ones(4, 3)).sum().backward()
    >>> f = cap.collect()["0"][0]
    >>> bool(torch.allclose(f.D.T @ f.A, torch.cat([net[0].weight.grad, net[0].bias.grad[:, None]], 1)))
    True
    >>> cap.remove()
    """

    def __init__(
        self, model: nn.Module, *, include_bias: bool = True, on_unsupported: str = "error"
    ) -> None:
        check_type("model", model, nn.Module)
        check_type("include_bias", include_bias, bool)
        check_in_allowed("on_unsupported", on_unsupported, ("error", "warn"))
        self.model = model
        self.include_bias = include_bias
        self.on_unsupported = on_unsupported
        self.enabled = True
        self.layers_: dict[str, nn.Module] = {}
        self.skipped_: list[str] = []
        self._handles: list = []
        self._calls: dict[str, list[_Call]] = {}
        self._attach()

    # -- registration -------------------------------------------------------
    def _attach(self) -> None:
        for name, module in self.model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            label = name or type(module).__name__
            handler = find_handler(module)
            if handler is None:
                if self.on_unsupported == "error":
                    self.remove()
                    supported = sorted(t.__name__ for t in HANDLERS)
                    raise NotImplementedError(
                        f"Gradient spectra are not implemented for layer '{label}' "
                        f"({type(module).__name__}). Supported layers: {supported}. "
                        "Pass on_unsupported='warn' to skip it."
                    )
                self.skipped_.append(f"{label} ({type(module).__name__})")
                continue
            try:
                handler.check(module, label)
            except NotImplementedError:
                if self.on_unsupported == "error":
                    self.remove()
                    raise
                self.skipped_.append(f"{label} ({type(module).__name__})")
                continue
            self.layers_[label] = module
            self._calls[label] = []
            self._handles.append(module.register_forward_hook(self._make_hook(label, handler)))
        if self.skipped_:
            warnings.warn(
                f"Gradient spectra are not implemented for {len(self.skipped_)} layer(s), "
                f"which are left out: {', '.join(self.skipped_)}. Replace them by supported "
                "layers to include them.",
                UserWarning,
                stacklevel=3,
            )

    def _make_hook(self, label: str, handler: LayerHandler):
        def forward_hook(module, inputs, output):
            if not self.enabled or not torch.is_grad_enabled():
                return None
            outs = handler.outputs(output)
            if not any(isinstance(o, torch.Tensor) and o.requires_grad for o in outs):
                return None
            with torch.no_grad():
                kept = handler.keep(module, inputs, output)
            call = _Call(kept, len(outs))
            self._calls[label].append(call)
            for j, o in enumerate(outs):
                if isinstance(o, torch.Tensor) and o.requires_grad:
                    o.register_hook(self._make_tensor_hook(call, j))
            return None

        return forward_hook

    @staticmethod
    def _make_tensor_hook(call: _Call, j: int):
        def tensor_hook(grad):
            call.grads[j] = grad.detach()
            call.n_received += 1
            return None

        return tensor_hook

    # -- results ------------------------------------------------------------
    def collect(self) -> dict[str, list[Factors]]:
        """Factors of every watched layer for the calls since :meth:`clear`.

        Returns
        -------
        dict of str to list of Factors
            One :class:`~pipeline.introspect.derivatives.Factors` per weight of
            each layer that took part in the backward pass; layers without a
            completed call are absent.
        """
        out: dict[str, list[Factors]] = {}
        for label, calls in self._calls.items():
            done = [(c.kept, c.grads) for c in calls if c.n_received > 0]
            if not done:
                continue
            module = self.layers_[label]
            with torch.no_grad():
                out[label] = find_handler(module).factors(module, done, self.include_bias)
        return out

    def clear(self) -> None:
        """Forget everything kept since the last call."""
        for calls in self._calls.values():
            calls.clear()

    def remove(self) -> None:
        """Remove all hooks (the model is then exactly as before)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.clear()

    def __enter__(self) -> GradientCapture:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
