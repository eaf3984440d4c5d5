"""The run environment's garbage-collector guard around Nipype's scheduler."""

import gc
import weakref

import pytest

from workflows.execution.environment import collector_skips_what_exists


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collector_skips_what_exists_and_still_collects_new_garbage():
    existing = _Cycle()
    assert gc.get_freeze_count() == 0
    with collector_skips_what_exists():
        assert gc.get_freeze_count() > 0
        assert not any(obj is existing for obj in gc.get_objects())  # frozen: not tracked
        new = weakref.ref(_Cycle())
        assert new() is not None  # kept alive by its own cycle until collected
        gc.collect()
        assert new() is None
    assert gc.get_freeze_count() == 0
    assert any(obj is existing for obj in gc.get_objects())


def test_collector_is_given_back_its_objects_when_the_run_raises():
    with pytest.raises(RuntimeError, match="node crashed"), collector_skips_what_exists():
        raise RuntimeError("node crashed")
    assert gc.get_freeze_count() == 0
