"""Helpers shared by the introspection tests (reference computations)."""

import torch

RANDOM_STATE = 42
#: relative error (w.r.t. the largest singular value) allowed per dtype
RTOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def spectrum_error(values: torch.Tensor, reference: torch.Tensor) -> float:
    """max |s - s_ref| / max(s_ref), zero-padding the shorter spectrum."""
    k = max(values.numel(), reference.numel())
    a = torch.zeros(k, dtype=torch.float64)
    b = torch.zeros(k, dtype=torch.float64)
    a[: values.numel()] = values.detach().double().cpu()
    b[: reference.numel()] = reference.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def generator(seed: int = RANDOM_STATE) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
