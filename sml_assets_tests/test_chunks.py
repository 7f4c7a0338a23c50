"""The chunk parser against `parse_metric`: the same record or the same reason for every value.

Differential over the inputs the parser's own tests use (arbitrary bytes, text and JSON, valid seed
lines, one-character mutations, the hostile corpus, the simulator's malformations), each checked
alone and inside mixed batches, since the fast path works on whole batches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from random import Random

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sml_assets.chunks import (
    SEED_KEYS,
    SEED_LINE_PATTERN,
    MetricColumns,
    arrow_bools,
    arrow_ints,
    binary_array,
    datetime_to_us,
    numpy_bools,
    numpy_numbers,
    parse_values,
    record_times_us,
    timestamp_pairs,
)
from sml_assets.parsing import EPOCH, METRIC_FIELDS, DeadLetter, MetricRecord, parse_metric
from sml_assets_tests.helpers import HOSTILE_METRICS, METRIC, encoded, mutate

LOADED_MACHINE = settings(suppress_health_check=[HealthCheck.too_slow])
"""Drawing inputs is slow on a shared, loaded machine; that says nothing about the parsers."""
SCHEMA_OF_CONNECT = {
    "type": "struct",
    "optional": False,
    "fields": [{"field": key, "type": "double", "optional": False} for key in ("id", "cpu", "mem", "disk", "ts")],
}
RECORD_MS = 1_795_622_400_123
"""The Kafka record timestamp of every value unless a test draws its own."""


def assert_agree(values: Sequence[bytes | None], record_ms: Sequence[int] | None = None) -> None:
    """parse_values over the batch gives, value by value, what parse_metric gives."""
    stamps = [RECORD_MS] * len(values) if record_ms is None else list(record_ms)
    parsed = parse_values(values, np.array(stamps, np.int64) * 1000)
    for index, value in enumerate(values):
        expected = parse_metric(value, EPOCH + timedelta(milliseconds=stamps[index]))
        assert parsed.outcome(index) == expected, (index, value)


seed_lines = st.from_regex(SEED_LINE_PATTERN, fullmatch=True).map(str.encode)
"""Every shape the fast path can match, including ids, percentages and ts out of range."""
json_documents = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["id", "cpu", "mem", "disk", "ts", "x"]), children, max_size=6)
    ),
    max_leaves=10,
)


@LOADED_MACHINE
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_bytes_agree(values: list[bytes]) -> None:
    assert_agree(values)


@LOADED_MACHINE
@given(st.lists(st.text(max_size=300).map(encoded), max_size=20))
def test_any_text_agrees(values: list[bytes]) -> None:
    assert_agree(values)


@LOADED_MACHINE
@given(st.lists(json_documents.map(lambda d: json.dumps(d).encode()), max_size=20))
def test_any_json_agrees(values: list[bytes]) -> None:
    assert_agree(values)


@LOADED_MACHINE
@given(st.lists(seed_lines, min_size=1, max_size=20))
def test_every_seed_line_shape_agrees(values: list[bytes]) -> None:
    assert_agree(values)


@LOADED_MACHINE
@given(
    st.lists(
        st.tuples(
            st.integers(1, 2**31 - 1),
            st.floats(0, 100),
            st.floats(0, 100),
            st.floats(0, 100),
            st.integers(100_000_000_000, 4_102_444_800_000) | st.none(),
        ),
        max_size=30,
    )
)
def test_valid_seed_lines_agree(readings: list[tuple[int, float, float, float, int | None]]) -> None:
    values = [
        f"id: {i}, cpu: {c}, mem: {m:.1f}, disk: {d:.6f}".encode() + (b"" if ts is None else f", ts: {ts}".encode())
        for i, c, m, d, ts in readings
    ]
    assert_agree(values)


def envelope(schema: object, payload: object) -> bytes:
    """A value as Kafka Connect's JsonConverter writes it with schemas enabled (compact JSON)."""
    return json.dumps({"schema": schema, "payload": payload}, separators=(",", ":")).encode()


