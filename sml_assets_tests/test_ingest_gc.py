"""The drain's garbage-collector freeze is undone whatever happens, and a cycle that became garbage
while frozen is collected once the drain ends; what the drain runs before it freezes imports no pandas."""

from __future__ import annotations

import gc
import subprocess
import sys
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


def _tracked(sentinel: object) -> bool:
    """Whether `sentinel` is in one of the collector's generations (a frozen object is in none)."""
    return any(item is sentinel for item in gc.get_objects())


def test_a_freeze_of_the_process_itself_is_kept() -> None:
    """The process's frozen objects stay frozen after the drain. Not the freeze count: frozen objects
    that die meanwhile (in the warm-up, in another thread) leave the count, so it may shrink."""
    sentinel = _Node()
    gc.freeze()
    try:
        assert not _tracked(sentinel)
        with _old_objects_frozen():
            pass
        assert gc.get_freeze_count() > 0
        assert not _tracked(sentinel), "the drain unfroze the objects the process had frozen itself"
    finally:
        gc.unfreeze()
    assert _tracked(sentinel)


def test_the_warm_up_of_parse_and_formatting_imports_no_pandas() -> None:
    """pyarrow's conversions of lists and numpy arrays import pandas (0.3 s, about 40 MiB of a run);
    the chunk parser and the SQLite time formatting build their arrays from buffers instead."""
    probe = "import sys; from sml_assets.resources.bulk import warm_up; warm_up(); print('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False", result.stdout + result.stderr
