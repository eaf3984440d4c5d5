"""Fixtures and settings for the introspection tests (BackPACK style: fast path vs slow reference)."""

import pytest
import torch

RANDOM_STATE = 42

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
    ),
]
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param