json_numbers = (
    st.integers(-5, 10**16)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(0, 100).map(lambda f: round(f, 3))
    | st.text(max_size=8)
    | st.booleans()
    | st.none()
)
payloads = st.fixed_dictionaries(
    {"id": json_numbers | st.integers(1, 2**31 + 5), "cpu": json_numbers, "mem": json_numbers, "disk": json_numbers},
    optional={"ts": json_numbers | st.integers(10**11 - 5, 10**15 + 5)},
)
short_percents = st.integers(0, 120) | st.floats(0, 120).map(lambda f: round(f, 2))
valid_payloads = st.tuples(
    st.integers(1, 2**31 + 5),
    short_percents,
    short_percents,
    short_percents,
    st.none() | st.integers(99_999_999_990, 253_402_300_800_010),
).map(lambda t: dict(zip(("id", "cpu", "mem", "disk", "ts"), t if t[4] is not None else t[:4], strict=False)))
"""Mostly in JsonConverter's fast-path shape, with numbers on both sides of every range bound."""


@LOADED_MACHINE
@given(json_documents, st.lists(payloads | valid_payloads, max_size=20))
def test_connect_envelopes_sharing_a_schema_agree(schema: object, batch: list[dict[str, object]]) -> None:
    assert_agree([envelope(schema, payload) for payload in batch])


@LOADED_MACHINE
@given(st.lists(valid_payloads, min_size=1, max_size=10), st.data())
def test_mutated_connect_envelopes_agree(batch: list[dict[str, object]], data: st.DataObject) -> None:
    values = [envelope(SCHEMA_OF_CONNECT, payload) for payload in batch]
    mutated = [encoded(mutate(value.decode(), data)) for value in values]
    assert_agree([values[0], *mutated, *values])


def test_the_benchmark_envelopes_take_the_fast_path_and_agree() -> None:
    values = [
        envelope(SCHEMA_OF_CONNECT, {"id": i, "cpu": 63.2, "mem": 41.0, "disk": 77.5, "ts": 1795622403000 + i})
        for i in range(1, 100)
    ]
    assert_agree(values)
    parsed = parse_values(values, np.full(len(values), RECORD_MS * 1000))
    assert parsed.valid.all() and parsed.server_id.tolist() == list(range(1, 100))


@LOADED_MACHINE
@given(st.data())
def test_one_character_mutations_agree(data: st.DataObject) -> None:
    values = [encoded(mutate(METRIC, data)) for _ in range(10)]
    assert_agree(values)


@LOADED_MACHINE
@given(
    st.lists(
        st.tuples(seed_lines | st.binary(max_size=40), st.integers(-(2**40), 2**45)),
        max_size=20,
    )
)
def test_record_times_of_any_value_agree(pairs: list[tuple[bytes, int]]) -> None:
    assert_agree([value for value, _ in pairs], [ms for _, ms in pairs])


def test_the_hostile_corpus_agrees_alone_and_between_valid_lines() -> None:
    for value in HOSTILE_METRICS.values():
        assert_agree([value])
    mixed = [v for hostile in HOSTILE_METRICS.values() for v in (METRIC.encode(), hostile)]
    assert_agree([*mixed, None, b"", b" ", METRIC.encode() + b"\n"])


@pytest.mark.parametrize("kind", ["truncated", "wrong_types", "out_of_range", "not_utf8", "empty"])
def test_every_simulator_malformation_agrees(kind: str) -> None:
    from simulator.faults import Faults
    from simulator.fleet import Reading
    from simulator.records import Malformation

    faults = Faults(seed=1, malformed_rate=1.0, late_rate=0.0, max_lateness_s=0.0, out_of_order_rate=0.0)
    rng = Random(kind)
    values = [
        faults.malformed_metrics(
            Malformation(kind), Reading(rng.randint(1, 50), round(rng.uniform(0, 100), 1), 41.0, 77.5), RECORD_MS
        )
        for _ in range(50)
    ]
    assert_agree(values)


