"""The bulk writers (PostgreSQL binary COPY, SQLite column texts and tuples) store exactly what
SQLAlchemy's per-value bind processors store: both paths write the same columns and are read back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, select, text

from sml_assets.chunks import MetricColumns, datetime_to_us
from sml_assets.parsing import METRIC_FIELDS
from sml_assets.resources.bulk import (
    SQLITE_ROWS_PER_STATEMENT,
    _insert_many,
    _row_dicts,
    _sqlite_inserts,
    _sqlite_times,
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
    """SQLite before 3.32 takes at most 999 parameters a statement: the statements of bound values
    (here every row's: a cpu of 1e-300 is no scaled integer) get fewer rows."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    rows = many_columns("metrics-bulk", 250)
    rows.metrics["cpu"][:] = 1e-300
    fast, generic = metrics_schema("fast").metrics, metrics_schema("generic").metrics
    for table in (fast, generic):
        table.metadata.create_all(engine)
    inserts = _sqlite_inserts(engine.dialect, fast, rows, stamps(TOPIC_ID), 999)
    assert max(len(parameters) for _, sets in inserts for parameters in sets) <= 999
    assert sum(statement.count("), (") + 1 for statement, sets in inserts for _ in sets) == 250
    with engine.begin() as connection:
        for statement, sets in inserts:
            connection.exec_driver_sql(statement, sets)
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


def write_sqlite_both(engine: Engine, rows: MetricColumns) -> list[tuple[str, list[tuple[object, ...]]]]:
    """`rows` into a table through `_sqlite_inserts` and into another through the bind processors;
    the statements it ran."""
    fast, generic = metrics_schema("fast").metrics, metrics_schema("generic").metrics
    with engine.begin() as connection:
        for table in (fast, generic):
            table.metadata.drop_all(connection)
            table.metadata.create_all(connection)
        inserts = _sqlite_inserts(engine.dialect, fast, rows, stamps(TOPIC_ID), 32_766)
        for statement, sets in inserts:
            connection.exec_driver_sql(statement, sets)
        _insert_many(connection, generic, _row_dicts(rows), stamps(TOPIC_ID))
    return list(inserts)


def sqlite_texts(engine: Engine, table_name: str) -> list[tuple[object, ...]]:
    """Every row as SQLite stores it: each value's storage class and its text or float."""
    with engine.connect() as connection:
        names = ", ".join(f"typeof({c}), {c}" for c in metrics_schema(table_name).metrics.c.keys())
        query = text(f"SELECT {names} FROM {table_name} ORDER BY kafka_offset")
        return [tuple(row) for row in connection.execute(query)]


decimal_percents = st.builds(
    lambda whole, fraction, decimals: min(100.0, float(f"{whole}.{fraction:06d}"[: len(str(whole)) + 1 + decimals])),
    st.integers(0, 100),
    st.integers(0, 999_999),
    st.integers(0, 6),
)
"""Percentages as the seed line and JSON carry them: up to six decimals."""
any_percents = st.one_of(
    decimal_percents,
    st.floats(0.0, 100.0),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 99.99999999999999, 0.1 + 0.2, 100.0, 2.0**-30]),
)
"""Any percentage `parse_metric` accepts: many decimals, subnormals, a negative zero."""


@st.composite
def metric_rows(draw: st.DrawFn, percents: st.SearchStrategy[float]) -> MetricColumns:
    count = draw(st.integers(1, 40))
    ints = st.lists(st.integers(0, 2**62), min_size=count, max_size=count)
    times = st.lists(st.integers(100_000_000_000_000, 253_402_300_799_999_999), min_size=count, max_size=count)
    return MetricColumns(
        "metrics-bulk",
        np.array(draw(st.lists(st.integers(0, 2**31 - 1), min_size=count, max_size=count)), np.int64),
        np.array(sorted(set(draw(ints)) | set(range(count)))[:count], np.int64),
        np.array(draw(st.lists(st.integers(1, 2**31 - 1), min_size=count, max_size=count)), np.int64),
        {key: np.array(draw(st.lists(percents, min_size=count, max_size=count)), np.float64) for key in METRIC_FIELDS},
        np.array(draw(times), np.int64),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=metric_rows(any_percents))
