"""The metrics database: one SQLAlchemy engine from a URL (SQLite, PostgreSQL or SQL Server).

Every write of `server_metrics` goes through `chunk_transaction`: rows, dead letters and the stored
offsets they cover change in one transaction, which is what makes a killed run safe to rerun.
Stored positions belong to one target table and one Kafka topic id (a recreated topic has a new
id), so neither a new table nor a recreated topic can be read from positions that are not theirs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from sml_assets import parsing
from sml_assets.errors import STACK_HINT, first_line

# SQLAlchemy, numpy and pyarrow are imported where used: every process that loads the code location
# imports this module, and most never touch the database.

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, Table
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import URL

    from sml_assets.chunks import MetricColumns
    from sml_assets.resources.bulk import EncodedRows
    from sml_assets.resources.tables import MetricsSchema

URL_VARIABLE = "SML_METRICS_DB_URL"
TABLE_VARIABLE = "SML_METRICS_TABLE"
OFFSETS_TABLE = "sml_offsets"
DEAD_LETTERS_TABLE = "sml_dead_letters"
MAX_TABLE_NAME = 48
"""Leaves room for the `uq_<table>_topic_pos` constraint name within PostgreSQL's 63 characters."""
LEGACY_TOPIC_ID = ""
"""`kafka_topic_id` of rows and positions whose topic id is unknown: written before sml recorded
topic ids, and stamped so by `migrate` when they cannot be tied to the topic that exists now."""
MIGRATE_COMMAND = "python -m sml_assets.migrate"
_ADDED_COLUMNS = {
    "kafka_topic_id": "the Kafka topic id, so rows of a deleted and recreated topic stay apart",
    "target_table": "the table the positions and dead letters belong to",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DatabaseUnavailableError(RuntimeError):
    """The metrics database could not be reached or used; the message names the variable."""


class OffsetConflictError(RuntimeError):
    """Stored offsets moved under a run: another run of the same consumer wrote them first."""


class SchemaMigrationError(RuntimeError):
    """A table was created by an older sml and lacks a column; `migrate` adds it, nothing else does."""


@dataclass(frozen=True)
class StoredPosition:
    """The next offset to read in one partition, and the id of the topic it was read from."""

    next_offset: int
    topic_id: str


@dataclass(frozen=True)
class HeldRows:
    """Rows (or dead letters) of one table, topic id and partition at or after some offset."""

    table: str
    topic_id: str
    partition: int
    count: int
    first: int
    last: int


def validate_table_name(name: str) -> str:
    """The metrics table name, checked: it is spliced into DDL, so only a plain identifier passes."""
    if not _IDENTIFIER.fullmatch(name) or len(name) > MAX_TABLE_NAME:
        raise ValueError(
            f"{TABLE_VARIABLE}={name!r} is not a plain SQL identifier: use letters, digits and '_', "
            f"starting with a letter or '_', at most {MAX_TABLE_NAME} characters"
        )
    if name.lower() in (OFFSETS_TABLE, DEAD_LETTERS_TABLE):
        raise ValueError(f"{TABLE_VARIABLE}={name!r} clashes with sml's own table {name.lower()}; pick another name")
    return name


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***: the only form of it sml ever logs or shows."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<not a SQLAlchemy URL; value hidden as it may hold a password>"


def engine_options(url: URL, connect_timeout_s: float) -> dict[str, Any]:
    """`create_engine` keyword arguments suiting the backend: bulk inserts and connect timeouts.

    pyodbc sends an executemany row by row unless `fast_executemany` is on; psycopg 3 pipelines
    executemany and SQLite runs it in-process, so both need nothing extra.
    """
    options: dict[str, Any] = {"pool_pre_ping": True}
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "mssql" and driver == "pyodbc":
        options["fast_executemany"] = True
        options["connect_args"] = {"timeout": max(1, round(connect_timeout_s))}
    elif backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        options["connect_args"] = {"connect_timeout": max(1, round(connect_timeout_s))}
    elif backend == "sqlite":
        options["connect_args"] = {"timeout": connect_timeout_s}
        if not is_sqlite_file(url):
            from sqlalchemy.pool import StaticPool

            # One in-memory database for every thread (SQLAlchemy's default gives each thread its
            # own): the ingest writes its chunks on a thread of its own (`chunk_writer`).
            options["poolclass"] = StaticPool
            options["connect_args"]["check_same_thread"] = False
    return options


def is_sqlite_file(url: URL) -> bool:
    """A SQLite database in a file (not in memory): the only kind a journal mode applies to."""
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


SQLITE_PAGE_SIZE = 16_384
"""Bytes per page of a SQLite file sml creates (SQLite's default is 4,096). A chunk's commit writes
each page it changed to the log, and each checkpoint copies them back: with 16 KiB pages a 10,000-row
chunk changes about a quarter as many pages, splits its B-trees a quarter as often, and the write plus
commit took 1.5 us a row instead of 1.8, the final checkpoint included; a 200,000-message run,
356,538 rows/s instead of 315,167 (medians of four interleaved runs, 2026-11-29; 64 KiB: 353,078).
A file that exists keeps the page size it was created with (SQLite fixes it with the first table)."""


def _sqlite_write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead log, synced at checkpoints: a chunk's commit appends to the log instead of
    rewriting pages and syncing twice (about 1.4x the rows/s in benchmarks/bench_ingest.py). A killed
    process loses nothing committed; a power cut may roll back the last chunks, rows and offsets
    together, so their messages are read again (RELIABILITY.md). The page size goes first: switching
    a new, empty file to the log writes its header, which fixes the page size there and then."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


@dataclass(frozen=True)
class OffsetAdvance:
    """Move one partition's stored offset from `expected` (None: no row yet) to `next_offset`."""

    partition: int
    expected: int | None
    next_offset: int


def chunk_stamps(opened_at: datetime, topic_id: str) -> dict[str, Any]:
    """The values every row of a chunk gets: when the chunk was opened and the topic's id."""
    return {"ingested_at": opened_at, "kafka_topic_id": topic_id}


class ChunkTransaction:
    """A chunk's open transaction (`MetricsDatabase.chunk_transaction`).

    On PostgreSQL through psycopg the rows go to the server as they are added, in one binary `COPY`
    (`bulk.CopyStream`), so it inserts one batch while the next is parsed; elsewhere they are kept
    and written at `commit`, in each database's fastest way (`bulk.write_encoded`). Every row gets
    the chunk's `ingested_at` (`opened_at`: when the chunk was opened, by default now) and topic id.
    """

    def __init__(
        self,
        database: MetricsDatabase,
        connection: Connection,
        consumer: str,
        topic: str,
        topic_id: str,
        opened_at: datetime | None = None,
    ):
        from sml_assets.resources.bulk import CopyStream, streams_copy

        self.database = database
        self.consumer = consumer
        self.topic = topic
        self.topic_id = topic_id
        self.opened_at = opened_at or datetime.now(UTC)
        self.rows = 0
        self.committed = False
        self._connection = connection
        self._transaction = connection.begin()
        self._stamps = chunk_stamps(self.opened_at, topic_id)
        self._stream = CopyStream(connection, database.tables.metrics) if streams_copy(connection.dialect) else None
        self._kept: list[EncodedRows] = []

    @property
    def streams(self) -> bool:
        """Whether added rows go to the server at once (else they are written at `commit`)."""
        return self._stream is not None

    def add(self, rows: MetricColumns) -> None:
        """Rows of this chunk's topic (and topic id), in the table once `commit` returns."""
        if len(rows):
            self.add_encoded(self.database.encode_rows(rows, self._stamps))

    def add_encoded(self, rows: EncodedRows) -> None:
        """Rows encoded with this chunk's stamps (`MetricsDatabase.encode_rows`), as `add`."""
        if not rows.count:
            return
        self.rows += rows.count
        if self._stream is None:
            self._kept.append(rows)
            return
        with self.database.chunk_errors(self.consumer, self.topic):
            self._stream.send(rows)

    def commit(self, dead_letters: Sequence[Mapping[str, Any]], advances: Sequence[OffsetAdvance]) -> None:
        """Write what is left, the dead letters and the offset advances, and commit."""
        from sqlalchemy import insert

        from sml_assets.resources.bulk import write_encoded

        tables = self.database.tables
        connection = self._connection
        with self.database.chunk_errors(self.consumer, self.topic):
            if self._stream is not None:
                self._stream.finish()
            elif self._kept:
                write_encoded(connection, tables.metrics, self._kept, self._stamps)
            if dead_letters:
                connection.execute(
                    insert(tables.dead_letters),
                    [
                        dict(
                            row,
                            recorded_at=self.opened_at,
                            kafka_topic_id=self.topic_id,
                            target_table=tables.metrics.name,
                        )
                        for row in dead_letters
                    ],
                )
            for advance in advances:
                self.database._advance(connection, self.consumer, self.topic, self.topic_id, advance, self.opened_at)
            self._transaction.commit()
        self.committed = True

    def abandon(self, error: BaseException | None) -> None:
        """Roll back: nothing of the chunk is written (`error`, if any, is why)."""
        if self._stream is not None:
            self._stream.abort(error)
        with suppress(Exception):  # a lost connection has rolled back already
            self._transaction.rollback()


class MetricsDatabase(ConfigurableResource):
    """Where `server_metrics` lands; swapping SQLite for SQL Server is a URL, not a code path."""

    url: str
    table: str = "server_matric"
    connect_timeout_s: float = 10.0

    _db_engine: Engine | None = PrivateAttr(default=None)
    _tables: MetricsSchema | None = PrivateAttr(default=None)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def tables(self) -> MetricsSchema:
        from sml_assets.resources.tables import metrics_schema

        if self._tables is None:
            self._tables = metrics_schema(self.table)
        return self._tables

    def teardown_after_execution(self, context: Any) -> None:
        if self._db_engine is not None:
            self._db_engine.dispose()
            self._db_engine = None

    def engine(self) -> Engine:
        """The engine, built on first use (no connection at import or definition time)."""
        from sqlalchemy import create_engine, event, make_url
        from sqlalchemy import exc as sa_exc

        if self._db_engine is None:
            try:
                url = make_url(self.url)
            except sa_exc.ArgumentError:
                raise DatabaseUnavailableError(
                    f"{URL_VARIABLE} is not a valid SQLAlchemy URL (value hidden: it may hold a password); "
                    "expected e.g. 'postgresql+psycopg://user:password@host:5432/db' or 'sqlite:///path/sml.db'"
                ) from None
            if is_sqlite_file(url) and url.database:
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            try:
                engine = create_engine(url, **engine_options(url, self.connect_timeout_s))
            except (ImportError, sa_exc.NoSuchModuleError) as error:
                raise DatabaseUnavailableError(
                    f"{URL_VARIABLE}={self.masked_url}: the database driver could not be loaded ({error}); "
                    "install it (for mssql+pyodbc: unixODBC and Microsoft's 'ODBC Driver 18 for SQL Server')"
                ) from None
            if is_sqlite_file(url):
                event.listen(engine, "connect", _sqlite_write_ahead_log)
            self._db_engine = engine
        return self._db_engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; connection failures become a `DatabaseUnavailableError` naming the URL."""
        with self._connect() as connection, connection.begin():
            yield connection

    def _connect(self) -> Connection:
        """A connection of the engine; a failure to connect is a `DatabaseUnavailableError` naming the URL."""
        from sqlalchemy import exc as sa_exc

        try:
            return self.engine().connect()
        except sa_exc.DBAPIError as error:
            raise self._unavailable(error) from None

    def ensure_tables(self) -> None:
        """Create the three tables if missing; safe to call on every run and from parallel runs.

        A table an older sml created is not altered here: a missing column raises
        `SchemaMigrationError` naming it and the command that adds it (`migrate`).
        """
        from sqlalchemy import exc as sa_exc

        try:
            self.tables.metadata.create_all(self.engine(), checkfirst=True)
        except sa_exc.OperationalError as error:
            if _is_connection_error(error):
                raise self._unavailable(error) from None
            raise
        except (sa_exc.ProgrammingError, sa_exc.IntegrityError):
            self.tables.metadata.create_all(self.engine(), checkfirst=True)
        self.require_current_schema()

    def missing_columns(self) -> dict[str, list[str]]:
        """Columns of sml's schema that the existing tables lack, per table (absent tables: none)."""
        with self.transaction() as connection:
            return self._missing_columns(connection)

    def require_current_schema(self) -> None:
        """Raise `SchemaMigrationError` when an existing table lacks a column of the schema."""
        missing = self.missing_columns()
        if missing:
            table, columns = next(iter(missing.items()))
            raise SchemaMigrationError(
                f"table {table} at {URL_VARIABLE}={self.masked_url} has no column {columns[0]} "
                f"({_ADDED_COLUMNS.get(columns[0], 'added by a newer sml')}); it was created by an older "
                f"sml. Stop the schedule and sensor, then run '{MIGRATE_COMMAND}' once with the runs' "
                f"environment ({URL_VARIABLE}, {TABLE_VARIABLE}, SML_KAFKA_BOOTSTRAP_SERVERS); "
                "nothing was read or written"
            )

    def stored_offsets(self, consumer: str, topic: str) -> dict[int, int]:
        """Next offset to read per partition of `topic` into this table, whatever topic id it had."""
        return {p: position.next_offset for p, position in self.stored_positions(consumer, topic).items()}

    def stored_positions(self, consumer: str, topic: str, *, tables_ensured: bool = False) -> dict[int, StoredPosition]:
        """Next offset per partition and the topic id it belongs to, for this consumer and table.

        `tables_ensured`: the caller has just run `ensure_tables`, so the offsets table exists with
        every column and is not inspected again (on PostgreSQL about 5 ms of catalog queries, a
        hundredth of a 200,000-message run)."""
        from sqlalchemy import inspect, select

        offsets = self.tables.offsets
        with self.transaction() as connection:
            if not tables_ensured:
                if not inspect(connection).has_table(OFFSETS_TABLE):
                    return {}
                if OFFSETS_TABLE in self._missing_columns(connection):
                    self.require_current_schema()
            rows = connection.execute(
                select(offsets.c.kafka_partition, offsets.c.next_offset, offsets.c.kafka_topic_id).where(
                    offsets.c.consumer == consumer,
                    offsets.c.target_table == self.tables.metrics.name,
                    offsets.c.kafka_topic == topic,
                )
            )
            return {int(p): StoredPosition(int(offset), str(topic_id)) for p, offset, topic_id in rows}

    def commit_chunk(
        self,
        consumer: str,
        topic: str,
        rows: MetricColumns | Sequence[Mapping[str, Any]],
        dead_letters: Sequence[Mapping[str, Any]],
        advances: Sequence[OffsetAdvance],
        topic_id: str = LEGACY_TOPIC_ID,
    ) -> None:
        """Insert rows and dead letters of topic id `topic_id` and advance the stored offsets, all or
        nothing: one `chunk_transaction` given all its rows at once.
        Rows come as columns or as dicts with the metrics table's keys.
        """
        from sml_assets.chunks import MetricColumns

        columns = rows if isinstance(rows, MetricColumns) else MetricColumns.from_rows(topic, rows)
        with self.chunk_transaction(consumer, topic, topic_id) as chunk:
            chunk.add(columns)
            chunk.commit(dead_letters, advances)

    @contextmanager
    def chunk_transaction(
        self, consumer: str, topic: str, topic_id: str = LEGACY_TOPIC_ID, opened_at: datetime | None = None
    ) -> Iterator[ChunkTransaction]:
        """One chunk's transaction: its rows are added as they are parsed (`ChunkTransaction.add`),
        then `commit` inserts the dead letters and advances the stored offsets, all or nothing.
        Leaving the block without `commit`, or with an error, rolls everything back.

        Each advance is a compare-and-set on the offset (and topic id) the run started from, so a
        second run of the same consumer, or an adopt or reset meanwhile, fails the chunk with
        `OffsetConflictError` instead of writing a message twice.
        """
        with self._connect() as connection:
            chunk = ChunkTransaction(self, connection, consumer, topic, topic_id, opened_at)
            try:
                yield chunk
            except BaseException as error:
                chunk.abandon(error)
                raise
            if not chunk.committed:
                chunk.abandon(None)

    def encode_rows(self, rows: MetricColumns, stamps: Mapping[str, Any]) -> EncodedRows:
        """`rows` with a chunk's `stamps` in the form this database's write takes (`bulk.encode_metrics`):
        made on the parsing thread, before the chunk's transaction opens (`chunk_writer`)."""
        from sml_assets.resources.bulk import encode_metrics

        return encode_metrics(self.engine().dialect, self.tables.metrics, rows, stamps)

    def streams_rows(self) -> bool:
        """Whether a chunk's rows go to the server as they are added (`ChunkTransaction.streams`)."""
        from sml_assets.resources.bulk import streams_copy

        return streams_copy(self.engine().dialect)

    @contextmanager
    def chunk_errors(self, consumer: str, topic: str) -> Iterator[None]:
        """A chunk's database errors as sml's: a message already written is an `OffsetConflictError`,
        a lost connection a `DatabaseUnavailableError` naming the URL."""
        from sqlalchemy import exc as sa_exc

        try:
            yield
        except sa_exc.IntegrityError as error:
            raise OffsetConflictError(
                f"{topic}: a message of this chunk is already in {self.tables.metrics.name} or "
                f"{DEAD_LETTERS_TABLE} ({first_line(error)}); another run of consumer {consumer!r} wrote "
                "it, or the stored offsets were reset without the replay tool. "
                "Nothing of this chunk was written."
            ) from None
        except sa_exc.OperationalError as error:
            if _is_connection_error(error):
                raise self._unavailable(error) from None
            raise

    def held_rows(self, topic: str, partition: int, offset: int) -> list[HeldRows]:
        """Rows and dead letters of `topic` (any topic id) in `partition` at or after `offset`."""
        from sqlalchemy import func, select

        tables = self.tables
        held = []
        with self.transaction() as connection:
            for table in (tables.metrics, tables.dead_letters):
                query = (
                    select(
                        table.c.kafka_topic_id,
                        func.count(),
                        func.min(table.c.kafka_offset),
                        func.max(table.c.kafka_offset),
                    )
                    .where(
                        table.c.kafka_topic == topic,
                        table.c.kafka_partition == partition,
                        table.c.kafka_offset >= offset,
                        *self._own_dead_letters(table),
                    )
                    .group_by(table.c.kafka_topic_id)
                )
                for topic_id, count, first, last in connection.execute(query):
                    held.append(HeldRows(table.name, str(topic_id), partition, int(count), int(first), int(last)))
        return held

    def reset_offset(
        self,
        consumer: str,
        topic: str,
        partition: int,
        offset: int,
        topic_id: str = LEGACY_TOPIC_ID,
        delete_other_topic_ids: bool = False,
    ) -> int:
        """Replay: set the stored offset and forget rows and dead letters of `topic_id` at or after it.

        Deleting in the same transaction keeps the table exactly-once when those messages are read
        again. Rows of other topic ids cannot be read again, so they stay unless
        `delete_other_topic_ids`. Returns how many rows and dead letters were removed.
        """
        from sqlalchemy import delete, insert, update

        tables = self.tables
        now = datetime.now(UTC)
        with self.transaction() as connection:
            removed = 0
            for table in (tables.metrics, tables.dead_letters):
                which = [] if delete_other_topic_ids else [table.c.kafka_topic_id == topic_id]
                result = connection.execute(
                    delete(table).where(
                        table.c.kafka_topic == topic,
                        table.c.kafka_partition == partition,
                        table.c.kafka_offset >= offset,
                        *which,
                        *self._own_dead_letters(table),
                    )
                )
                removed += result.rowcount or 0
            key = self._offset_key(consumer, topic, partition)
            result = connection.execute(
                update(tables.offsets).where(key).values(next_offset=offset, kafka_topic_id=topic_id, updated_at=now)
            )
            if result.rowcount == 0:
                connection.execute(
                    insert(tables.offsets).values(self._position(consumer, topic, topic_id, partition, offset, now))
                )
            return removed

    def adopt_topic(
        self, consumer: str, topic: str, topic_id: str, starts: Mapping[int, int]
    ) -> dict[int, StoredPosition]:
        """Replace this consumer's positions in `topic` by `starts` under the topic's new id.

        Rows already written keep their old topic id: nothing is deleted. Returns the old positions.
        """
        from sqlalchemy import delete, insert

        offsets = self.tables.offsets
        now = datetime.now(UTC)
        before = self.stored_positions(consumer, topic)
        with self.transaction() as connection:
            connection.execute(
                delete(offsets).where(
                    offsets.c.consumer == consumer,
                    offsets.c.target_table == self.tables.metrics.name,
                    offsets.c.kafka_topic == topic,
                )
            )
            if starts:
                connection.execute(
                    insert(offsets),
                    [
                        self._position(consumer, topic, topic_id, partition, offset, now)
                        for partition, offset in sorted(starts.items())
                    ],
                )
        return before

    def legacy_positions(self) -> dict[str, dict[int, int]]:
        """Before `migrate`: stored offsets per topic and partition (all consumers, highest offset)."""
        from sqlalchemy import MetaData, Table, inspect, select

        with self.transaction() as connection:
            if not inspect(connection).has_table(OFFSETS_TABLE):
                return {}
            legacy = Table(OFFSETS_TABLE, MetaData(), autoload_with=connection)
            positions: dict[str, dict[int, int]] = {}
            for topic, partition, offset in connection.execute(
                select(legacy.c.kafka_topic, legacy.c.kafka_partition, legacy.c.next_offset)
            ):
                per_topic = positions.setdefault(str(topic), {})
                per_topic[int(partition)] = max(int(offset), per_topic.get(int(partition), 0))
            return positions

    def legacy_topics(self) -> set[str]:
        """Topics named by rows, dead letters or positions of the tables `migrate` would change."""
        from sqlalchemy import MetaData, Table, select

        topics = set(self.legacy_positions())
        with self.transaction() as connection:
            for name in self._missing_columns(connection):
                table = Table(name, MetaData(), autoload_with=connection)
                topics.update(str(t) for (t,) in connection.execute(select(table.c.kafka_topic).distinct()))
        return topics

    def migrate(self, topic_ids: Mapping[str, str]) -> list[str]:
        """Add what the existing tables lack, in one transaction; return what was done, line by line.

        Each table lacking a column is rebuilt (SQLite cannot change a unique key in place): renamed
        aside, created anew, copied, dropped. Existing rows and positions get the topic id given for
        their topic in `topic_ids` (else `LEGACY_TOPIC_ID`, an earlier topic) and this table as
        their target table.
        """
        from sqlalchemy import update

        done: list[str] = []
        with self.transaction() as connection:
            missing = self._missing_columns(connection)
            for table in (self.tables.metrics, self.tables.offsets, self.tables.dead_letters):
                if table.name not in missing:
                    continue
                copied = _rebuild(connection, table)
                for topic, topic_id in sorted(topic_ids.items()):
                    if "kafka_topic_id" in missing[table.name]:
                        connection.execute(
                            update(table).where(table.c.kafka_topic == topic).values(kafka_topic_id=topic_id)
                        )
                if "target_table" in missing[table.name]:
                    connection.execute(update(table).values(target_table=self.tables.metrics.name))
                done.append(f"{table.name}: added {', '.join(missing[table.name])}; {copied:,} rows kept")
        self.tables.metadata.create_all(self.engine(), checkfirst=True)
        return done

    def _missing_columns(self, connection: Connection) -> dict[str, list[str]]:
        from sqlalchemy import inspect

        inspector = inspect(connection)
        missing: dict[str, list[str]] = {}
        for table in (self.tables.metrics, self.tables.offsets, self.tables.dead_letters):
            if not inspector.has_table(table.name):
                continue
            existing = {column["name"].lower() for column in inspector.get_columns(table.name)}
            lacking = [column.name for column in table.columns if column.name.lower() not in existing]
            if lacking:
                missing[table.name] = lacking
        return missing

    def _own_dead_letters(self, table: Table) -> list[Any]:
        """Dead letters are shared by every metrics table of a database: keep to this one's."""
        if table is self.tables.dead_letters:
            return [table.c.target_table == self.tables.metrics.name]
        return []

    def _position(
        self, consumer: str, topic: str, topic_id: str, partition: int, offset: int, now: datetime
    ) -> dict[str, Any]:
        return {
            "consumer": consumer,
            "target_table": self.tables.metrics.name,
            "kafka_topic": topic,
            "kafka_topic_id": topic_id,
            "kafka_partition": partition,
            "next_offset": offset,
            "updated_at": now,
        }

    def _offset_key(self, consumer: str, topic: str, partition: int) -> Any:
        from sqlalchemy import and_

        offsets = self.tables.offsets
        return and_(
            offsets.c.consumer == consumer,
            offsets.c.target_table == self.tables.metrics.name,
            offsets.c.kafka_topic == topic,
            offsets.c.kafka_partition == partition,
        )

    def _advance(
        self,
        connection: Connection,
        consumer: str,
        topic: str,
        topic_id: str,
        advance: OffsetAdvance,
        now: datetime,
    ) -> None:
        from sqlalchemy import insert, update

        offsets = self.tables.offsets
        if advance.expected is None:
            connection.execute(
                insert(offsets).values(
                    self._position(consumer, topic, topic_id, advance.partition, advance.next_offset, now)
                )
            )
            return
        result = connection.execute(
            update(offsets)
            .where(
                self._offset_key(consumer, topic, advance.partition),
                offsets.c.next_offset == advance.expected,
                offsets.c.kafka_topic_id == topic_id,
            )
            .values(next_offset=advance.next_offset, updated_at=now)
        )
        if result.rowcount != 1:
            raise OffsetConflictError(
                f"{topic}[{advance.partition}]: stored offset of consumer {consumer!r} is no longer "
                f"{advance.expected} of topic id {topic_id or '(unknown)'}; another run, a reset or an "
                "adopt moved it. Nothing of this chunk was written; the next run resumes from the stored "
                "offset."
            )

    def _unavailable(self, error: BaseException) -> DatabaseUnavailableError:
        from sqlalchemy import make_url

        message = first_line(error)
        password = make_url(self.url).password
        if password:
            message = message.replace(str(password), "***")
        advice = _tls_advice(message, self.url)
        if advice is not None:
            return DatabaseUnavailableError(f"{URL_VARIABLE}={self.masked_url}: TLS failed ({message}): {advice}")
        return DatabaseUnavailableError(
            f"{URL_VARIABLE}={self.masked_url} could not be reached or refused the connection "
            f"({message}): {STACK_HINT}, or check the credentials and set {URL_VARIABLE} "
            "to a reachable database"
        )


def _tls_advice(message: str, url: str) -> str | None:
    """The setting to fix when the server's certificate was refused (sslmode=verify-ca/verify-full)."""
    from sqlalchemy import make_url

    root = make_url(url).query.get("sslrootcert", "~/.postgresql/root.crt (libpq's default)")
    if "certificate verify failed" in message:
        return (
            f"the server's certificate is not signed by the CA in sslrootcert={root}: set sslrootcert in "
            f"{URL_VARIABLE} to the CA file that signed it (the local stack's is "
            "<SML_DATA_DIR>/stack/tls/ca.pem)"
        )
    if "does not match host name" in message:
        return f"the server's certificate does not name the host in {URL_VARIABLE}: use the name it was issued for"
    return None


def _rebuild(connection: Connection, table: Table) -> int:
    """Replace the existing table of `table`'s name by `table`, keeping its rows; returns their count.

    Indexes are named per schema, so the old table's indexes that the new one reuses go first;
    unique keys of the new schema have new names and cannot clash.
    """
    from sqlalchemy import MetaData, Table, func, insert, inspect, select

    aside = f"{table.name}_sml_migrating"
    old = Table(table.name, MetaData(), autoload_with=connection)
    reused = {index.name for index in table.indexes}
    for index in list(old.indexes):
        if index.name in reused:
            index.drop(connection)
    quote = connection.dialect.identifier_preparer.quote
    if connection.dialect.name != "sqlite":
        # A unique key the new schema names alike (a table migrated for a new metric field) is
        # schema-wide on PostgreSQL and SQL Server: the table set aside must give it up first.
        kept_keys = {constraint.name for constraint in table.constraints if constraint.name}
        for key in inspect(connection).get_unique_constraints(table.name):
            if key["name"] in kept_keys:
                connection.exec_driver_sql(f"ALTER TABLE {quote(table.name)} DROP CONSTRAINT {quote(key['name'])}")
    if connection.dialect.name == "mssql":
        connection.exec_driver_sql(f"EXEC sp_rename '{table.name}', '{aside}'")
    else:
        connection.exec_driver_sql(f"ALTER TABLE {quote(table.name)} RENAME TO {quote(aside)}")
    created = table.to_metadata(MetaData())
    for name in parsing.METRIC_FIELDS:
        if name in created.c and name not in old.c:
            created.c[name].nullable = True  # a metric field added later: the rows stored before lack it
    created.create(connection)
    moved = Table(aside, MetaData(), autoload_with=connection)
    kept = [column.name for column in moved.columns if column.name in table.c]
    connection.execute(insert(table).from_select(kept, select(*(moved.c[name] for name in kept))))
    count = int(connection.execute(select(func.count()).select_from(table)).scalar_one())
    moved.drop(connection)
    return count


def _is_connection_error(error: sa_exc.DBAPIError) -> bool:
    return bool(error.connection_invalidated) or "connect" in str(error.orig).lower()
