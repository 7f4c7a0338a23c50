"""The bulk writers (PostgreSQL binary COPY, SQLite tuples) store exactly what SQLAlchemy's
per-value bind processors store: both paths write the same columns and are read back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, select, text

from sml_assets.chunks import MetricColumns, datetime_to_us
from sml_assets.parsing import METRIC_FIELDS
from sml_assets.resources.bulk import (
    SQLITE_ROWS_PER_STATEMENT,
    _insert_many,
    _row_dicts,
    _sqlite_inserts,
    write_metrics,
)
from sml_assets.resources.database import LEGACY_TOPIC_ID
from sml_assets.resources.tables import metrics_schema

NOW = datetime(2026, 11, 27, 20, 0, 0, 123_456, tzinfo=UTC)
TOPIC_ID = "q1a9ZbV3T2-8cWmD0xYhJg"
"""A Kafka topic id as the admin client prints it (22 characters of URL-safe base64)."""
PERCENTS = {
    "cpu": [0.0, 63.2, 100.0, 1e-300],
    "mem": [41.0, 0.1, 99.999999, 50.5],
    "disk": [77.5, 100.0, 0.000001, 33.3],
}
"""Four rows per metric field; a field added to MetricRecord gets the values of `disk` here."""
PERCENTS.update({key: PERCENTS["disk"] for key in METRIC_FIELDS if key not in PERCENTS})


def stamps(topic_id: str) -> dict[str, object]:
    return {"ingested_at": NOW, "kafka_topic_id": topic_id}


def columns(topic: str) -> MetricColumns:
    times = [
        datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC),
        datetime(2026, 11, 25, 16, 0, 3, 250_000, tzinfo=UTC),
        datetime(2026, 11, 25, 16, 0, 3, 999_999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
    ]
    return MetricColumns(
        topic,
        np.array([0, 0, 3, 2**31 - 1], np.int64),
        np.array([0, 1, 2**40, 2**62], np.int64),
        np.array([1, 7, 2**31 - 1, 42], np.int64),
        {key: np.array(PERCENTS[key], np.float64) for key in METRIC_FIELDS},
        np.array([datetime_to_us(t) for t in times], np.int64),
    )


def stored(engine: Engine, table_name: str) -> list[tuple[object, ...]]:
    table = metrics_schema(table_name).metrics
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(table).order_by(table.c.kafka_offset))]


def stored_row(engine: Engine, table_name: str, index: int) -> dict[str, object]:
    """Row `index` (by offset) of the table, by column name."""
    table = metrics_schema(table_name).metrics
    return dict(zip(table.c.keys(), stored(engine, table_name)[index], strict=True))


def many_columns(topic: str, count: int) -> MetricColumns:
    """`count` rows cycling through the four of `columns`, at offsets 0..count-1."""
    four = columns(topic)
    return MetricColumns(
        topic,
        np.resize(four.partition, count),
        np.arange(count, dtype=np.int64),
        np.resize(four.server_id, count),
        {key: np.resize(values, count) for key, values in four.metrics.items()},
        np.resize(four.event_time_us, count),
    )


def write_both(engine: Engine, fast: str, generic: str, topic: str, topic_id: str, count: int = 4) -> None:
    rows = columns(topic) if count == 4 else many_columns(topic, count)
    for name in (fast, generic):
        metrics_schema(name).metadata.create_all(engine)
    with engine.begin() as connection:
        write_metrics(connection, metrics_schema(fast).metrics, rows, stamps(topic_id))
        _insert_many(connection, metrics_schema(generic).metrics, _row_dicts(rows), stamps(topic_id))


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("topic_id", [TOPIC_ID, LEGACY_TOPIC_ID])
def test_sqlite_tuples_store_what_the_bind_processors_store(tmp_path: Path, topic_id: str) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    write_both(engine, "fast", "generic", "metrics-bulk", topic_id)
    assert stored(engine, "fast") == stored(engine, "generic")
    second = stored_row(engine, "fast", 1)
    assert second["server_id"] == 7
    assert [second[key] for key in METRIC_FIELDS] == [PERCENTS[key][1] for key in METRIC_FIELDS]
    assert second["event_time"] == datetime(2026, 11, 25, 16, 0, 3, 250_000, tzinfo=UTC)
    assert second["kafka_topic_id"] == topic_id and second["ingested_at"] == NOW
    with engine.connect() as connection:
        raw = connection.execute(text("SELECT event_time, ingested_at FROM fast ORDER BY kafka_offset")).all()
        same = connection.execute(text("SELECT event_time, ingested_at FROM generic ORDER BY kafka_offset")).all()
    assert raw == same
    engine.dispose()


def test_sqlite_statements_of_many_rows_store_every_row(tmp_path: Path) -> None:
    """Two full multi-row statements and a shorter last one store what one row a statement stores."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    count = 2 * SQLITE_ROWS_PER_STATEMENT + 3
    write_both(engine, "fast", "generic", "metrics-bulk", TOPIC_ID, count)
    fast = stored(engine, "fast")
    assert len(fast) == count and fast == stored(engine, "generic")
    assert [row[-1] for row in fast] == [TOPIC_ID] * count
    engine.dispose()


def test_sqlite_statements_stay_within_an_older_sqlite_s_999_parameters(tmp_path: Path) -> None:
    """SQLite before 3.32 takes at most 999 parameters a statement: the statements get fewer rows."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    rows = many_columns("metrics-bulk", 250)
    fast, generic = metrics_schema("fast").metrics, metrics_schema("generic").metrics
    for table in (fast, generic):
        table.metadata.create_all(engine)
    inserts = _sqlite_inserts(engine.dialect, fast, rows, stamps(TOPIC_ID), 999)
    assert max(len(parameters) for _, sets in inserts for parameters in sets) <= 999
    assert sum(statement.count("), (") + 1 for statement, sets in inserts for _ in sets) == 250
    with engine.begin() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        for statement, sets in inserts:
            cursor.executemany(statement, sets)
        _insert_many(connection, generic, _row_dicts(rows), stamps(TOPIC_ID))
    assert stored(engine, "fast") == stored(engine, "generic")
    engine.dispose()


@pytest.mark.parametrize("topic_id", [TOPIC_ID, LEGACY_TOPIC_ID])
def test_postgres_binary_copy_stores_what_the_bind_processors_store(
    postgres_engine: Engine, unique_name: str, topic_id: str
) -> None:
    fast, generic = f"{unique_name[:40]}_f", f"{unique_name[:40]}_g"
    try:
        write_both(postgres_engine, fast, generic, "metrics-bulk", topic_id)
        assert stored(postgres_engine, fast) == stored(postgres_engine, generic)
        assert len(stored(postgres_engine, fast)) == 4
        last = stored_row(postgres_engine, fast, 3)
        assert last["ingested_at"] == NOW and last["kafka_topic_id"] == topic_id
        assert last["kafka_offset"] == 2**62 and last["kafka_topic"] == "metrics-bulk"
    finally:
        with postgres_engine.begin() as connection:
            for name in (fast, generic):
                connection.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


def test_postgres_copy_is_part_of_the_transaction(postgres_engine: Engine, unique_name: str) -> None:
    name = unique_name[:40]
    schema = metrics_schema(name)
    schema.metrics.create(postgres_engine)
    try:
        with pytest.raises(RuntimeError, match="abort"), postgres_engine.begin() as connection:
            write_metrics(connection, schema.metrics, columns("metrics-bulk"), stamps(TOPIC_ID))
            raise RuntimeError("abort after the COPY")
        assert stored(postgres_engine, name) == []
    finally:
        schema.metrics.drop(postgres_engine)
