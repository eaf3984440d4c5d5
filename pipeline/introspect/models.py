"""Small classifiers whose gradient spectra msica records.

* :class:`FNCMLP`: a multilayer perceptron on static FNC features
  ``(n_subjects, n_features)``;
* :class:`TimecourseCNN`: a 1-D convolutional net on network time courses
  ``(n_subjects, n_volumes, n_networks)``;
* :class:`TimecourseGRU`: an ``nn.GRUCell`` unrolled over the volumes of the
  same time courses (the unrolled cell exposes each step to the hooks; the
  fused ``nn.GRU`` does not).

Every model takes ``random_state`` and draws its initial weights from a local
``torch.Generator`` (no global seeding). Weights are drawn on the CPU in
float32, so the initial model is the same on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, check_int, check_random_state

__all__ = ["FNCMLP", "TimecourseCNN", "TimecourseGRU", "init_parameters"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


def init_parameters(model: nn.Module, random_state: Any = None) -> nn.Module:
    """Re-draw all parameters of ``model`` from a local generator.

    Weights are uniform in ``±1/sqrt(fan_in)`` (PyTorch's default scale for
    Linear, Conv and recurrent layers), biases likewise.

    Parameters
    ----------
    model : torch.nn.Module
    random_state : None, int or numpy.random.RandomState
        Seed of the local generator.

    Returns
    -------
    torch.nn.Module
        ``model``, modified in place.
    """
    seed = int(check_random_state(random_state).randint(2**31 - 1))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.RNNCellBase,)):
                fan_in = module.hidden_size
            elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                fan_in = module.weight[0].numel()
            else:
                continue
            bound = 1.0 / math.sqrt(max(1, fan_in))
            for p in module.parameters(recurse=False):
                draw = torch.rand(p.shape, generator=gen, dtype=torch.float32) * 2 * bound - bound
                p.copy_(draw.to(p.dtype))
    return model


@fill_doc
class FNCMLP(nn.Module):
    """Multilayer perceptron on static FNC features.

    Parameters
    ----------
    n_features : int
        Input width (e.g. number of FNC edges).
    n_classes : int, default=2
    hidden : sequence of int, default=(64,)
        Widths of the hidden layers.
    activation : {"relu", "tanh", "identity"}, default="relu"
        ``"identity"`` makes the net linear (used to check rank theory).
    %(random_state)s

    Examples
    --------
    >>> import torch
    >>> net = FNCMLP(10, hidden=(8, 4), random_state=0)
    >>> net(torch.zeros(3, 10)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int = 2,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        random_state: Any = None,
    ) -> None:
        super().__init__()
        check_int("n_features", n_features, 1)
        check_int("n_classes", n_classes, 1)
        for h in hidden:
            check_int("hidden", h, 1)
        check_in_allowed("activation", activation, list(_ACTIVATIONS))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        init_parameters(self, random_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, n_classes)`` from ``x`` ``(batch, n_features)``."""
        return self.net(x)


@fill_doc
class TimecourseCNN(nn.Module):
    """1-D CNN over time on network time courses, global average pooled.

    Parameters
    ----------
    n_networks : int
        Input channels (networks).
    n_classes : int, default=2
    channels : sequence of int, default=(16, 16)
        Output channels of the convolutions.
    kernel_size : int, default=5
    stride : int, default=1
    %(random_state)s

    Notes
    -----
    Input is ``(batch, n_volumes, n_networks)`` as in msica's time-course
    tables; it is transposed to ``(batch, n_networks, n_volumes)`` inside.
    """

    def __init__(
        self,
        n_networks: int,
        n_classes: int = 2,
        channels: Sequence[int] = (16, 16),
        kernel_size: int = 5,
        stride: int = 1,
        random_state: Any = None,
    ) -> None:
        super().__init__()
        for name, v in (("n_networks", n_networks), ("n_classes", n_classes),
                        ("kernel_size", kernel_size), ("stride", stride)):
            check_int(name, v, 1)
        layers: list[nn.Module] = []
        width = n_networks
        for c in channels:
            check_int("channels", c, 1)
            layers += [nn.Conv1d(width, c, kernel_size, stride=stride, padding=kernel_size // 2), nn.ReLU()]
            width = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)
        init_parameters(self, random_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` from ``x`` ``(batch, n_volumes, n_networks)``."""
        z = self.features(x.transpose(1, 2))
        return self.head(z.mean(dim=2))


@fill_doc
class TimecourseGRU(nn.Module):
    """``nn.GRUCell`` unrolled over volumes; the last hidden state is classified.

    Parameters
    ----------
    n_networks : int
        Input width per volume.
    n_classes : int, default=2
    hidden_size : int, default=16
    %(random_state)s

    Notes
    -----
    The gradient of ``weight_ih`` / ``weight_hh`` sums over time steps, so its
    rank is bounded by ``batch * n_volumes`` rather than ``batch``.
    """

    def __init__(
        self, n_networks: int, n_classes: int = 2, hidden_size: int = 16, random_state: Any = None
    ) -> None:
        super().__init__()
        for name, v in (("n_networks", n_networks), ("n_classes", n_classes), ("hidden_size", hidden_size)):
            check_int(name, v, 1)
        self.cell = nn.GRUCell(n_networks, hidden_size)
        self.head = nn.Linear(hidden_size, n_classes)
        init_parameters(self, random_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` from ``x`` ``(batch, n_volumes, n_networks)``."""
        h = x.new_zeros((x.shape[0], self.cell.hidden_size))
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.head(h)
