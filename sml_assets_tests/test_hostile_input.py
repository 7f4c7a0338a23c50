"""Hostile input: whatever bytes arrive, each message is a record or a dead letter with a reason,
never an exception and never a stuck run; through the real broker the rejects are stored and counted.

The property tests extend `test_parsing.py` (which covers arbitrary bytes, text and JSON) with
mutations of valid messages, Unicode look-alikes and size bounds; the integration tests send
huge, binary, SQL-looking and Unicode-odd messages through Kafka into both sinks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Producer
from dagster import materialize
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import inspect, select

from sml_assets.assets import logs
from sml_assets.logs_stream import parse_lines
from sml_assets.parsing import DeadLetter, LogRecord, MetricRecord, parse_log_line, parse_metric
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets_tests.helpers import HOSTILE_METRICS, METRIC, encoded, metadata, mutate, produce, run

KAFKA_TIME = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
LINE = "10.0.0.7 - user42 [Wed, 25 Nov 2026 16:00:03 GMT] GET /files/report.pdf 200 5123"
MAX_REASON = 300
"""A reason quotes at most a short preview of the value, whatever the size of the message."""
HOSTILE_LOGS: dict[str, bytes] = {
    "900 KB line": LINE.replace("/files/report.pdf", "/" + "a" * 900_000).encode() + b" extra",
    "binary junk": random.Random(3).randbytes(4096),
    "SQL statement": b"'; DROP TABLE server_matric; --",
    "RTL override in the date": LINE.replace("[Wed", "[\u202eWed").encode(),
    "NUL in the status": LINE.replace(" 200 ", " 200\x00 ").encode(),
    "surrogate as bytes": LINE.encode().replace(b"user42", b"user\xed\xa0\x80"),
    "emoji method": LINE.replace("GET", "GET😀").encode(),
    "full-width day": LINE.replace("25 Nov", "２５ Nov").encode(),
    "Arabic-Indic status": LINE.replace(" 200 ", " ٢٠٠ ").encode(),
    "NBSP after the size": (LINE + "\xa0").encode(),
    "NEL inside the path": LINE.replace("report", "re\x85port").encode(),
    "line separator inside the path": LINE.replace("report", "re\u2028port").encode(),
    "file separator after the size": (LINE + "\x1c").encode(),
    "superscript in the size": LINE.replace("5123", "512³").encode(),
}


def log_line(moment: datetime, method: str, status: int) -> bytes:
    stamp = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    return f"10.0.0.{moment.second} - u{moment.minute} [{stamp}] {method} /p {status} 512".encode()


@given(data=st.data())
def test_any_one_character_mutation_of_a_metric_gives_a_record_or_a_short_reason(data: st.DataObject) -> None:
    value = encoded(mutate(METRIC, data))
    parsed = parse_metric(value, KAFKA_TIME)
    assert isinstance(parsed, MetricRecord | DeadLetter)
    if isinstance(parsed, DeadLetter):
        assert parsed.reason and len(parsed.reason) <= MAX_REASON


@given(data=st.data())
def test_any_one_character_mutation_of_a_log_line_gives_a_record_or_a_short_reason(
    data: st.DataObject,
) -> None:
    parsed = parse_log_line(encoded(mutate(LINE, data)))
    assert isinstance(parsed, LogRecord | DeadLetter)
    if isinstance(parsed, DeadLetter):
        assert parsed.reason and len(parsed.reason) <= MAX_REASON


@given(
    field=st.sampled_from(["id", "cpu", "mem", "disk", "ts"]),
    odd=st.characters(min_codepoint=0x80, exclude_categories=("Cs",)),
    data=st.data(),
)
def test_a_non_ascii_character_inside_a_number_makes_a_dead_letter(field: str, odd: str, data: st.DataObject) -> None:
    """Unicode digits (Arabic-Indic, full-width, superscript) look like numbers to Python's int() and
    float(); a metrics number is ASCII, so any of them must be a dead letter, not a row. (Unicode
    spaces around a value are separators, like ASCII ones.)"""
    assume(not odd.isspace())
    values = {"id": "7", "cpu": "63", "mem": "41", "disk": "77", "ts": "1795622403000"}
    position = data.draw(st.integers(0, len(values[field])))
    values[field] = values[field][:position] + odd + values[field][position:]
    parsed = parse_metric(", ".join(f"{key}: {value}" for key, value in values.items()), KAFKA_TIME)
    assert isinstance(parsed, DeadLetter), (values[field], parsed)


STRICT_REGIONS = (
    range(LINE.index("["), LINE.index("]") + 1),
    range(LINE.index(" GET ") + 1, LINE.index(" /files")),
    range(LINE.index(" 200 ") + 1, len(LINE) + 1),
)
"""The date, the method and 'status size' (up to the end): ASCII by the grammar, as Spark reads it."""


@given(
    position=st.sampled_from([i for region in STRICT_REGIONS for i in region]),
    odd=st.characters(min_codepoint=0x80),
    replace=st.booleans(),
)
def test_a_non_ascii_character_in_the_date_method_status_or_size_rejects_the_line(
    position: int, odd: str, replace: bool
) -> None:
    """Spark's parser uses Java regexes, where `\\d` and `\\s` are ASCII; Python's parser is the
    oracle Spark is tested against, so it must reject these too (and not strip Unicode spaces)."""
    text = LINE[:position] + odd + LINE[position + replace :]
    assert isinstance(parse_log_line(encoded(text)), DeadLetter), text


@pytest.mark.parametrize("size", [10_000, 1_000_000])
def test_a_huge_message_of_any_shape_gives_a_short_reason(size: int) -> None:
    for value in (
        b"x" * size,
        b"id: " + b"1" * size,
        b'{"id": "' + b"7" * size + b'"}',
        b"\xff" * size,
        b"[" * size,
        b"id: 7, " * (size // 7),
        b"10.0.0.1 - u [" + b"W" * size + b"]",
    ):
        for parsed in (parse_metric(value, KAFKA_TIME), parse_log_line(value)):
            assert isinstance(parsed, DeadLetter | MetricRecord | LogRecord)
            if isinstance(parsed, DeadLetter):
                assert len(parsed.reason) <= MAX_REASON, parsed.reason[:500]


@pytest.mark.parametrize("name", sorted(HOSTILE_METRICS))
def test_each_hostile_metrics_message_is_a_dead_letter(name: str) -> None:
    assert isinstance(parse_metric(HOSTILE_METRICS[name], KAFKA_TIME), DeadLetter)


@pytest.mark.parametrize("name", sorted(HOSTILE_LOGS))
def test_each_hostile_log_line_is_rejected(name: str) -> None:
    assert isinstance(parse_log_line(HOSTILE_LOGS[name]), DeadLetter)


@pytest.mark.integration
def test_hostile_metrics_through_the_broker_become_counted_dead_letters_and_nothing_else(
    database: MetricsDatabase,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(partitions=2)
    good = [f"id: {n + 1}, cpu: {n}.5, mem: 41.0, disk: 77.5".encode() for n in range(20)]
    values = [value for pair in zip(good, HOSTILE_METRICS.values()) for value in pair]
    produce(kafka_bootstrap, topic, values)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic, timeout_s=10)

    first = metadata(run(kafka, database, chunk_size=7))
    assert (first["rows inserted"], first["dead letters"]) == (len(good), len(HOSTILE_METRICS))
    dead = database.tables.dead_letters
    with database.transaction() as connection:
        stored = connection.execute(
            select(dead.c.kafka_offset, dead.c.raw_value, dead.c.reason).where(dead.c.kafka_topic == topic)
        ).all()
        tables = set(inspect(connection).get_table_names())
    assert len(stored) == len(HOSTILE_METRICS)
    assert all(reason and len(reason) <= MAX_REASON for _, _, reason in stored)
    assert {database.table, "sml_offsets", "sml_dead_letters"} <= tables, "a SQL-looking message did harm"
    assert max(len(raw) for _, raw, _ in stored) >= 900_000, "the huge message is kept whole"
    assert metadata(run(kafka, database))["messages read"] == 0


def test_spark_rejects_exactly_the_hostile_lines_parse_log_line_rejects(
    spark_resource: SparkResource,
) -> None:
    accepted = {
        "valid": LINE,
        "padded": f" \t{LINE}\r\n",
        "NEL at the end": LINE + "\x85",
        "line separator at the end": LINE + "\u2028",
        "NBSP in the user": LINE.replace("user", "us\xa0er"),
    }
    lines = [*HOSTILE_LOGS.values(), *(line.encode() for line in accepted.values())]
    frame = spark_resource.session().createDataFrame([(line,) for line in lines], "value binary")
    got = parse_lines(frame).select("reject_reason").collect()
    disagreements = [
        (name, row["reject_reason"], parse_log_line(line))
        for name, line, row in zip([*HOSTILE_LOGS, *accepted], lines, got)
        if (row["reject_reason"] is None) != isinstance(parse_log_line(line), LogRecord)
    ]
    assert not disagreements
    assert all(isinstance(parse_log_line(line), LogRecord) for line in accepted.values())


@pytest.mark.integration
def test_hostile_log_lines_through_the_broker_are_rejects_counted_and_kept_aside(
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    spark_resource: SparkResource,
    tmp_path: Path,
) -> None:
    topic = new_topic()
    start = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    good = [
        log_line(start + timedelta(seconds=17 * n), ("GET", "POST")[n % 2], (200, 404)[n % 3 == 0]) for n in range(30)
    ]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000})
    for value in [value for pair in zip(good, HOSTILE_LOGS.values()) for value in pair] + good[len(HOSTILE_LOGS) :]:
        producer.produce(topic, value)
    assert producer.flush(30) == 0
    storage = LocalStorage(data_dir=str(tmp_path / "data"))
    result = materialize(
        [logs.log_summary],
        resources={
            "kafka": KafkaResource(bootstrap_servers=kafka_bootstrap, logs_topic=topic),
            "spark": spark_resource,
            "storage": storage,
        },
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    shown = {key: value.value for key, value in event.materialization.metadata.items()}
    assert (shown["rejects"], shown["parsed_rows"]) == (len(HOSTILE_LOGS), len(good))
    assert int(pd.read_csv(storage.summary_csv)["total"].sum()) == len(good)
    rejects = pd.read_parquet(storage.root / "log_summary" / "rejects")
    assert len(rejects) == len(HOSTILE_LOGS) and rejects["reject_reason"].notna().all()
