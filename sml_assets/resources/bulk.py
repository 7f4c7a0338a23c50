"""Bulk writes of metrics columns, each database's fastest way that stays inside the caller's transaction.

Rows are encoded first (`encode_metrics`, no connection needed) and written after (`write_encoded`,
`CopyStream.send`): the ingest loop encodes on its own thread and a writer thread holding the
transaction only sends (`sml_assets.chunk_writer`).

- PostgreSQL (psycopg 3): one binary `COPY ... FROM STDIN`, its bytes built column by column with
  numpy (every row has the same width: the topic and its id are the chunk's), on the transaction's connection.
- SQLite: one INSERT ... SELECT whose values come as one fixed-width text per column, cut apart by
  SQLite (`_sqlite_column_texts`: about 25 parameters bound, then the whole insert stepped without
  the GIL), on the transaction's DBAPI cursor; the rare rows whose percentages SQLite could not
  rebuild exactly that way go as multi-row INSERTs of bound values. Timestamps are formatted as
  arrays in SQLAlchemy's own SQLite storage format, so reads see no difference.
- Anything else (SQL Server through pyodbc with `fast_executemany`, psycopg2): one SQLAlchemy
  executemany with each column's bind processor, as before.

All three write the same values; `sml_assets_tests/test_bulk.py` reads them back to check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _compute
from sqlalchemy import Connection, Dialect, Table, insert
from sqlalchemy import exc as sa_exc

from sml_assets import parsing
from sml_assets.chunks import MetricColumns, arrow_ints, datetime_to_us, parse_values

pc: Any = _compute
"""pyarrow.compute, whose functions are generated at import: a type checker sees none of them."""

_PG_EPOCH_US = 946_684_800_000_000
"""2000-01-01T00:00:00Z in Unix epoch microseconds: PostgreSQL's binary timestamps count from there."""
_PG_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_PG_TRAILER = b"\xff\xff"
SQLITE_ROWS_PER_STATEMENT = 500
"""Rows in one SQLite INSERT of bound values (`_sqlite_bound_rows`, the rows column texts cannot
carry): each statement step and each row's Python tuple cost more than a row's B-tree work, so they
go as few statements of many rows (about 2x the write speed of one row per statement). The
constants of a chunk (topic, topic id, ingestion time) are bound once per statement, not once per
row. When every row went this way, 500 rows a statement wrote a 200,000-message run at 458k rows/s,
100 rows at 407k, 1,000 at 435k, 2,500 at 280k (the statement's compile grows with it; medians of
3-4 interleaved runs, 2026-11-29). SQLite's variable limit (32,766 since 3.32, 999 before) lowers
it where needed."""
SQLITE_MAX_DECIMALS = 6
"""The most decimals a percentage may have to go as a scaled integer (`_sqlite_text_rows`):
the seed line's and the JSON fast path's limit; a value with more is bound as it is."""
_EXACT_INTEGERS = 2.0**53
"""Integers from 0 below this are exact in an IEEE double."""
_SQLITE_TIME_WIDTH = 26
"""Characters of SQLAlchemy's SQLite DateTime text, '2026-11-25 16:00:03.250000', for years 1000-9999
(parsing's epoch window is 1973-9999)."""
_YEAR_1000_US = -30_610_224_000_000_000
"""1000-01-01T00:00:00Z in Unix epoch microseconds."""
_YEAR_10000_US = 253_402_300_800_000_000
"""10000-01-01T00:00:00Z in Unix epoch microseconds: SQLAlchemy cannot store it either."""
_SQLITE_SECOND_FORMAT = "%Y-%m-%d %H:%M:%S."
"""On second timestamps Arrow's %S has no fraction; the six digits of microseconds follow the dot,
which is exactly what SQLAlchemy's SQLite DateTime stores."""


@dataclass(frozen=True)
class EncodedRows:
    """A batch of metrics rows in the form its database's write takes (`encode_metrics`), made
    before the transaction that writes it, so that the thread holding the transaction only sends."""

    count: int
    copy: tuple[list[str], bytes] | None = None
    """PostgreSQL through psycopg: the `COPY` column names and the rows in binary form."""
    inserts: tuple[tuple[str, list[tuple[Any, ...]]], ...] = ()
    """SQLite: (multi-row INSERT, its parameter sets) pairs."""
    columns: MetricColumns | None = None
    """Anything else: the columns, written by one SQLAlchemy executemany."""


