"""Tests for pipeline.ica._lazy."""

from __future__ import annotations

import doctest
import pickle
from functools import partial

import pytest

import pipeline.ica._lazy
from pipeline.ica._lazy import LazySequence


def _times(factor, i):
    return factor * i


def test_items_computed_on_each_access_and_picklable():
    calls = []
    seq = LazySequence(3, lambda i: calls.append(i) or i)
    assert [seq[0], seq[0], seq[-1]] == [0, 0, 2] and calls == [0, 0, 2]
    assert list(seq) == [0, 1, 2] and len(seq) == 3
    restored = pickle.loads(pickle.dumps(LazySequence(4, partial(_times, 10))))
    assert restored[3] == 30


def test_out_of_range():
    with pytest.raises(IndexError, match="index 3 out of range for 3 items"):
        LazySequence(3, lambda i: i)[3]


def test_doctests():
    result = doctest.testmod(pipeline.ica._lazy)
    assert result.attempted > 0 and result.failed == 0
