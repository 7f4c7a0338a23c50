"""The drain's garbage-collector freeze is undone whatever happens, and a cycle that became garbage
while frozen is collected once the drain ends."""

from __future__ import annotations

import gc
import weakref

import pytest

from sml_assets.ingest import _old_objects_frozen


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_freeze_is_undone_after_a_failing_drain() -> None:
    assert gc.get_freeze_count() == 0, "the test process froze objects itself"
    with pytest.raises(RuntimeError, match="drain failed"), _old_objects_frozen():
        assert gc.get_freeze_count() > 0
        raise RuntimeError("drain failed")
    assert gc.get_freeze_count() == 0


def test_a_cycle_dropped_during_the_drain_is_collected_after_it() -> None:
    node = _Node()
    alive = weakref.ref(node)
    with _old_objects_frozen():
        del node
        gc.collect()
        assert alive() is not None, "a frozen cycle is left alone while the drain runs"
    gc.collect()
    assert alive() is None


def test_a_freeze_of_the_process_itself_is_kept() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _old_objects_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