def test_sqlite_column_texts_store_exactly_what_bound_values_store(tmp_path: Path, rows: MetricColumns) -> None:
    """Every value, bit for bit (storage class, the float's exact value and sign), whether its row
    went as column texts or bound: SQLite rebuilds a percentage from a scaled integer only where that
    gives the same double."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    write_sqlite_both(engine, rows)
    fast, generic = sqlite_texts(engine, "fast"), sqlite_texts(engine, "generic")
    assert [tuple(map(repr, row)) for row in fast] == [tuple(map(repr, row)) for row in generic]
    engine.dispose()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=metric_rows(decimal_percents))
def test_sqlite_rows_of_up_to_six_decimals_go_as_one_statement_of_column_texts(
    tmp_path: Path, rows: MetricColumns
) -> None:
    """The fast path's values (any percentage of up to six decimals, any offset, id, partition and
    epoch-window time) all go as the one statement whose values SQLite cuts from a text per column."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    inserts = write_sqlite_both(engine, rows)
    assert len(inserts) == 1 and len(inserts[0][1]) == 1 and "substr(" in inserts[0][0]
    assert len(inserts[0][1][0]) < 40
    assert sqlite_texts(engine, "fast") == sqlite_texts(engine, "generic")
    engine.dispose()


def test_sqlite_column_texts_store_decimals_sqlite_s_own_text_conversion_rounds_wrong(tmp_path: Path) -> None:
    """Six-decimal percentages for which SQLite's CAST of the text (3.40, Debian's) is one unit in the
    last place off, as 14 of 200,000 random ones were (it rounds twice, through a long double): as
    scaled integers divided in double they are stored exactly."""
    wrong = [83.226661, 74.132714, 77.481541, 5.936029, 20.038354]
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    rows = many_columns("metrics-bulk", len(wrong))
    for key in METRIC_FIELDS:
        rows.metrics[key][:] = wrong
    inserts = write_sqlite_both(engine, rows)
    assert len(inserts) == 1 and "substr(" in inserts[0][0]
    stored_values = [stored_row(engine, "fast", index) for index in range(len(wrong))]
    expected = [[value] * len(METRIC_FIELDS) for value in wrong]
    assert [[row[key] for key in METRIC_FIELDS] for row in stored_values] == expected
    assert sqlite_texts(engine, "fast") == sqlite_texts(engine, "generic")
    engine.dispose()


def test_sqlite_column_texts_are_part_of_the_transaction(tmp_path: Path) -> None:
    """The INSERT ... WITH ... SELECT opens the transaction as any INSERT does: rolled back, it leaves nothing."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    table = metrics_schema("rolled_back").metrics
    table.metadata.create_all(engine)
    rows = many_columns("metrics-bulk", 100)
    rows.metrics["cpu"][:] = 12.5
    encoded = _sqlite_inserts(engine.dialect, table, rows, stamps(TOPIC_ID), 32_766)
    assert len(encoded) == 1 and "substr(" in encoded[0][0]
    with pytest.raises(RuntimeError, match="abort"), engine.begin() as connection:
        write_metrics(connection, table, rows, stamps(TOPIC_ID))
        assert len(stored(engine, "rolled_back")) == 0
        raise RuntimeError("abort after the insert")
    assert stored(engine, "rolled_back") == []
    engine.dispose()


def test_sqlite_times_are_26_characters_across_the_epoch_window() -> None:
    """The column text of event times cuts every 26 characters: the first and last microsecond of
    parsing's window (1973-03-03 and 9999-12-31) both format to that width."""
    texts = _sqlite_times(np.array([100_000_000_000_000, 253_402_300_799_999_999], np.int64)).to_pylist()
    assert texts == ["1973-03-03 09:46:40.000000", "9999-12-31 23:59:59.999999"]
