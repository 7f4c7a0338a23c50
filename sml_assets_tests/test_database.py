"""The metrics database resource: schema, atomic chunks, offsets, replay, masking, SQL Server compile."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, insert, inspect, select, text
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from sml_assets.chunks import MetricColumns
from sml_assets.resources.database import (
    SQLITE_PAGE_SIZE,
    DatabaseUnavailableError,
    MetricsDatabase,
    OffsetAdvance,
    OffsetConflictError,
    engine_options,
    mask_url,
    validate_table_name,
)
from sml_assets.resources.tables import metrics_schema
from sml_assets_tests.conftest import drop_postgres_test_data
from sml_assets_tests.faults import TcpProxy

TOPIC = "metrics-test"
EVENT_TIME = datetime(2026, 11, 25, 16, 0, 3, 250_000, tzinfo=UTC)
MSSQL_URL = "mssql+pyodbc://sml:s3cret@db.example.com:1433/sml?driver=ODBC+Driver+18+for+SQL+Server"


def row(offset: int, partition: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "server_id": 7,
        "cpu": 63.2,
        "mem": 41.0,
        "disk": 77.5,
        "event_time": EVENT_TIME,
        "kafka_topic": TOPIC,
        "kafka_partition": partition,
        "kafka_offset": offset,
        **overrides,
    }


def dead_letter(offset: int, partition: int = 0, topic: str = TOPIC) -> dict[str, Any]:
    return {
        "kafka_topic": topic,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "raw_value": "id: x",
        "reason": "id 'x' is not a whole number",
    }


def count(database: MetricsDatabase, table_name: str = "metrics") -> int:
    table = getattr(database.tables, table_name)
    with database.transaction() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[MetricsDatabase]:
    database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'nested' / 'sml.db'}", table="server_matric")
    database.ensure_tables()
    yield database
    database.engine().dispose()


@pytest.fixture
def postgres_db(postgres_url: str, unique_name: str) -> Iterator[MetricsDatabase]:
    database = MetricsDatabase(url=postgres_url, table=unique_name[:40])
    database.ensure_tables()
    yield database
    drop_postgres_test_data(database, unique_name)


def test_tables_are_created_once_and_creation_is_idempotent(sqlite_db: MetricsDatabase) -> None:
    sqlite_db.ensure_tables()
    names = set(inspect(sqlite_db.engine()).get_table_names())
    assert {"server_matric", "sml_offsets", "sml_dead_letters"} <= names


def test_metrics_table_has_the_contract_columns_and_unique_kafka_position(sqlite_db: MetricsDatabase) -> None:
    inspector = inspect(sqlite_db.engine())
    columns = [column["name"] for column in inspector.get_columns("server_matric")]
    assert columns == [
        "server_id",
        "cpu",
        "mem",
        "disk",
        "event_time",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "ingested_at",
        "kafka_topic_id",
    ]
    unique = inspector.get_unique_constraints("server_matric")
    assert [c["column_names"] for c in unique] == [["kafka_partition", "kafka_offset", "kafka_topic", "kafka_topic_id"]]


def test_chunk_writes_rows_dead_letters_and_offsets_together(sqlite_db: MetricsDatabase) -> None:
    sqlite_db.commit_chunk("c", TOPIC, [row(0), row(2)], [dead_letter(1)], [OffsetAdvance(0, None, 3)])
    assert (count(sqlite_db), count(sqlite_db, "dead_letters")) == (2, 1)
    assert sqlite_db.stored_offsets("c", TOPIC) == {0: 3}


def test_event_time_reads_back_as_the_same_utc_instant(sqlite_db: MetricsDatabase) -> None:
    sqlite_db.commit_chunk(
        "c",
        TOPIC,
        [row(0, event_time=EVENT_TIME.astimezone(UTC) + timedelta(0))],
        [],
        [OffsetAdvance(0, None, 1)],
    )
    with sqlite_db.transaction() as connection:
        stored = connection.execute(select(sqlite_db.tables.metrics.c.event_time)).scalar_one()
    assert stored == EVENT_TIME and stored.tzinfo is not None


def test_a_duplicate_message_rolls_back_the_whole_chunk_offsets_included(sqlite_db: MetricsDatabase) -> None:
    sqlite_db.commit_chunk("other", TOPIC, [row(0)], [], [OffsetAdvance(0, None, 1)])
    with pytest.raises(OffsetConflictError, match="already in server_matric"):
        sqlite_db.commit_chunk("c", TOPIC, [row(1), row(0)], [dead_letter(2)], [OffsetAdvance(0, None, 3)])
    assert (count(sqlite_db), count(sqlite_db, "dead_letters")) == (1, 0)
    assert sqlite_db.stored_offsets("c", TOPIC) == {}


def test_a_moved_stored_offset_stops_the_chunk_instead_of_writing_twice(sqlite_db: MetricsDatabase) -> None:
    sqlite_db.commit_chunk("c", TOPIC, [row(0)], [], [OffsetAdvance(0, None, 1)])
    with pytest.raises(OffsetConflictError, match=r"stored offset of consumer 'c' is no longer 0"):
        sqlite_db.commit_chunk("c", TOPIC, [row(5)], [], [OffsetAdvance(0, 0, 6)])
    assert count(sqlite_db) == 1


def test_a_second_first_chunk_for_a_partition_conflicts(sqlite_db: MetricsDatabase) -> None:
    sqlite_db.commit_chunk("c", TOPIC, [row(0)], [], [OffsetAdvance(0, None, 1)])
    with pytest.raises(OffsetConflictError):
        sqlite_db.commit_chunk("c", TOPIC, [row(1)], [], [OffsetAdvance(0, None, 2)])
    assert count(sqlite_db) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def either_db(request: pytest.FixtureRequest) -> MetricsDatabase:
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "postgres_db")


@pytest.fixture
def own_topic(unique_name: str) -> str:
    """A topic name of the test's own: the offsets and dead letters tables are shared on PostgreSQL
    (`drop_postgres_test_data` deletes what starts with the test's unique name)."""
    return f"{unique_name}-metrics"


def columns(topic: str, *offsets: int) -> MetricColumns:
    return MetricColumns.from_rows(topic, [row(offset, kafka_topic=topic) for offset in offsets])


def written(database: MetricsDatabase, topic: str) -> tuple[int, int, dict[int, int]]:
    """Rows and dead letters of `topic`, and consumer c's stored offsets."""
    tables = database.tables
    with database.transaction() as connection:
        rows, letters = (
            connection.execute(select(func.count()).select_from(table).where(table.c.kafka_topic == topic)).scalar_one()
            for table in (tables.metrics, tables.dead_letters)
        )
    return rows, letters, database.stored_offsets("c", topic)


@pytest.mark.integration
def test_rows_added_batch_by_batch_are_invisible_until_the_chunk_commits_with_its_offsets(
    either_db: MetricsDatabase, own_topic: str
) -> None:
    """On PostgreSQL the batches reach the server as they are added (one binary COPY); elsewhere at commit."""
    with either_db.chunk_transaction("c", own_topic) as chunk:
        assert chunk.streams == (either_db.engine().dialect.name == "postgresql")
        for offset in (0, 1, 3):
            chunk.add(columns(own_topic, offset))
        assert (written(either_db, own_topic), chunk.rows) == ((0, 0, {}), 3)
        chunk.commit([dead_letter(2, topic=own_topic)], [OffsetAdvance(0, None, 4)])
    assert written(either_db, own_topic) == (3, 1, {0: 4})


@pytest.mark.integration
def test_a_chunk_left_without_commit_or_by_an_error_writes_nothing_and_the_next_one_commits(
    either_db: MetricsDatabase, own_topic: str
) -> None:
    with either_db.chunk_transaction("c", own_topic) as chunk:
        chunk.add(columns(own_topic, 0, 1))
    with (
        pytest.raises(RuntimeError, match="the broker went away"),
        either_db.chunk_transaction("c", own_topic) as chunk,
    ):
        chunk.add(columns(own_topic, 0, 1))
        raise RuntimeError("the broker went away")
    assert written(either_db, own_topic) == (0, 0, {})
    either_db.commit_chunk("c", own_topic, columns(own_topic, 0, 1), [], [OffsetAdvance(0, None, 2)])
    assert written(either_db, own_topic) == (2, 0, {0: 2})


@pytest.mark.integration
def test_a_message_already_written_fails_a_streamed_chunk_as_a_conflict_and_writes_none_of_it(
    postgres_db: MetricsDatabase, own_topic: str
) -> None:
    postgres_db.commit_chunk("other", own_topic, columns(own_topic, 1), [], [OffsetAdvance(0, None, 2)])
    with (
        pytest.raises(OffsetConflictError, match="already in"),
        postgres_db.chunk_transaction("c", own_topic) as chunk,
    ):
        chunk.add(columns(own_topic, 0))
        chunk.add(columns(own_topic, 1, 2))
        chunk.commit([dead_letter(3, topic=own_topic)], [OffsetAdvance(0, None, 4)])
    assert written(postgres_db, own_topic) == (1, 0, {})


@pytest.mark.integration
def test_a_connection_lost_while_a_chunk_streams_fails_naming_the_url_and_writes_nothing(
    postgres_db: MetricsDatabase, own_topic: str
) -> None:
    """The database going away mid-COPY (connections reset: the driver says "consuming input
    failed: SSL error", no word of a connection) is a `DatabaseUnavailableError` naming the URL,
    as a refused connection is, not a driver error out of the COPY."""
    real = make_url(postgres_db.url)
    proxy = TcpProxy(real.port or 5432)
    proxied = MetricsDatabase(
        url=real.set(port=proxy.port).render_as_string(hide_password=False),
        table=postgres_db.table,
        connect_timeout_s=2,
    )
    try:
        with (
            pytest.raises(DatabaseUnavailableError, match=rf"SML_METRICS_DB_URL=.*:\*\*\*@127.0.0.1:{proxy.port}/"),
            proxied.chunk_transaction("c", own_topic) as chunk,
        ):
            chunk.add(columns(own_topic, 0))
            proxy.cut()
            chunk.add(columns(own_topic, 1))
            chunk.commit([], [OffsetAdvance(0, None, 2)])
    finally:
        proxy.close()
        proxied.engine().dispose()
    assert written(postgres_db, own_topic) == (0, 0, {})


def test_offsets_are_kept_per_consumer_and_partition(sqlite_db: MetricsDatabase) -> None:
    sqlite_db.commit_chunk(
        "c",
        TOPIC,
        [row(0, partition=0), row(0, partition=1)],
        [],
        [OffsetAdvance(0, None, 1), OffsetAdvance(1, None, 1)],
    )
    sqlite_db.commit_chunk("c", TOPIC, [row(1, partition=1)], [], [OffsetAdvance(1, 1, 2)])
    assert sqlite_db.stored_offsets("c", TOPIC) == {0: 1, 1: 2}
    assert sqlite_db.stored_offsets("someone-else", TOPIC) == {}


def test_reset_offset_forgets_rows_at_and_after_it_only_in_that_partition(sqlite_db: MetricsDatabase) -> None:
    rows = [row(offset, partition) for partition in (0, 1) for offset in range(5)]
    sqlite_db.commit_chunk("c", TOPIC, rows, [dead_letter(5)], [OffsetAdvance(0, None, 6), OffsetAdvance(1, None, 5)])
    assert sqlite_db.reset_offset("c", TOPIC, 0, 3) == 3
    assert sqlite_db.stored_offsets("c", TOPIC) == {0: 3, 1: 5}
    assert count(sqlite_db) == 8
    sqlite_db.commit_chunk("c", TOPIC, [row(3), row(4)], [dead_letter(5)], [OffsetAdvance(0, 3, 6)])
    assert count(sqlite_db) == 10


def test_stored_offsets_before_tables_exist_are_empty(tmp_path: Path) -> None:
    database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'fresh.db'}")
    assert database.stored_offsets("c", TOPIC) == {}


