"""The log_summary run lease: a live run's lease is never taken for a dead one; what a SIGKILLed run
left (lease, session id, journal) is found and cleared. Real processes and real `flock`s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sml_assets.run_lease import DeadRun, clear, dead_runs, live_runs, take_lease
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
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
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
