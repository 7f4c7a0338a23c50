"""The metrics database: one SQLAlchemy engine from a URL (SQLite, PostgreSQL or SQL Server).

Every write of `server_metrics` goes through `commit_chunk`: rows, dead letters and the stored
offsets they cover change in one transaction, which is what makes a killed run safe to rerun.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
    UnicodeText,
    UniqueConstraint,
    and_,
    create_engine,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.schema import CreateColumn

from sml_assets import parsing
from sml_assets.errors import STACK_HINT, first_line

URL_VARIABLE = "SML_METRICS_DB_URL"
TABLE_VARIABLE = "SML_METRICS_TABLE"
OFFSETS_TABLE = "sml_offsets"
DEAD_LETTERS_TABLE = "sml_dead_letters"
MAX_TABLE_NAME = 48
"""Leaves room for the `uq_<table>_kafka_position` constraint name within PostgreSQL's 63 characters."""
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MIGRATE_COMMAND = "python -m sml_assets.migrate"


class DatabaseUnavailableError(RuntimeError):
    """The metrics database could not be reached or used; the message names the variable."""


class SchemaMismatchError(RuntimeError):
    """The metrics table lacks a column sml writes (a metric field added since it was created)."""


class OffsetConflictError(RuntimeError):
    """Stored offsets moved under a run: another run of the same consumer wrote them first."""


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the column type each database offers.

    PostgreSQL keeps `timestamptz`; SQLite and SQL Server (DATETIME2, no offset: DATETIMEOFFSET
    breaks pyodbc's fast_executemany) store naive UTC, which is read back as UTC.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.DATETIME2(precision=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column; attach a time zone")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class MetricsSchema:
    """The three tables of DESIGN.md section 3, for one configurable metrics table name."""

    metadata: MetaData
    metrics: Table
    offsets: Table
    dead_letters: Table


def validate_table_name(name: str) -> str:
    """The metrics table name, checked: it is spliced into DDL, so only a plain identifier passes."""
    if not _IDENTIFIER.fullmatch(name) or len(name) > MAX_TABLE_NAME:
        raise ValueError(
            f"{TABLE_VARIABLE}={name!r} is not a plain SQL identifier: use letters, digits and '_', "
            f"starting with a letter or '_', at most {MAX_TABLE_NAME} characters"
        )
    if name.lower() in (OFFSETS_TABLE, DEAD_LETTERS_TABLE):
        raise ValueError(
            f"{TABLE_VARIABLE}={name!r} clashes with sml's own table {name.lower()}; pick another name"
        )
    return name


def metrics_schema(table_name: str) -> MetricsSchema:
    """Build the tables; `table_name` is validated first."""
    name = validate_table_name(table_name)
    metadata = MetaData()
    metrics = Table(
        name,
        metadata,
        Column("server_id", Integer, nullable=False),
        *(Column(field, Float, nullable=False) for field in parsing.METRIC_FIELDS),
        Column("event_time", UtcDateTime, nullable=False),
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("ingested_at", UtcDateTime, nullable=False),
        UniqueConstraint("kafka_topic", "kafka_partition", "kafka_offset", name=f"uq_{name}_kafka_position"),
        Index(f"ix_{name}_event_time", "event_time"),
    )
    offsets = Table(
        OFFSETS_TABLE,
        metadata,
        Column("consumer", String(200), nullable=False),
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("next_offset", BigInteger, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("consumer", "kafka_topic", "kafka_partition", name="pk_sml_offsets"),
    )
    dead_letters = Table(
        DEAD_LETTERS_TABLE,
        metadata,
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("raw_value", UnicodeText, nullable=False),
        Column("reason", UnicodeText, nullable=False),
        Column("recorded_at", UtcDateTime, nullable=False),
        UniqueConstraint(
            "kafka_topic", "kafka_partition", "kafka_offset", name="uq_sml_dead_letters_kafka_position"
        ),
        Index("ix_sml_dead_letters_recorded_at", "recorded_at"),
    )
    return MetricsSchema(metadata, metrics, offsets, dead_letters)


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***: the only form of it sml ever logs or shows."""
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
    return options


@dataclass(frozen=True)
class OffsetAdvance:
    """Move one partition's stored offset from `expected` (None: no row yet) to `next_offset`."""

    partition: int
    expected: int | None
    next_offset: int


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
        if self._tables is None:
            self._tables = metrics_schema(self.table)
        return self._tables

    def teardown_after_execution(self, context: Any) -> None:
        if self._db_engine is not None:
            self._db_engine.dispose()
            self._db_engine = None

    def engine(self) -> Engine:
        """The engine, built on first use (no connection at import or definition time)."""
        if self._db_engine is None:
            try:
                url = make_url(self.url)
            except sa_exc.ArgumentError:
                raise DatabaseUnavailableError(
                    f"{URL_VARIABLE} is not a valid SQLAlchemy URL (value hidden: it may hold a password); "
                    "expected e.g. 'postgresql+psycopg://user:password@host:5432/db' or 'sqlite:///path/sml.db'"
                ) from None
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db_engine = create_engine(url, **engine_options(url, self.connect_timeout_s))
            except (ImportError, sa_exc.NoSuchModuleError) as error:
                raise DatabaseUnavailableError(
                    f"{URL_VARIABLE}={self.masked_url}: the database driver could not be loaded ({error}); "
                    "install it (for mssql+pyodbc: unixODBC and Microsoft's 'ODBC Driver 18 for SQL Server')"
                ) from None
        return self._db_engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; connection failures become a `DatabaseUnavailableError` naming the URL."""
        try:
            connection = self.engine().connect()
        except sa_exc.DBAPIError as error:
            raise self._unavailable(error) from None
        with connection, connection.begin():
            yield connection

    def ensure_tables(self) -> None:
        """Create the three tables if missing; safe to call on every run and from parallel runs.

        An existing metrics table that lacks a column sml writes raises `SchemaMismatchError`
        naming the column and the migration command: sml never alters a table by itself.
        """
        try:
            self.tables.metadata.create_all(self.engine(), checkfirst=True)
        except sa_exc.OperationalError as error:
            if _is_connection_error(error):
                raise self._unavailable(error) from None
            raise
        except (sa_exc.ProgrammingError, sa_exc.IntegrityError):
            self.tables.metadata.create_all(self.engine(), checkfirst=True)
        missing = self.missing_columns()
        if missing:
            raise SchemaMismatchError(
                f"{TABLE_VARIABLE}={self.table} at {self.masked_url} has no column "
                f"{', '.join(missing)}, which sml now writes (a metric field added since the table was "
                f"created): run '{MIGRATE_COMMAND}' with the same settings to add it, then run again"
            )

    def missing_columns(self) -> list[str]:
        """Columns of the metrics table sml writes that the existing table lacks (none if absent)."""
        metrics = self.tables.metrics
        with self.transaction() as connection:
            inspector = inspect(connection)
            if not inspector.has_table(metrics.name):
                return []
            present = {column["name"].lower() for column in inspector.get_columns(metrics.name)}
        return [column.name for column in metrics.columns if column.name.lower() not in present]

    def add_missing_metric_columns(self) -> list[str]:
        """The explicit migration: add the metric-field columns the table lacks, in one transaction.

        They are nullable, as the rows already stored have no value for them. Any other missing
        column means the table is not one sml created, and nothing is changed.
        """
        missing = self.missing_columns()
        foreign = [name for name in missing if name not in parsing.METRIC_FIELDS]
        if foreign:
            raise SchemaMismatchError(
                f"{TABLE_VARIABLE}={self.table} at {self.masked_url} lacks column {', '.join(foreign)}, "
                "which is not a metric field: it is not a table sml created; point "
                f"{TABLE_VARIABLE} at another name"
            )
        metrics = self.tables.metrics
        with self.transaction() as connection:
            table = connection.dialect.identifier_preparer.format_table(metrics)
            for name in missing:
                column = CreateColumn(Column(name, Float, nullable=True)).compile(dialect=connection.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {table} ADD {column}")
        return missing

    def stored_offsets(self, consumer: str, topic: str) -> dict[int, int]:
        """Next offset to read per partition, as the last committed chunk left it."""
        offsets = self.tables.offsets
        with self.transaction() as connection:
            if not inspect(connection).has_table(OFFSETS_TABLE):
                return {}
            rows = connection.execute(
                select(offsets.c.kafka_partition, offsets.c.next_offset).where(
                    offsets.c.consumer == consumer, offsets.c.kafka_topic == topic
                )
            )
            return {int(partition): int(next_offset) for partition, next_offset in rows}

    def commit_chunk(
        self,
        consumer: str,
        topic: str,
        rows: Sequence[Mapping[str, Any]],
        dead_letters: Sequence[Mapping[str, Any]],
        advances: Sequence[OffsetAdvance],
    ) -> None:
        """Insert rows and dead letters and advance the stored offsets, all or nothing.

        Each advance is a compare-and-set on the offset the run started from, so a second run of
        the same consumer fails with `OffsetConflictError` instead of writing a message twice.
        """
        tables = self.tables
        now = datetime.now(UTC)
        try:
            with self.transaction() as connection:
                if rows:
                    _insert_many(connection, tables.metrics, rows, "ingested_at", now)
                if dead_letters:
                    connection.execute(
                        insert(tables.dead_letters), [dict(row, recorded_at=now) for row in dead_letters]
                    )
                for advance in advances:
                    self._advance(connection, consumer, topic, advance, now)
        except sa_exc.IntegrityError as error:
            raise OffsetConflictError(
                f"{topic}: a message of this chunk is already in {tables.metrics.name} or "
                f"{DEAD_LETTERS_TABLE} ({first_line(error)}); another run of consumer {consumer!r} wrote "
                "it, or the stored offsets were reset without the replay tool. "
                "Nothing of this chunk was written."
            ) from None
        except sa_exc.OperationalError as error:
            if _is_connection_error(error):
                raise self._unavailable(error) from None
            raise

    def reset_offset(self, consumer: str, topic: str, partition: int, offset: int) -> int:
        """Replay: set the stored offset and forget rows and dead letters at or after it.

        Deleting in the same transaction keeps the table exactly-once when those messages are read
        again. Returns how many rows and dead letters were removed.
        """
        tables = self.tables
        now = datetime.now(UTC)
        with self.transaction() as connection:
            removed = 0
            for table in (tables.metrics, tables.dead_letters):
                result = connection.execute(
                    delete(table).where(
                        table.c.kafka_topic == topic,
                        table.c.kafka_partition == partition,
                        table.c.kafka_offset >= offset,
                    )
                )
                removed += result.rowcount or 0
            key = _offset_key(tables.offsets, consumer, topic, partition)
            result = connection.execute(
                update(tables.offsets).where(key).values(next_offset=offset, updated_at=now)
            )
            if result.rowcount == 0:
                connection.execute(
                    insert(tables.offsets).values(
                        consumer=consumer,
                        kafka_topic=topic,
                        kafka_partition=partition,
                        next_offset=offset,
                        updated_at=now,
                    )
                )
            return removed

    def _advance(
        self, connection: Connection, consumer: str, topic: str, advance: OffsetAdvance, now: datetime
    ) -> None:
        offsets = self.tables.offsets
        if advance.expected is None:
            connection.execute(
                insert(offsets).values(
                    consumer=consumer,
                    kafka_topic=topic,
                    kafka_partition=advance.partition,
                    next_offset=advance.next_offset,
                    updated_at=now,
                )
            )
            return
        result = connection.execute(
            update(offsets)
            .where(
                _offset_key(offsets, consumer, topic, advance.partition),
                offsets.c.next_offset == advance.expected,
            )
            .values(next_offset=advance.next_offset, updated_at=now)
        )
        if result.rowcount != 1:
            raise OffsetConflictError(
                f"{topic}[{advance.partition}]: stored offset of consumer {consumer!r} is no longer "
                f"{advance.expected}; another run moved it. Nothing of this chunk was written; "
                "the next run resumes from the stored offset."
            )

    def _unavailable(self, error: BaseException) -> DatabaseUnavailableError:
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


def _insert_many(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], stamp: str, now: datetime
) -> None:
    """One executemany of `rows` (all with the same keys) plus `stamp` = `now`, in a single statement.

    The same INSERT, column types and transaction as `connection.execute(insert(table), rows)`, but
    each value goes through its column's bind processor directly: SQLAlchemy's per-row parameter
    building cost more than the database's own work (benchmarks/bench_ingest.py).
    """
    dialect = connection.dialect
    keys = [*rows[0], stamp]
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    names = list(compiled.positiontup) if compiled.positional and compiled.positiontup else keys
    columns: list[list[Any]] = []
    for name in names:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name == stamp:
            columns.append([now if process is None else process(now)] * len(rows))
        elif process is None:
            columns.append([row[name] for row in rows])
        else:
            columns.append([process(row[name]) for row in rows])
    values = list(zip(*columns, strict=True))
    parameters: list[Any] = (
        values if compiled.positional else [dict(zip(names, row, strict=True)) for row in values]
    )
    connection.exec_driver_sql(compiled.string, parameters)


def _offset_key(offsets: Table, consumer: str, topic: str, partition: int) -> Any:
    return and_(
        offsets.c.consumer == consumer,
        offsets.c.kafka_topic == topic,
        offsets.c.kafka_partition == partition,
    )


def _is_connection_error(error: sa_exc.DBAPIError) -> bool:
    return bool(error.connection_invalidated) or "connect" in str(error.orig).lower()