def encode_metrics(dialect: Dialect, table: Table, rows: MetricColumns, stamps: Mapping[str, Any]) -> EncodedRows:
    """`rows` with the same `stamps` (column -> a datetime or a text, such as `ingested_at` and
    `kafka_topic_id`) on every row, encoded for `dialect`; no connection needed."""
    if not len(rows):
        return EncodedRows(0)
    if streams_copy(dialect):
        return EncodedRows(len(rows), copy=_pg_records(rows, {name: _pg_constant(v) for name, v in stamps.items()}))
    if dialect.name == "sqlite":
        inserts = _sqlite_inserts(dialect, table, rows, stamps, sqlite_variable_limit())
        return EncodedRows(len(rows), inserts=inserts)
    return EncodedRows(len(rows), columns=rows)


def write_encoded(
    connection: Connection, table: Table, parts: Sequence[EncodedRows], stamps: Mapping[str, Any]
) -> None:
    """Insert encoded batches (not `COPY` ones: `CopyStream.send` takes those) into `table` in the
    connection's open transaction; `stamps` are those they were encoded with."""
    if any(part.copy is not None for part in parts):
        raise ValueError("rows encoded for a COPY go through CopyStream.send")
    inserts = [insert for part in parts for insert in part.inserts]
    for statement, parameters in inserts:
        with _dbapi_cursor(connection, statement) as cursor:
            cursor.executemany(statement, parameters)
    kept = [part.columns for part in parts if part.columns is not None]
    if kept:
        _insert_many(connection, table, _row_dicts(MetricColumns.concat(kept[0].topic, kept)), stamps)


def write_metrics(connection: Connection, table: Table, rows: MetricColumns, stamps: Mapping[str, Any]) -> None:
    """Insert `rows` into `table` with the same `stamps` on every row, in the connection's open transaction."""
    encoded = encode_metrics(connection.dialect, table, rows, stamps)
    if encoded.copy is None:
        write_encoded(connection, table, [encoded], stamps)
        return
    stream = CopyStream(connection, table)
    try:
        stream.send(encoded)
        stream.finish()
    except BaseException as error:
        stream.abort(error)
        raise


@cache
def sqlite_variable_limit() -> int:
    """Parameters one SQLite statement takes in this process: the limit the library Python's
    `sqlite3` links was built with (32,766 since 3.32, 999 before), which every connection starts
    with and sml never lowers; read once, from a connection to an in-memory database."""
    with closing(sqlite3.connect(":memory:")) as probe:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


def warm_up() -> None:
    """Run the parse and the array formatting once on one line, so that what they import and
    build on first use (pyarrow imports pandas at its first `pa.array` of a list) exists before
    the ingest loop freezes the old objects out of the garbage collector."""
    line = ", ".join(["id: 1", *(f"{key}: 1" for key in parsing.METRIC_FIELDS), "ts: 1795622400000"])
    parsed = parse_values([line.encode()], np.zeros(1, np.int64))
    _sqlite_times(parsed.event_time_us)


def _fields(rows: MetricColumns) -> dict[str, Any]:
    """Column name -> values (an array, or one Python value for every row)."""
    return {
        "server_id": rows.server_id,
        **{key: rows.metrics[key] for key in parsing.METRIC_FIELDS},
        "event_time": rows.event_time_us,
        "kafka_topic": rows.topic,
        "kafka_partition": rows.partition,
        "kafka_offset": rows.offset,
    }


_PG_BINARY: dict[str, str] = {
    "server_id": ">i4",
    "event_time": ">i8",
    "kafka_partition": ">i4",
    "kafka_offset": ">i8",
}
"""PostgreSQL's binary send format per array column: int4, timestamptz (int8 microseconds since
2000), int8; the metric fields are float8. Values the same on every row are a text (sent as its
UTF-8 bytes) or a timestamptz (int8)."""
_PG_FLOAT8 = ">f8"


