"""The log_summary run lease: a live run's lease is never taken for a dead one; what a SIGKILLed run
left (lease, session id, journal) is found and cleared. Real processes and real `flock`s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sml_assets.run_lease import (
    RUN_LOCK,
    ConcurrentRunError,
    DeadRun,
    clear,
    dead_runs,
    exclusive_run,
    live_runs,
    take_lease,
)
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import wait_until

HOLDER = """
import sys, time
from pathlib import Path
from sml_assets.run_lease import take_lease
lease = take_lease(Path(sys.argv[1]))
lease.record("session-of-the-killed-run")
lease.journal.mkdir()
print(lease.token, flush=True)
time.sleep(600)
"""

KILLED_BEFORE_THE_RENAME = """
import fcntl, sys, time
from pathlib import Path
handle = (Path(sys.argv[1]) / ".lease-0123abcd.tmp").open("w")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""
"""What `take_lease` has done when a kill lands between locking the lease and renaming it into place."""

RUN_LOCK_HOLDER = """
import sys, time
from pathlib import Path
from sml_assets.run_lease import exclusive_run
with exclusive_run(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""
"""A log_summary run in the middle of its work, as far as the run lock is concerned."""


def test_a_second_run_waits_for_the_first_to_end_and_is_told_whom_it_waits_for(tmp_path: Path) -> None:
    told: list[str] = []
    order: list[str] = []
    waits: list[float] = []
    with exclusive_run(tmp_path) as first_waited:
        assert first_waited < 1.0
        second = threading.Thread(target=lambda: _second_run(tmp_path, told, order, waits))
        second.start()
        wait_until(lambda: told, 10, "the second run to say it waits")
        time.sleep(0.6)
        assert order == [], "the second run got the lock while the first held it"
        order.append("first ends")
    second.join(timeout=10)
    assert order == ["first ends", "second works"]
    assert waits[0] >= 0.6, f"the second run says it waited {waits[0]} s"
    assert len(told) == 1, told
    assert told[0].startswith(f"waiting for another log_summary run on the same summary (pid {os.getpid()}, since ")
    assert told[0].endswith(f", lock {tmp_path / RUN_LOCK})")


def _second_run(folder: Path, told: list[str], order: list[str], waits: list[float]) -> None:
    with exclusive_run(folder, waiting=told.append) as waited:
        order.append("second works")
        waits.append(waited)


def test_a_run_that_holds_the_lock_too_long_fails_the_waiting_one_naming_it(tmp_path: Path) -> None:
    with exclusive_run(tmp_path):
        with pytest.raises(ConcurrentRunError) as raised:
            with exclusive_run(tmp_path, wait_s=0.3):
                raise AssertionError("the lock was taken twice")
    message = str(raised.value)
    assert f"another log_summary run on the same summary (pid {os.getpid()}, since " in message
    assert f"has held {tmp_path / RUN_LOCK} for more than 0 s" in message
    assert "two runs on one summary never work at once" in message


def test_the_run_lock_goes_with_a_sigkilled_holder(tmp_path: Path) -> None:
    holder = holding(RUN_LOCK_HOLDER, tmp_path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(ConcurrentRunError, match=f"pid {holder.pid}, since "):
            with exclusive_run(tmp_path, wait_s=0.2):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    with exclusive_run(tmp_path, wait_s=5.0) as waited:
        assert waited < 1.0


def holding(script: str, folder: Path) -> subprocess.Popen[str]:
    """A process of its own running `script` on `folder` (it prints one line once it holds its lock)."""
    return subprocess.Popen(
        [sys.executable, "-c", script, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_a_held_lease_is_live_and_is_never_cleared(tmp_path: Path) -> None:
    lease = take_lease(tmp_path)
    lease.journal.mkdir()
    try:
        assert dead_runs(tmp_path) == []
        assert live_runs(tmp_path, own="another run") == [lease.path]
        assert clear(tmp_path, dead_runs(tmp_path)) == 0
        assert lease.journal.is_dir() and lease.path.exists()
    finally:
        lease.release()
    assert list(tmp_path.iterdir()) == [], "a released lease leaves neither journal nor lease behind"


def test_what_a_sigkilled_run_left_is_found_with_its_session_and_cleared(tmp_path: Path) -> None:
    holder = holding(HOLDER, tmp_path)
    try:
        assert holder.stdout is not None
        token = holder.stdout.readline().strip()
        assert token, f"the lease holder exited with {holder.wait()}"
        assert dead_runs(tmp_path) == [], "a run that is alive is not dead"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        [dead] = wait_until(lambda: dead_runs(tmp_path), 10, "the kernel dropped the killed run's flock")
        assert (dead.token, dead.session_id) == (token, "session-of-the-killed-run")
        mine = take_lease(tmp_path)
        try:
            assert [run.token for run in dead_runs(tmp_path, own=mine.token)] == [token]
            assert clear(tmp_path, dead_runs(tmp_path, own=mine.token)) == 1
            assert sorted(path.name for path in tmp_path.iterdir()) == [mine.path.name]
        finally:
            mine.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_lease_left_under_its_temporary_name_is_cleared_once_its_run_is_gone(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", KILLED_BEFORE_THE_RENAME, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked", f"the lease holder exited with {holder.wait()}"
        assert dead_runs(tmp_path) == [], "a lease still being taken is not a dead run's"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        temporary = tmp_path / ".lease-0123abcd.tmp"
        found = wait_until(lambda: dead_runs(tmp_path), 10, "the kernel dropped the killed run's flock")
        assert found == [DeadRun(token="0123abcd", lease=temporary, session_id=None)]
        assert clear(tmp_path, found) == 0, "there was no journal to remove"
        assert list(tmp_path.iterdir()) == []
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_the_rebuild_does_not_move_a_summary_a_run_is_working_on(tmp_path: Path) -> None:
    """`rebuild log-summary` sets the summary aside under the run lock, so it waits for a run (here
    one that holds the lock too long: it fails and moves nothing); once the run is over it moves."""
    from sml_assets.rebuild import discard_summary
    from sml_assets.resources.storage import LocalStorage
    from sml_assets.summarize import state_path

    storage = LocalStorage(data_dir=str(tmp_path))
    state = state_path(storage)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("{}")
    with exclusive_run(state.parent):
        with pytest.raises(ConcurrentRunError, match=f"pid {os.getpid()}, since "):
            discard_summary(storage, wait_s=0.2)
        assert state.exists(), "the summary was moved while a run held it"
    aside = discard_summary(storage, wait_s=0.2)
    assert not state.exists() and (aside / state.name).read_text() == "{}"
