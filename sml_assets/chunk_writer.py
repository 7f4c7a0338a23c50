"""A chunk's transaction on a thread of its own, while the consume loop reads and parses the next chunk.

The loop parses and encodes each batch on its thread (`MetricsDatabase.encode_rows`: PostgreSQL's
binary `COPY` rows, SQLite's parameter tuples) and hands it over; the writer thread opens the chunk's
transaction, sends the rows (PostgreSQL: batch by batch, as they come), then the dead letters and
the offset compare-and-set, and commits: chunk after chunk, in order, each all or nothing as
before. A run killed at any moment leaves at most the chunks not yet committed to be read again.

Why a thread: a run was one thread busy all along on a 2-core machine, half of it in the
database's own work (SQLite's B-tree inserts and commits, PostgreSQL's wait for the server's
insert), which lets the GIL go. Alone the SQLite run did 0.94x a plain consume-and-parse loop that
writes nothing; with the writer, 1.23x (200,000 messages, medians of four interleaved pairs of runs,
2026-11-29; benchmarks/bench_ingest.py).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sml_assets.resources.database import MetricsDatabase, OffsetAdvance, chunk_stamps

if TYPE_CHECKING:
    from sml_assets.chunks import MetricColumns
    from sml_assets.resources.bulk import EncodedRows

PENDING_BATCHES = 8
"""Batches and commits handed over but not yet written: the loop runs at most this far ahead of
the database (PostgreSQL: 8 batches of 2,500 messages, within a chunk; elsewhere at most a few
chunks), so memory stays flat."""


@dataclass
class CommittedChunk:
    """A chunk the writer committed: what the run reports."""

    rows: int
    dead_letters: Sequence[Mapping[str, Any]]


@dataclass
class _Add:
    opened_at: datetime
    rows: EncodedRows


@dataclass
class _Commit:
    opened_at: datetime
    dead_letters: Sequence[Mapping[str, Any]]
    advances: Sequence[OffsetAdvance]


@dataclass
class _Stop:
    """No more work: a chunk still open is rolled back."""


class ChunkWriter:
    """Writes the chunks of one consumer and topic id on its own thread (a context manager).

    `add` and `commit` hand work over and return at once (they wait only while PENDING_BATCHES are
    pending); a failure of the writer (an offset conflict, the database gone) is raised by the next
    `add`, `commit` or `close`, and nothing after the failed chunk is written. Leaving the block
    with an error rolls back the chunk being written, if it was not committed yet.
    """

    def __init__(self, database: MetricsDatabase, consumer: str, topic: str, topic_id: str) -> None:
        self._database = database
        self._consumer = consumer
        self._topic = topic
        self._topic_id = topic_id
        self.streams = database.streams_rows()
        """Whether the rows of a chunk go to the server as they are added (PostgreSQL)."""
        self._work: queue.Queue[_Add | _Commit | _Stop] = queue.Queue(PENDING_BATCHES)
        self._committed: deque[CommittedChunk] = deque()
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"sml-writer-{topic}", daemon=True)
        self._opened_at = datetime.now(UTC)
        """When the chunk the loop is filling was opened: every row's `ingested_at`."""

    def __enter__(self) -> ChunkWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop()

    def add(self, rows: MetricColumns) -> None:
        """Encode `rows` (of the chunk being filled) here and hand them to the writer."""
        if len(rows):
            stamps = chunk_stamps(self._opened_at, self._topic_id)
            self._put(_Add(self._opened_at, self._database.encode_rows(rows, stamps)))

    def commit(self, dead_letters: Sequence[Mapping[str, Any]], advances: Sequence[OffsetAdvance]) -> None:
        """Hand over the end of the chunk (its dead letters and offset advances) and open the next one."""
        self._put(_Commit(self._opened_at, dead_letters, advances))
        self._opened_at = datetime.now(UTC)

    def committed(self) -> list[CommittedChunk]:
        """The chunks committed since the last call, in order."""
        done = []
        while self._committed:
            done.append(self._committed.popleft())
        return done

    def close(self) -> None:
        """Wait until every chunk handed over is committed; raise the writer's failure, if any."""
        self._stop()
        self._raise_failure()

    def _put(self, work: _Add | _Commit) -> None:
        self._raise_failure()
        self._work.put(work)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._work.put(_Stop())
            self._thread.join()

    def _run(self) -> None:
        try:
            work = self._work.get()
            while not isinstance(work, _Stop):
                work = self._write_chunk(work)
        except BaseException as error:  # handed to the loop's thread, which raises it
            self._error = error
            while not isinstance(self._work.get(), _Stop):
                pass

    def _write_chunk(self, first: _Add | _Commit) -> _Add | _Commit | _Stop:
        """Write one chunk, starting with `first`; return the first work after its commit."""
        database = self._database
        work: _Add | _Commit | _Stop = first
        with database.chunk_transaction(self._consumer, self._topic, self._topic_id, first.opened_at) as transaction:
            while isinstance(work, _Add):
                transaction.add_encoded(work.rows)
                work = self._work.get()
            if isinstance(work, _Stop):
                return work  # leaving the block uncommitted rolls the chunk back
            transaction.commit(work.dead_letters, work.advances)
            self._committed.append(CommittedChunk(transaction.rows, work.dead_letters))
        return self._work.get()
