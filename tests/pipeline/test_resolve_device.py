"""Tests for pipeline._validation.resolve_device."""

from __future__ import annotations

import logging

import pytest
import torch

from pipeline._validation import _log_cpu_fallback, resolve_device


def test_auto_device_logs_the_cpu_fallback_once(caplog):
    _log_cpu_fallback.cache_clear()
    with caplog.at_level(logging.INFO, logger="msica.pipeline"):
        devices = {resolve_device("auto").type, resolve_device(None).type}
    fallback = [r for r in caplog.records if "no CUDA device available" in r.getMessage()]
    if torch.cuda.is_available():
        assert devices == {"cuda"} and not fallback
    else:
        assert devices == {"cpu"} and len(fallback) == 1


def test_explicit_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="'device' must be 'auto', 'cpu', 'cuda'"):
        resolve_device("gpu0")
    with pytest.raises(TypeError, match="'device' must be a str or torch.device"):
        resolve_device(0)
    with pytest.raises(ValueError, match="must be a CPU or CUDA device"):
        resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available. Use device='cpu' or 'auto'"):
        resolve_device("cuda")


def test_uses_cuda_follows_resolve_device(monkeypatch):
    from pipeline._validation import uses_cuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not uses_cuda("auto") and not uses_cuda("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        uses_cuda("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert uses_cuda("auto") and uses_cuda("cuda") and not uses_cuda("cpu")