@pytest.mark.parametrize(
    "name",
    ["server matric", "x;DROP TABLE y", "1abc", "", "a" * 49, "naïve", "sml_offsets", "SML_DEAD_LETTERS"],
)
def test_table_names_that_are_not_plain_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="SML_METRICS_TABLE="):
        validate_table_name(name)


@pytest.mark.parametrize("name", ["server_matric", "_x", "Metrics2026", "a" * 48])
def test_plain_identifiers_are_accepted_as_table_names(name: str) -> None:
    assert validate_table_name(name) == name


def test_masked_url_hides_the_password() -> None:
    assert mask_url("postgresql+psycopg://sml:s3cret@host:5432/sml") == "postgresql+psycopg://sml:***@host:5432/sml"
    assert "s3cret" not in mask_url("not a url s3cret")


def test_unreachable_database_names_the_variable_and_masks_the_password() -> None:
    database = MetricsDatabase(url="postgresql+psycopg://sml:s3cret@127.0.0.1:1/sml", connect_timeout_s=2)
    with pytest.raises(DatabaseUnavailableError) as raised:
        database.ensure_tables()
    message = str(raised.value)
    assert message.startswith("SML_METRICS_DB_URL=postgresql+psycopg://sml:***@127.0.0.1:1/sml could not be reached")
    assert "s3cret" not in message and raised.value.__cause__ is None