def streams_copy(dialect: Dialect) -> bool:
    """Whether `CopyStream` can write on connections of `dialect`: PostgreSQL through psycopg 3."""
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


class CopyStream:
    """A chunk's rows as one binary `COPY ... FROM STDIN`, sent batch by batch as they are parsed,
    on the transaction's connection: the server inserts one batch while the client parses the next,
    where a `COPY` of the whole chunk after its parse left one of them idle at a time. The rows are
    in the table only when the transaction commits; `abort` ends the `COPY` with an error instead.
    Driver errors come out as SQLAlchemy's (IntegrityError for a duplicate key, found by the server
    as it inserts, or at `finish`)."""

    def __init__(self, connection: Connection, table: Table) -> None:
        self._connection = connection
        self._table = table
        self._open: ExitStack | None = None
        self._copy: Any = None
        self._statement = ""

    def send(self, rows: EncodedRows) -> None:
        """Send rows encoded for a `COPY` (`encode_metrics`, the chunk's stamps in every row); the
        first call starts the `COPY`."""
        if rows.copy is None:
            raise ValueError("CopyStream.send takes rows encoded for a COPY")
        columns, body = rows.copy
        copy = self._start(columns) if self._copy is None else self._copy
        with _driver_errors(self._connection, self._statement):
            copy.write(body)

    def finish(self) -> None:
        """End the `COPY`: the server has inserted every row when this returns."""
        if self._open is None:
            return
        with _driver_errors(self._connection, self._statement):
            self._copy.write(_PG_TRAILER)
            opened, self._open, self._copy = self._open, None, None
            opened.close()

    def abort(self, error: BaseException | None) -> None:
        """End an unfinished `COPY` with an error, so that the transaction can be rolled back."""
        if self._open is None:
            return
        opened, self._open, self._copy = self._open, None, None
        failure = error if error is not None else RuntimeError("the chunk was not committed")
        with suppress(Exception):
            opened.__exit__(type(failure), failure, failure.__traceback__)

    def _start(self, columns: list[str]) -> Any:
        preparer = self._connection.dialect.identifier_preparer
        names = ", ".join(preparer.quote(name) for name in columns)
        self._statement = f"COPY {preparer.format_table(self._table)} ({names}) FROM STDIN (FORMAT BINARY)"
        opened = ExitStack()
        with _driver_errors(self._connection, self._statement):
            cursor = opened.enter_context(closing(self._connection.connection.dbapi_connection.cursor()))  # type: ignore[union-attr]
            self._copy = opened.enter_context(cursor.copy(self._statement))
            self._copy.write(_PG_SIGNATURE)
        self._open = opened
        return self._copy


def _pg_records(rows: MetricColumns, stamps: Mapping[str, Any]) -> tuple[list[str], bytes]:
    """The column names and the binary `COPY` rows of `rows`, every row with the same `stamps`
    (already in their binary form, `_pg_constant`)."""
    fields = {
        name: values if isinstance(values, np.ndarray) else _pg_constant(values)
        for name, values in _fields(rows).items()
    } | dict(stamps)
    layout: list[tuple[str, Any]] = [("count", ">i2")]
    for name, values in fields.items():
        layout.append((f"{name}_size", ">i4"))
        if isinstance(values, bytes):
            if values:  # an empty text is its size (0) alone
                layout.append((name, f"S{len(values)}"))
        else:
            layout.append((name, _PG_BINARY.get(name, _PG_FLOAT8 if name in parsing.METRIC_FIELDS else ">i8")))
    records = np.empty(len(rows), np.dtype(layout))
    records["count"] = len(fields)
    for name, values in fields.items():
        if isinstance(values, bytes):
            records[f"{name}_size"] = len(values)
            if values:
                records[name] = values
            continue
        records[f"{name}_size"] = records.dtype[name].itemsize
        records[name] = np.asarray(values, np.int64) - _PG_EPOCH_US if name == "event_time" else values
    return list(fields), records.tobytes()


