"""A log_summary run's lease beside the summary state: which runs are alive, what killed ones left.

Each run holds an exclusive `flock` on `.batches-<token>.lease` for its whole life; the kernel drops
it when the process dies, SIGKILL included. Over Spark Connect the lease also records the run's
session id: a killed run's query lives on in that session on the server (an orphan), and the next
run reattaches to it to stop the query (`sml_assets.orphans`). The run's batch journal is
`.batches-<token>/`. A lease whose lock can be taken, or a journal without a lease, belongs to a run
that is gone; a held lease belongs to a live run, whose files are never touched.

Two runs on one summary never work at once: each first takes `.run.lock` (`exclusive_run`), and a
second run waits for the first to end. Their queries would otherwise share the checkpoint (over
Connect the newer stops the older) and the later run's merge would start from the summary it read
before the earlier run's batches were stored, dropping their counts.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

JOURNAL_PREFIX = ".batches-"
LEASE_SUFFIX = ".lease"
TEMPORARY_PREFIX = ".lease-"
TEMPORARY_SUFFIX = ".tmp"
RUN_LOCK = ".run.lock"
RUN_LOCK_WAIT_S = 900.0
"""How long a run waits for another run on the same summary before failing (a run that rebuilds
the summary from a whole topic takes minutes; a hung one should not queue runs forever)."""
POLL_S = 0.5


class ConcurrentRunError(RuntimeError):
    """Another run on the same summary held the run lock for longer than the wait allows."""


@contextmanager
def exclusive_run(
    folder: Path, wait_s: float = RUN_LOCK_WAIT_S, waiting: Callable[[str], None] | None = None
) -> Iterator[float]:
    """Hold `folder`'s run lock for the block; yields the seconds waited for another run.

    `waiting` is told once whom the run waits for. The lock file keeps the holder's pid and start time
    for that message; the kernel drops the lock when the holder dies, SIGKILL included."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_LOCK
    started = time.monotonic()
    with path.open("a+", encoding="utf-8") as handle:
        told = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() - started >= wait_s:
                    raise ConcurrentRunError(
                        f"another log_summary run on the same summary ({holder}) has held {path} for more than "
                        f"{wait_s:.0f} s: two runs on one summary never work at once. Wait for it to end, or "
                        "stop it if it hangs (the lock goes with its process), then run log_summary again"
                    ) from None
                if not told and waiting is not None:
                    waiting(f"waiting for another log_summary run on the same summary ({holder}, lock {path})")
                    told = True
                time.sleep(POLL_S)
        waited = time.monotonic() - started
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        handle.flush()
        try:
            yield waited
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()


def _holder(path: Path) -> str:
    """Who holds the run lock, as its file says ("pid unknown" in the instant between a holder taking
    the lock and writing its pid)."""
    try:
        held = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        held = {}
    if not isinstance(held, dict) or "pid" not in held:
        return "pid unknown"
    return f"pid {held['pid']}, since {held.get('since', '?')}"


@dataclass
class RunLease:
    """This run's lease, held until `release`."""

    token: str
    path: Path
    handle: IO[str]

    @property
    def journal(self) -> Path:
        return self.path.parent / f"{JOURNAL_PREFIX}{self.token}"

    def record(self, session_id: str) -> None:
        """Write the Spark Connect session id before the query starts, so a next run can find it."""
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(json.dumps({"pid": os.getpid(), "session_id": session_id}) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def release(self) -> None:
        """Remove the journal, then the lease (a journal never outlives its lease while the run lives)."""
        shutil.rmtree(self.journal, ignore_errors=True)
        self.path.unlink(missing_ok=True)
        self.handle.close()


@dataclass(frozen=True)
class DeadRun:
    """What a run that is gone left: its lease (None when only the journal is left), its session id."""

    token: str
    lease: Path | None
    session_id: str | None

    def journal(self, folder: Path) -> Path:
        return folder / f"{JOURNAL_PREFIX}{self.token}"


def take_lease(folder: Path) -> RunLease:
    """Create and lock this run's lease; it is locked under a temporary name first, then renamed, so
    no other run ever sees it unlocked."""
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    temporary = folder / f"{TEMPORARY_PREFIX}{token}{TEMPORARY_SUFFIX}"
    handle = temporary.open("w", encoding="utf-8")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    final = folder / f"{JOURNAL_PREFIX}{token}{LEASE_SUFFIX}"
    temporary.replace(final)
    return RunLease(token=token, path=final, handle=handle)


def _session_of_dead(lease: Path) -> tuple[bool, str | None]:
    """(dead, session id): dead when the lease's lock can be taken (its run is gone)."""
    try:
        with lease.open("r", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False, None
            text = handle.read().strip()
    except FileNotFoundError:
        return True, None
    try:
        session = json.loads(text).get("session_id") if text else None
    except ValueError:
        session = None
    return True, session if isinstance(session, str) else None


def other_runs(folder: Path, own: str | None = None) -> tuple[list[Path], list[DeadRun]]:
    """The leases of other live runs in `folder`, and the runs that are gone but left a lease or a
    journal there (never `own`, this run's token); each lease is tried once.

    A run killed between locking its lease and renaming it into place leaves it under its temporary
    name, unlocked: such a lease is gone too (it never recorded a session; no journal was made yet)."""
    if not folder.is_dir():
        return [], []
    found: dict[str, DeadRun] = {}
    live: dict[str, Path] = {}
    for temporary in folder.glob(f"{TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}"):
        token = temporary.name.removeprefix(TEMPORARY_PREFIX).removesuffix(TEMPORARY_SUFFIX)
        if token != own and _session_of_dead(temporary)[0]:
            found[token] = DeadRun(token=token, lease=temporary, session_id=None)
    for lease in folder.glob(f"{JOURNAL_PREFIX}*{LEASE_SUFFIX}"):
        token = lease.name.removeprefix(JOURNAL_PREFIX).removesuffix(LEASE_SUFFIX)
        if token == own:
            continue
        dead, session = _session_of_dead(lease)
        if dead:
            found[token] = DeadRun(token=token, lease=lease, session_id=session)
        else:
            live[token] = lease
    for journal in folder.glob(f"{JOURNAL_PREFIX}*"):
        token = journal.name.removeprefix(JOURNAL_PREFIX)
        if journal.is_dir() and token not in found and token not in live and token != own:
            found[token] = DeadRun(token=token, lease=None, session_id=None)
    return sorted(live.values()), sorted(found.values(), key=lambda run: run.token)


def dead_runs(folder: Path, own: str | None = None) -> list[DeadRun]:
    """The runs that are gone but left a lease or a journal in `folder` (see `other_runs`)."""
    return other_runs(folder, own)[1]


def live_runs(folder: Path, own: str) -> list[Path]:
    """Leases held by other live runs in `folder`."""
    return other_runs(folder, own)[0]


def clear(folder: Path, runs: list[DeadRun]) -> int:
    """Remove what the dead runs left (journal, then lease); the number of journals removed."""
    removed = 0
    for run in runs:
        journal = run.journal(folder)
        if journal.is_dir():
            shutil.rmtree(journal, ignore_errors=True)
            removed += 1
        if run.lease is not None:
            run.lease.unlink(missing_ok=True)
    return removed