def test_the_seed_line_keys_are_read_off_the_parser_pattern() -> None:
    assert SEED_KEYS == ("id", *METRIC_FIELDS, "ts")


def test_valid_values_of_a_batch_come_back_as_columns_in_order() -> None:
    values = [
        b"id: 7, cpu: 63.2, mem: 41.0, disk: 77.5, ts: 1795622403250",
        b"nope",
        b'{"id": 8, "cpu": 1, "mem": 2, "disk": 3}',
    ]
    parsed = parse_values(values, np.full(3, RECORD_MS * 1000))
    assert parsed.valid.tolist() == [True, False, True]
    assert parsed.server_id[parsed.valid].tolist() == [7, 8]
    assert parsed.event_time_us[parsed.valid].tolist() == [1_795_622_403_250_000, RECORD_MS * 1000]
    assert parsed.dead_letters == [(1, "field 'nope' has no ':' (expected 'key: value')")]


def test_a_missing_record_timestamp_becomes_now() -> None:
    before = datetime_to_us(datetime.now(UTC))
    stamps = record_times_us(
        timestamp_pairs([(TIMESTAMP_CREATE_TIME, RECORD_MS), (TIMESTAMP_NOT_AVAILABLE, -1)]), TIMESTAMP_NOT_AVAILABLE
    )
    assert stamps[0] == RECORD_MS * 1000
    assert before <= stamps[1] <= datetime_to_us(datetime.now(UTC))


def test_columns_from_rows_refuse_another_topic_and_naive_times() -> None:
    row = {
        "kafka_topic": "a",
        "kafka_partition": 0,
        "kafka_offset": 1,
        "server_id": 7,
        "cpu": 1.0,
        "mem": 2.0,
        "disk": 3.0,
        "event_time": datetime(2026, 11, 25, tzinfo=UTC),
    }
    assert len(MetricColumns.from_rows("a", [row])) == 1
    with pytest.raises(ValueError, match="topics \\['a'\\]"):
        MetricColumns.from_rows("b", [row])
    with pytest.raises(ValueError, match="naive datetime"):
        MetricColumns.from_rows("a", [{**row, "event_time": datetime(2026, 11, 25)}])


def test_a_record_or_dead_letter_for_every_value() -> None:
    values = [METRIC.encode(), None]
    parsed = parse_values(values, np.full(2, RECORD_MS * 1000))
    assert isinstance(parsed.outcome(0), MetricRecord)
    assert parsed.outcome(1) == DeadLetter("empty message (no value)")


def test_the_buffer_converters_agree_with_pyarrows_own() -> None:
    """Arrays built from buffers (no pandas import) equal pyarrow's conversions, sliced ones too."""
    values = [b"id: 1", b"", "é".encode(), b"\x00\xff"]
    assert binary_array(values).equals(pa.array(values, pa.binary()))
    assert binary_array([b"a", None]).to_pylist() == [b"a", None]
    assert len(binary_array([])) == 0
    mask = np.array([True, False, True, True, False, False, False, True, True])
    assert arrow_bools(mask).equals(pa.array(mask))
    assert arrow_ints(np.array([3, -1, 2**62])).to_pylist() == [3, -1, 2**62]
    assert numpy_bools(pa.array([True, None, False, True, True]).slice(1)).tolist() == [False, False, True, True]
    assert numpy_bools(pa.array([], pa.bool_())).tolist() == []
    assert numpy_numbers(pa.array([1.5, 2.5, 3.5]).slice(1)).tolist() == [2.5, 3.5]
    assert numpy_numbers(pa.array([7, 8], pa.int32())).tolist() == [7, 8]
    with pytest.raises(ValueError, match="1 nulls"):
        numpy_numbers(pa.array([1, None]))