def _pg_constant(value: Any) -> Any:
    """A value of every row in PostgreSQL's binary form: text as UTF-8 bytes, a datetime as
    timestamptz microseconds since 2000."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, datetime):
        return datetime_to_us(value) - _PG_EPOCH_US
    raise TypeError(f"no binary COPY form for a stamp of type {type(value).__name__}: {value!r}")


def _sqlite_inserts(
    dialect: Dialect, table: Table, rows: MetricColumns, stamps: Mapping[str, Any], variables: int
) -> tuple[tuple[str, list[tuple[Any, ...]]], ...]:
    """`rows` as SQLite statements and their parameter sets: one `_sqlite_column_texts` INSERT for
    the rows whose percentages SQLite rebuilds exactly from scaled integers (all the seed line's and
    JSON's up to six decimals), multi-row INSERTs of bound values for the rest (`_sqlite_bound_rows`)."""
    constants: dict[str, Any] = {"kafka_topic": rows.topic}
    for name, value in stamps.items():
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        constants[name] = process(value) if process else value
    exact, scales = _sqlite_text_rows(rows)
    if exact.all():
        return (_sqlite_column_texts(dialect, table, rows, constants, scales),)
    texts = [_sqlite_column_texts(dialect, table, rows.take(exact), constants, scales)] if exact.any() else []
    return (*texts, *_sqlite_bound_rows(dialect, table, rows.take(~exact), constants, variables))


def _sqlite_text_rows(rows: MetricColumns) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows SQLite rebuilds exactly from column texts (`_sqlite_column_texts`), and each
    percentage field's number of decimals k: the rows whose event time has a four-digit year and
    whose every percentage x equals S / 10**k for an integer 0 <= S < 2**53, k the smallest in
    0..SQLITE_MAX_DECIMALS that holds for all rows.

    SQLite then stores exactly x: it reads S as an integer and divides by 10.0**k in IEEE double,
    the same correctly rounded division numpy does here to check it (its own text-to-real
    conversion rounds twice through a long double, so the decimal text is not sent)."""
    exact = (rows.event_time_us >= _YEAR_1000_US) & (rows.event_time_us < _YEAR_10000_US)
    scales: dict[str, int] = {}
    for name in parsing.METRIC_FIELDS:
        values = rows.metrics[name]
        for decimals in range(SQLITE_MAX_DECIMALS + 1):
            scaled = np.rint(values * 10.0**decimals)
            fits = (scaled / 10.0**decimals == values) & (scaled < _EXACT_INTEGERS)
            if fits.all():
                break
        scales[name] = decimals
        exact &= fits
    return exact, scales


def _sqlite_column_texts(
    dialect: Dialect, table: Table, rows: MetricColumns, constants: Mapping[str, Any], scales: Mapping[str, int]
) -> tuple[str, list[tuple[Any, ...]]]:
    """One INSERT ... SELECT of all `rows` whose values come as one text per column, fixed-width,
    cut apart by SQLite itself: Python's `sqlite3` binds about 25 parameters and then steps the whole
    insert without the GIL, where binding each value (11 a row) held it while the parsing thread
    waited. A number is `base + digits` (`base` the column's least value, the digits padded to the
    column's widest), a percentage that divided by 10**k (`_sqlite_text_rows`), the event time
    SQLAlchemy's 26-character SQLite text (`_sqlite_times`). The statement starts with INSERT, not
    with its WITH: Python's `sqlite3` opens the transaction it is part of only before a statement
    that starts with INSERT, UPDATE, DELETE or REPLACE, and would have committed a WITH at once."""
    parameters: list[Any] = [*constants.values(), len(rows)]
    values: list[str] = []

    def number(column: np.ndarray, divisor: float | None) -> str:
        base = int(column.min())
        digits, width = _fixed_width_digits(column - base)
        parameters.extend((base, digits, width))
        at = len(parameters)
        read = f"(?{at - 2} + CAST(substr(?{at - 1}, n * ?{at} + 1, ?{at}) AS INTEGER))"
        if divisor is None:
            return read
        parameters.append(divisor)
        return f"{read} / ?{at + 1}"

    values.append(number(rows.server_id, None))
    for name in parsing.METRIC_FIELDS:
        scale = 10 ** scales[name]
        values.append(number(np.rint(rows.metrics[name] * scale).astype(np.int64), float(scale)))
    parameters.append(_fixed_width_text(_sqlite_times(rows.event_time_us), _SQLITE_TIME_WIDTH))
    values.append(f"CAST(substr(?{len(parameters)}, n * {_SQLITE_TIME_WIDTH} + 1, {_SQLITE_TIME_WIDTH}) AS TEXT)")
    values.append(number(rows.partition, None))
    values.append(number(rows.offset, None))
    names = ["server_id", *parsing.METRIC_FIELDS, "event_time", "kafka_partition", "kafka_offset"]
    preparer = dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in [*constants, *names])
    shared = ", ".join(f"?{position}" for position in range(1, len(constants) + 1))
    count = len(constants) + 1
    statement = (
        f"INSERT INTO {preparer.format_table(table)} ({columns}) "
        f"WITH RECURSIVE row_numbers(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM row_numbers WHERE n + 1 < ?{count}) "
        f"SELECT {shared}, {', '.join(values)} FROM row_numbers"
    )
    return statement, [tuple(parameters)]


def _fixed_width_digits(values: np.ndarray) -> tuple[bytes, int]:
    """Non-negative integers as one ASCII text, each zero-padded to the widest's digits."""
    width = len(str(int(values.max())))
    return _fixed_width_text(pc.utf8_lpad(arrow_ints(values).cast(pa.string()), width, "0"), width), width


def _fixed_width_text(texts: pa.Array, width: int) -> bytes:
    """The bytes of an Arrow string array whose every value is `width` bytes long, back to back."""
    _, offsets, data = texts.buffers()
    ends = np.frombuffer(offsets, np.int32, len(texts) + 1, texts.offset * 4)
    if np.any(np.diff(ends) != width):
        raise AssertionError(f"texts of {sorted(set(np.diff(ends).tolist()))} bytes, expected {width} bytes each")
    return data.to_pybytes()[int(ends[0]) : int(ends[-1])]


def _sqlite_bound_rows(
    dialect: Dialect, table: Table, rows: MetricColumns, constants: Mapping[str, Any], variables: int
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Multi-row INSERTs of `rows` and their parameter sets, as plain tuples (what pysqlite binds fastest)."""
    fields = {**_fields(rows), "event_time": _sqlite_times(rows.event_time_us).to_pylist()}
    names = [name for name in fields if name not in constants]
    flat = list(chain.from_iterable(zip(*(_as_list(fields[name], len(rows)) for name in names), strict=True)))
    per_statement = max(1, min(SQLITE_ROWS_PER_STATEMENT, (variables - len(constants)) // len(names)))
    full, rest = divmod(len(rows), per_statement)
    width = per_statement * len(names)
    head = tuple(constants.values())
    inserts: list[tuple[str, list[tuple[Any, ...]]]] = []
    if full:
        statement = _sqlite_insert(dialect, table, list(constants), names, per_statement)
        inserts.append((statement, [head + tuple(flat[i : i + width]) for i in range(0, full * width, width)]))
    if rest:
        statement = _sqlite_insert(dialect, table, list(constants), names, rest)
        inserts.append((statement, [head + tuple(flat[full * width :])]))
    return inserts


def _sqlite_insert(dialect: Dialect, table: Table, constants: list[str], names: list[str], count: int) -> str:
    """`INSERT INTO table (constants..., names...) VALUES (...), ...` for `count` rows: parameters
    ?1..?k are the constants, shared by every row; then each row's values, numbered on."""
    preparer = dialect.identifier_preparer
    columns = tuple(preparer.quote(name) for name in [*constants, *names])
    return _sqlite_insert_text(preparer.format_table(table), columns, len(constants), count)


@lru_cache(maxsize=64)
def _sqlite_insert_text(table: str, columns: tuple[str, ...], shared: int, count: int) -> str:
    """The text of `_sqlite_insert`, made once per table and row count (a chunk's full statements
    and its last one): building it for every chunk had cost 0.15 us a row."""
    per_row = len(columns) - shared
    constants = ", ".join(f"?{number}" for number in range(1, shared + 1))
    tuples = ", ".join(
        "(" + constants + "".join(f", ?{shared + 1 + row * per_row + k}" for k in range(per_row)) + ")"
        for row in range(count)
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {tuples}"


def _sqlite_times(event_time_us: np.ndarray) -> pa.Array:
    """Epoch microseconds as SQLAlchemy's SQLite DateTime text, '2026-11-25 16:00:03.250000'.

    Arrow's strftime costs about 2 us a value, a fifth of a SQLite chunk's write; a chunk spans a
    few seconds, so each distinct second is formatted once and joined with its six-digit fraction.
    """
    seconds, micros = np.divmod(np.asarray(event_time_us, np.int64), 1_000_000)
    distinct, which = np.unique(seconds, return_inverse=True)
    heads = pc.strftime(arrow_ints(distinct).cast(pa.timestamp("s")), _SQLITE_SECOND_FORMAT)
    fractions = pc.utf8_lpad(arrow_ints(micros).cast(pa.string()), 6, "0")
    return pc.binary_join_element_wise(pc.take(heads, arrow_ints(which)), fractions, _EMPTY_TEXT)


_EMPTY_TEXT = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.zeros(2, np.int32)), pa.py_buffer(b"")])[0]
"""'' as an Arrow scalar, made from buffers (`pa.scalar('')` would import pandas, see chunks.binary_array)."""


def _as_list(values: Any, count: int) -> list[Any]:
    """An array's values as Python objects, or one value repeated for every row."""
    if isinstance(values, np.ndarray):
        return values.tolist()
    return values if isinstance(values, list) else [values] * count


@contextmanager
def _dbapi_cursor(connection: Connection, statement: str) -> Iterator[Any]:
    """A cursor of the transaction's own DBAPI connection; driver errors come out as SQLAlchemy's
    (IntegrityError, OperationalError, ...), as they would from `connection.execute`."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with _driver_errors(connection, statement):
            yield cursor
    finally:
        cursor.close()


@contextmanager
def _driver_errors(connection: Connection, statement: str) -> Iterator[None]:
    """The DBAPI driver's errors raised inside, as SQLAlchemy's, a lost connection flagged as
    SQLAlchemy flags it (`connection_invalidated`), as `connection.execute` would."""
    dialect = connection.dialect
    try:
        yield
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, None)
        raise sa_exc.DBAPIError.instance(
            statement, None, error, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from error


def _row_dicts(rows: MetricColumns) -> list[dict[str, Any]]:
    columns: dict[str, list[Any]] = {
        "server_id": rows.server_id.tolist(),
        **{key: rows.metrics[key].tolist() for key in parsing.METRIC_FIELDS},
        "event_time": rows.event_times(),
        "kafka_partition": rows.partition.tolist(),
        "kafka_offset": rows.offset.tolist(),
    }
    return [
        {"kafka_topic": rows.topic, **dict(zip(columns, values, strict=True))}
        for values in zip(*columns.values(), strict=True)
    ]


def _insert_many(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], stamps: Mapping[str, Any]
) -> None:
    """One executemany of `rows` (all with the same keys) plus the same `stamps` on every row.

    The same INSERT, column types and transaction as `connection.execute(insert(table), rows)`, but
    each value goes through its column's bind processor directly: SQLAlchemy's per-row parameter
    building cost more than the database's own work (benchmarks/bench_ingest.py).
    """
    dialect = connection.dialect
    keys = [*rows[0], *stamps]
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    names = list(compiled.positiontup) if compiled.positional and compiled.positiontup else keys
    columns: list[list[Any]] = []
    for name in names:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name in stamps:
            value = stamps[name]
            columns.append([value if process is None else process(value)] * len(rows))
        elif process is None:
            columns.append([row[name] for row in rows])
        else:
            columns.append([process(row[name]) for row in rows])
    values = list(zip(*columns, strict=True))
    parameters: list[Any] = values if compiled.positional else [dict(zip(names, row, strict=True)) for row in values]
    connection.exec_driver_sql(compiled.string, parameters)
