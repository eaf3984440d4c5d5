"""Fixtures for the distributed-training tests."""

from __future__ import annotations

import pytest
from distributed_testing import planted_sites


@pytest.fixture(scope="module")
def sites3():
    return planted_sites(3, 20)