def test_an_invalid_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(DatabaseUnavailableError, match="SML_METRICS_DB_URL is not a valid SQLAlchemy URL") as raised:
        MetricsDatabase(url="s3cret-not-a-url").engine()
    assert "s3cret" not in str(raised.value)


def test_mssql_ddl_compiles_with_datetime2_and_the_unique_constraint() -> None:
    schema = metrics_schema("server_matric")
    dialect = mssql.pyodbc.dialect()
    ddl = str(CreateTable(schema.metrics).compile(dialect=dialect))
    assert "CREATE TABLE server_matric" in ddl
    assert "event_time DATETIME2(6) NOT NULL" in ddl
    assert "kafka_offset BIGINT NOT NULL" in ddl
    assert (
        "CONSTRAINT uq_server_matric_topic_pos UNIQUE (kafka_partition, kafka_offset, kafka_topic, kafka_topic_id)"
        in ddl
    )
    for table in (schema.offsets, schema.dead_letters):
        assert "CREATE TABLE" in str(CreateTable(table).compile(dialect=dialect))
    for index in schema.metrics.indexes | schema.dead_letters.indexes:
        assert "CREATE INDEX" in str(CreateIndex(index).compile(dialect=dialect))


def test_mssql_inserts_compile_as_one_parameterised_statement_for_executemany() -> None:
    schema = metrics_schema("server_matric")
    dialect = mssql.pyodbc.dialect(paramstyle="qmark")
    compiled = str(insert(schema.metrics).compile(dialect=dialect, column_keys=list(row(0)) + ["ingested_at"]))
    assert compiled == (
        "INSERT INTO server_matric (server_id, cpu, mem, [disk], event_time, kafka_topic, kafka_partition, "
        "kafka_offset, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    bind = schema.metrics.c.event_time.type.process_bind_param(EVENT_TIME, mssql.pyodbc.dialect())
    assert bind == EVENT_TIME.replace(tzinfo=None)


def test_mssql_pyodbc_url_with_driver_name_is_accepted_with_fast_executemany() -> None:
    url = make_url(MSSQL_URL)
    dialect = url.get_dialect()()
    (connection_string,), _ = dialect.create_connect_args(url)
    assert connection_string.startswith(
        "DRIVER={ODBC Driver 18 for SQL Server};Server=db.example.com,1433;Database=sml"
    )
    options = engine_options(url, connect_timeout_s=10)
    assert options["fast_executemany"] is True and options["connect_args"] == {"timeout": 10}
    assert mask_url(MSSQL_URL) == MSSQL_URL.replace("s3cret", "***")


def test_mssql_url_without_odbc_library_gives_an_actionable_error_or_an_engine() -> None:
    database = MetricsDatabase(url=MSSQL_URL)
    try:
        engine = database.engine()
    except DatabaseUnavailableError as error:
        assert "ODBC Driver 18 for SQL Server" in str(error) and "s3cret" not in str(error)
    else:
        assert engine.dialect.fast_executemany is True


@pytest.mark.parametrize(
    ("url", "expected"),
    [("postgresql+psycopg://u:p@h/db", {"connect_timeout": 3}), ("sqlite:///x.db", {"timeout": 3.0})],
)
def test_engine_options_set_a_connect_timeout_per_backend(url: str, expected: dict[str, float]) -> None:
    assert engine_options(make_url(url), connect_timeout_s=3)["connect_args"] == expected


@pytest.mark.integration
def test_postgres_chunk_roundtrip_keeps_utc_and_offsets(postgres_db: MetricsDatabase) -> None:
    """Its own topic name: sml_offsets and sml_dead_letters are shared by every session on the stack."""
    topic = postgres_db.table
    postgres_db.ensure_tables()
    postgres_db.commit_chunk(
        "c",
        topic,
        [row(0, kafka_topic=topic), row(1, kafka_topic=topic)],
        [dead_letter(2, topic=topic)],
        [OffsetAdvance(0, None, 3)],
    )
    with postgres_db.transaction() as connection:
        times = connection.execute(select(postgres_db.tables.metrics.c.event_time)).scalars().all()
    assert times == [EVENT_TIME, EVENT_TIME]
    assert postgres_db.stored_offsets("c", topic) == {0: 3}
    with pytest.raises(OffsetConflictError):
        postgres_db.commit_chunk("c", topic, [row(3, kafka_topic=topic)], [], [OffsetAdvance(0, 0, 4)])
    assert count(postgres_db) == 2


@pytest.mark.integration
def test_postgres_column_types_are_timestamptz_and_bigint(postgres_db: MetricsDatabase) -> None:
    columns = {c["name"]: str(c["type"]) for c in inspect(postgres_db.engine()).get_columns(postgres_db.table)}
    assert columns["event_time"] == "TIMESTAMP" and columns["kafka_offset"] == "BIGINT"
    engine = create_engine(postgres_db.url)
    with engine.connect() as connection:
        data_type = connection.execute(
            text(
                "SELECT data_type FROM information_schema.columns WHERE table_name = :t AND column_name = 'event_time'"
            ),
            {"t": postgres_db.table},
        ).scalar_one()
    engine.dispose()
    assert data_type == "timestamp with time zone"


@pytest.mark.integration
def test_postgres_unique_key_leads_with_partition_and_offset_and_serves_the_replay_delete(
    postgres_db: MetricsDatabase,
) -> None:
    """The order that makes each insert's descent of the index cheap (tables.py) is the one built,
    and a replay's delete (partition, offsets from one on) still finds its rows through it."""
    table = postgres_db.table
    unique = inspect(postgres_db.engine()).get_unique_constraints(table)
    assert [c["column_names"] for c in unique] == [["kafka_partition", "kafka_offset", "kafka_topic", "kafka_topic_id"]]
    with postgres_db.transaction() as connection:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = (
            connection.exec_driver_sql(
                f"EXPLAIN DELETE FROM {table} WHERE kafka_topic = 'm' AND kafka_partition = 1 AND kafka_offset >= 5"
            )
            .scalars()
            .all()
        )
    assert any(f"uq_{table}_topic_pos" in line and "Index Cond" not in line for line in plan), plan
    assert any("Index Cond: ((kafka_partition = 1) AND (kafka_offset >= 5)" in line for line in plan), plan


def test_a_sqlite_file_is_written_through_a_write_ahead_log_and_memory_is_left_alone(
    sqlite_db: MetricsDatabase,
) -> None:
    with sqlite_db.transaction() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
    in_memory = MetricsDatabase(url="sqlite://")
    with in_memory.transaction() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "memory"
    in_memory.engine().dispose()


def test_a_new_sqlite_file_gets_large_pages_and_one_that_exists_keeps_its_own(tmp_path: Path) -> None:
    older = tmp_path / "older.db"
    made_elsewhere = create_engine(f"sqlite:///{older}")
    with made_elsewhere.begin() as connection:
        connection.exec_driver_sql("PRAGMA page_size=4096")
        connection.exec_driver_sql("CREATE TABLE kept (x INTEGER)")
    made_elsewhere.dispose()
    for path, page_size in ((tmp_path / "new.db", SQLITE_PAGE_SIZE), (older, 4096)):
        database = MetricsDatabase(url=f"sqlite:///{path}", table="server_matric")
        database.ensure_tables()
        database.commit_chunk("c", TOPIC, [row(0), row(1)], [], [OffsetAdvance(0, None, 2)])
        with database.transaction() as connection:
            assert connection.exec_driver_sql("PRAGMA page_size").scalar_one() == page_size, path.name
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal", path.name
        assert count(database, "metrics") == 2
        database.engine().dispose()
