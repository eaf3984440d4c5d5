"""Per-subject results computed when they are read, so that a cohort's memory does not grow with N.

Group ICA keeps a handful of small matrices per subject (group PCA blocks, GICA
time courses). A thousand subjects' worth of them is gigabytes; a
:class:`LazySequence` holds a function instead and computes item ``i`` on each
access (nothing is cached), so callers that visit one subject at a time keep one
subject's matrices in memory.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LazySequence"]


class LazySequence(Sequence):
    """A read-only sequence of ``length`` items, item ``i`` being ``item(i)`` (not cached).

    Parameters
    ----------
    length : int
        Number of items.
    item : callable
        ``item(i)`` for ``0 <= i < length``.

    Examples
    --------
    >>> squares = LazySequence(4, lambda i: i * i)
    >>> len(squares), squares[-1], list(squares[1:3])
    (4, 9, [1, 4])
    """

    def __init__(self, length: int, item: Callable[[int], Any]) -> None:
        self._length = int(length)
        self._item = item

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(self._length))]
        i = operator.index(index)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"index {index} out of range for {self._length} items")
        return self._item(i)

    def __repr__(self) -> str:
        return f"LazySequence(length={self._length})"
