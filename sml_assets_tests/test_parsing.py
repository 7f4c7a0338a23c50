"""The pure parsers: many small cases, and properties over arbitrary input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sml_assets.parsing import (
    DeadLetter,
    LogRecord,
    MetricRecord,
    parse_log_line,
    parse_metric,
    reason_kind,
    skew_reason,
)

KAFKA_TIME = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
LINE = "10.0.0.7 - user42 [Wed, 25 Nov 2026 16:00:03 GMT] GET /files/report.pdf 200 5123"


def metric(value: bytes | str | None) -> MetricRecord:
    parsed = parse_metric(value, KAFKA_TIME)
    assert isinstance(parsed, MetricRecord), parsed
    return parsed


def reason(value: bytes | str | None) -> str:
    parsed = parse_metric(value, KAFKA_TIME)
    assert isinstance(parsed, DeadLetter), parsed
    return parsed.reason


def log_reason(line: bytes | str | None) -> str:
    parsed = parse_log_line(line)
    assert isinstance(parsed, DeadLetter), parsed
    return parsed.reason


def test_seed_line_parses_with_kafka_time_as_event_time() -> None:
    assert metric(b"id: 7, cpu: 63.2, mem: 41.0, disk: 77.5") == MetricRecord(7, 63.2, 41.0, 77.5, KAFKA_TIME)


def test_epoch_millisecond_ts_becomes_event_time() -> None:
    parsed = metric(b"id: 7, cpu: 63.2, mem: 41.0, disk: 77.5, ts: 1795622403250")
    assert parsed.event_time == datetime(2026, 11, 25, 16, 0, 3, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-25T16:00:03Z",
        "2026-11-25T16:00:03+00:00",
        "2026-11-25T17:00:03+01:00",
        "2026-11-25 16:00:03Z",
    ],
)
def test_iso_ts_with_zone_is_converted_to_utc(ts: str) -> None:
    assert metric(f"id: 1, cpu: 1, mem: 2, disk: 3, ts: {ts}").event_time == datetime(
        2026, 11, 25, 16, 0, 3, tzinfo=UTC
    )


def test_spacing_and_key_order_do_not_matter() -> None:
    assert metric("disk:77.5,mem:41,  cpu :63.2 ,id:7\n") == MetricRecord(7, 63.2, 41.0, 77.5, KAFKA_TIME)


def test_bounds_0_and_100_are_valid() -> None:
    assert metric("id: 1, cpu: 0, mem: 100, disk: 100.0") == MetricRecord(1, 0.0, 100.0, 100.0, KAFKA_TIME)


def test_unknown_keys_are_ignored() -> None:
    assert metric("id: 1, cpu: 1, mem: 2, disk: 3, host: web-1").server_id == 1


def test_json_object_parses() -> None:
    value = json.dumps({"id": 3, "cpu": 12.5, "mem": "40", "disk": 7, "ts": 1795622403000}).encode()
    assert metric(value) == MetricRecord(3, 12.5, 40.0, 7.0, datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC))


CONNECT_SCHEMA = {
    "type": "struct",
    "optional": False,
    "fields": [
        {"field": "id", "type": "int32", "optional": False},
        {"field": "cpu", "type": "float64", "optional": False},
        {"field": "mem", "type": "float64", "optional": False},
        {"field": "disk", "type": "float64", "optional": False},
        {"field": "ts", "type": "int64", "optional": False},
    ],
}


def test_a_kafka_connect_json_envelope_is_read_as_its_payload() -> None:
    payload = {"id": 3, "cpu": 12.5, "mem": 40.0, "disk": 7.0, "ts": 1795622403000}
    value = json.dumps({"schema": CONNECT_SCHEMA, "payload": payload}).encode()
    assert metric(value) == MetricRecord(3, 12.5, 40.0, 7.0, datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC))


def test_an_envelope_with_a_bad_payload_gets_the_payload_reason() -> None:
    payload = {"id": 3, "cpu": 120, "mem": 40.0, "disk": 7.0}
    assert reason(json.dumps({"schema": None, "payload": payload})) == "cpu 120 is out of range 0..100"


@pytest.mark.parametrize(
    "document",
    [
        {"schema": CONNECT_SCHEMA, "payload": [1, 2]},
        {"schema": CONNECT_SCHEMA, "payload": {"id": 3, "cpu": 1, "mem": 2, "disk": 3}, "extra": 1},
        {"payload": {"id": 3, "cpu": 1, "mem": 2, "disk": 3}},
    ],
)
def test_only_an_object_of_exactly_schema_and_payload_is_unwrapped(document: object) -> None:
    assert reason(json.dumps(document)) == "missing keys id, cpu, mem, disk"


def test_json_null_ts_falls_back_to_kafka_time() -> None:
    assert metric('{"id": 3, "cpu": 1, "mem": 2, "disk": 3, "ts": null}').event_time == KAFKA_TIME


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", "empty message"),
        (b"   \n", "empty message"),
        (None, "empty message (no value)"),
        (b"id: 7, cpu: \xff\xfe, mem: 1, disk: 2", "not UTF-8: byte 0xff at position 12"),
        (b"id: 7, cpu: 63.2, mem: 41.0", "missing key disk"),
        (b"id: 7", "missing keys cpu, mem, disk"),
        (b"id: 7, c", "field 'c' has no ':' (expected 'key: value')"),
        (b"id: 7, : 3, cpu: 1, mem: 1, disk: 1", "field ': 3' has no key before ':'"),
        (b"id: 7, cpu: 1, cpu: 2, mem: 1, disk: 1", "duplicate key 'cpu'"),
        (b"id: 7, cpu: high, mem: 41.0, disk: 77.5", "cpu 'high' is not a number"),
        (b"id: 7, cpu: 12%, mem: 41.0, disk: 77.5", "cpu '12%' is not a number"),
        (b"id: 7, cpu: 100.5, mem: 41.0, disk: 77.5", "cpu 100.5 is out of range 0..100"),
        (b"id: 7, cpu: 1, mem: -0.5, disk: 77.5", "mem -0.5 is out of range 0..100"),
        (b"id: 7, cpu: 1, mem: 1, disk: nan", "disk 'nan' is not a finite number"),
        (b"id: 7, cpu: 1, mem: 1, disk: inf", "disk 'inf' is not a finite number"),
        (b"id: seven, cpu: 1, mem: 1, disk: 1", "id 'seven' is not a whole number"),
        (b"id: 7.5, cpu: 1, mem: 1, disk: 1", "id '7.5' is not a whole number"),
        (b"id: 0, cpu: 1, mem: 1, disk: 1", "id 0 is out of range 1..2147483647"),
        (b"id: 2147483648, cpu: 1, mem: 1, disk: 1", "id 2147483648 is out of range 1..2147483647"),
        (
            b"id: 1, cpu: 1, mem: 1, disk: 1, ts: 1795622403",
            "ts 1795622403 is before 1973 in epoch milliseconds (epoch seconds sent by mistake?)",
        ),
        (
            b"id: 1, cpu: 1, mem: 1, disk: 1, ts: 99999999999999999",
            "ts 99999999999999999 is past year 9999 in epoch milliseconds",
        ),
        (
            b"id: 1, cpu: 1, mem: 1, disk: 1, ts: yesterday",
            "ts 'yesterday' is neither epoch milliseconds nor ISO-8601",
        ),
        (
            b"id: 1, cpu: 1, mem: 1, disk: 1, ts: 2026-11-25T16:00:03",
            "ts '2026-11-25T16:00:03' has no time zone: add 'Z' or an offset like '+00:00'",
        ),
        (b'{"id": 1, "cpu": 1', "invalid JSON: Expecting ',' delimiter: line 1 column 19 (char 18)"),
        (b"[1, 2]", "JSON is a list, expected an object"),
        (b'{"id": true, "cpu": 1, "mem": 1, "disk": 1}', "id True is not a whole number"),
        (b'{"id": 1, "cpu": false, "mem": 1, "disk": 1}', "cpu 'false' is not a number"),
        (b'{"id": 1, "cpu": [1], "mem": 1, "disk": 1}', "cpu '[1]' is not a number"),
        (
            b'{"id": 1, "cpu": 1, "mem": 1, "disk": 1, "ts": 1.5}',
            "ts '1.5' is neither epoch milliseconds nor ISO-8601",
        ),
    ],
)
def test_malformed_metrics_become_dead_letters_with_a_precise_reason(value: bytes | None, expected: str) -> None:
    assert reason(value) == expected


def test_a_huge_value_is_quoted_short_in_the_reason() -> None:
    assert len(reason(b"id: 1, cpu: " + b"x" * 100_000 + b", mem: 1, disk: 1")) < 100


def test_too_many_digits_is_a_dead_letter_not_an_exception() -> None:
    assert reason(b"id: " + b"9" * 5000 + b", cpu: 1, mem: 1, disk: 1").endswith("has too many digits")


@pytest.mark.parametrize(
    "kind",
    ["truncated", "wrong_types", "out_of_range", "not_utf8", "empty"],
)
def test_every_simulator_malformation_is_a_dead_letter(kind: str) -> None:
    from random import Random

    from simulator.faults import Faults
    from simulator.fleet import Reading
    from simulator.records import Malformation

    faults = Faults(seed=1, malformed_rate=1.0, late_rate=0.0, max_lateness_s=0.0, out_of_order_rate=0.0)
    rng = Random(kind)
    for _ in range(50):
        reading = Reading(rng.randint(1, 50), round(rng.uniform(0, 100), 1), 41.0, 77.5)
        value = faults.malformed_metrics(Malformation(kind), reading, 1795622403000)
        assert isinstance(parse_metric(value, KAFKA_TIME), DeadLetter), value


def test_access_log_line_parses() -> None:
    assert parse_log_line(LINE) == LogRecord(
        "10.0.0.7",
        "user42",
        datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC),
        "GET",
        "/files/report.pdf",
        200,
        5123,
    )


@pytest.mark.parametrize(
    ("method", "status", "category"),
    [
        ("GET", 200, "GET_success"),
        ("GET", 299, "GET_success"),
        ("GET", 301, "GET_failure"),
        ("POST", 201, "POST_success"),
        ("POST", 199, "POST_failure"),
        ("POST", 500, "POST_failure"),
    ],
)
def test_category_is_method_and_2xx(method: str, status: int, category: str) -> None:
    parsed = parse_log_line(f"10.0.0.1 - u [Wed, 25 Nov 2026 16:00:03 GMT] {method} /x {status} 1".encode())
    assert isinstance(parsed, LogRecord) and parsed.category == category


@pytest.mark.parametrize(
    ("date", "utc"),
    [
        ("Wed, 25 Nov 2026 16:00:03 UTC", datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC)),
        ("Wed, 25 Nov 2026 16:00:03 +0000", datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC)),
        ("Wed, 25 Nov 2026 16:00:03 -0000", datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC)),
        ("Wed, 25 Nov 2026 11:00:03 -0500", datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC)),
        ("Wed, 25 Nov 2026 21:30:03 +0530", datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC)),
        ("Thu, 26 Nov 2026 01:00:03 +0900", datetime(2026, 11, 25, 16, 0, 3, tzinfo=UTC)),
        ("Wed, 25 Nov 2026 23:30:00 -0800", datetime(2026, 11, 26, 7, 30, tzinfo=UTC)),
    ],
)
def test_utc_and_numeric_zones_convert_to_utc_with_the_weekday_of_the_date_as_written(date: str, utc: datetime) -> None:
    record = parse_log_line(LINE.replace("Wed, 25 Nov 2026 16:00:03 GMT", date))
    assert isinstance(record, LogRecord), record
    assert record.time == utc and record.time.tzinfo == UTC


def test_log_line_with_trailing_newline_parses() -> None:
    assert isinstance(parse_log_line(LINE + "\r\n"), LogRecord)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "empty message"),
        (None, "empty message (no value)"),
        (
            b"10.0.0.7 - user42 [Wed, 25 Nov 2026 16:00:03 GMT] GET /x \xff\xfe\xfd 1",
            "not UTF-8: byte 0xff at position 57",
        ),
        (
            "10.0.0.7 - us",
            "not an access-log line (expected 'ip - user [date] METHOD path status size'): '10.0.0.7 - us'",
        ),
        (LINE.replace("GET", "PUT"), "method 'PUT' is not GET or POST"),
        (LINE.replace("GET", "get"), "method 'get' is not GET or POST"),
        (LINE.replace(" 200 ", " OK "), "status 'OK' is not a 3-digit HTTP status"),
        (LINE.replace(" 200 ", " 2xx "), "status '2xx' is not a 3-digit HTTP status"),
        (LINE.replace(" 200 ", " 999 "), "status '999' is not a 3-digit HTTP status"),
        (LINE.replace(" 5123", " -"), "size '-' is not a whole number of bytes"),
        (LINE.replace(" 5123", " 1.5k"), "size '1.5k' is not a whole number of bytes"),
        (
            LINE.replace(" 5123", ""),
            "expected 'METHOD path status size' after the date, got 3 fields: 'GET /files/report.pdf 200'",
        ),
        (
            LINE.replace(" 25 Nov", " 35 Nov"),
            "date 'Wed, 35 Nov 2026 16:00:03 GMT' is not a valid time: day is out of range for month",
        ),
        (
            LINE.replace("16:00:03", "26:00:03"),
            "date 'Wed, 25 Nov 2026 26:00:03 GMT' is not a valid time: hour must be in 0..23",
        ),
        (LINE.replace("Wed,", "Thu,"), "date 'Thu, 25 Nov 2026 16:00:03 GMT' says Thu but that day is a Wed"),
        (LINE.replace("Nov", "Noe"), "date 'Wed, 25 Noe 2026 16:00:03 GMT' has unknown month 'Noe'"),
        (
            LINE.replace("GMT", "EST"),
            "date 'Wed, 25 Nov 2026 16:00:03 EST' is not RFC 1123 "
            "('Wed, 25 Nov 2026 16:00:03 GMT', zone GMT, UTC or +hhmm)",
        ),
        (
            LINE.replace("GMT", "+2400"),
            "date 'Wed, 25 Nov 2026 16:00:03 +2400' is not RFC 1123 "
            "('Wed, 25 Nov 2026 16:00:03 GMT', zone GMT, UTC or +hhmm)",
        ),
        (
            LINE.replace("GMT", "+0060"),
            "date 'Wed, 25 Nov 2026 16:00:03 +0060' is not RFC 1123 "
            "('Wed, 25 Nov 2026 16:00:03 GMT', zone GMT, UTC or +hhmm)",
        ),
        (
            LINE.replace("[Wed, 25 Nov 2026 16:00:03 GMT]", "[25/Nov/2026:16:00:03 +0000]"),
            "date '25/Nov/2026:16:00:03 +0000' is not RFC 1123 "
            "('Wed, 25 Nov 2026 16:00:03 GMT', zone GMT, UTC or +hhmm)",
        ),
        (
            LINE.replace("Wed, 25 Nov 2026 16:00:03 GMT", "Wed, 26 Nov 2026 01:00:03 +0900"),
            "date 'Wed, 26 Nov 2026 01:00:03 +0900' says Wed but that day is a Thu",
        ),
    ],
)
def test_malformed_log_lines_become_dead_letters_with_a_precise_reason(line: bytes | str | None, expected: str) -> None:
    assert log_reason(line) == expected


@pytest.mark.parametrize("kind", ["truncated", "wrong_types", "out_of_range", "not_utf8", "empty"])
def test_every_simulator_log_malformation_is_a_dead_letter(kind: str) -> None:
    from random import Random

    from simulator.faults import Faults
    from simulator.loadbalancer import LoadBalancer
    from simulator.records import Malformation

    faults = Faults(seed=2, malformed_rate=1.0, late_rate=0.0, max_lateness_s=0.0, out_of_order_rate=0.0)
    balancer = LoadBalancer(servers=10, post_ratio=0.3, error_ratio=0.2, seed=Random(kind).randint(0, 1000))
    for second in range(50):
        line = faults.malformed_log(Malformation(kind), balancer.request(), 1795622403 + second * 3601)
        assert isinstance(parse_log_line(line), DeadLetter), line


@given(st.binary(max_size=300))
def test_any_bytes_give_a_metric_or_a_dead_letter(value: bytes) -> None:
    assert isinstance(parse_metric(value, KAFKA_TIME), MetricRecord | DeadLetter)


@given(st.text(max_size=300))
def test_any_text_gives_a_metric_or_a_dead_letter(value: str) -> None:
    assert isinstance(parse_metric(value, KAFKA_TIME), MetricRecord | DeadLetter)


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.sampled_from(["id", "cpu", "mem", "disk", "ts", "x"]), children, max_size=6)
        ),
        max_leaves=20,
    )
)
def test_any_json_gives_a_metric_or_a_dead_letter(document: object) -> None:
    assert isinstance(parse_metric(json.dumps(document), KAFKA_TIME), MetricRecord | DeadLetter)


@given(
    server_id=st.integers(1, 2**31 - 1),
    cpu=st.floats(0, 100),
    mem=st.floats(0, 100),
    disk=st.floats(0, 100),
    ts_ms=st.integers(100_000_000_000, 4_102_444_800_000),
)
def test_valid_seed_lines_round_trip(server_id: int, cpu: float, mem: float, disk: float, ts_ms: int) -> None:
    parsed = metric(f"id: {server_id}, cpu: {cpu!r}, mem: {mem!r}, disk: {disk!r}, ts: {ts_ms}")
    assert (parsed.server_id, parsed.cpu, parsed.mem, parsed.disk) == (server_id, cpu, mem, disk)
    assert round(parsed.event_time.timestamp() * 1000) == ts_ms


@given(
    server_id=st.integers(1, 2**31 - 1),
    values=st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True), st.floats(allow_nan=True)),
)
def test_a_metric_is_accepted_exactly_when_all_values_are_percentages(
    server_id: int, values: tuple[float, float, float]
) -> None:
    cpu, mem, disk = values
    parsed = parse_metric(json.dumps({"id": server_id, "cpu": cpu, "mem": mem, "disk": disk}), KAFKA_TIME)
    assert isinstance(parsed, MetricRecord) == all(0 <= v <= 100 for v in values)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_log_record_or_a_dead_letter(line: bytes) -> None:
    assert isinstance(parse_log_line(line), LogRecord | DeadLetter)


@given(
    epoch_s=st.integers(0, 253_402_300_799),
    method=st.sampled_from(["GET", "POST"]),
    status=st.integers(100, 599),
    size=st.integers(0, 10**12),
    user=st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
)
def test_rendered_log_lines_round_trip(epoch_s: int, method: str, status: int, size: int, user: str) -> None:
    from simulator.loadbalancer import rfc1123

    parsed = parse_log_line(f"10.0.0.9 - {user} [{rfc1123(epoch_s)}] {method} /a/b {status} {size}")
    assert isinstance(parsed, LogRecord)
    assert (int(parsed.time.timestamp()), parsed.method, parsed.status, parsed.size, parsed.user) == (
        epoch_s,
        method,
        status,
        size,
        user,
    )
    assert parsed.success == (200 <= status <= 299)


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event", "record", "now", "expected"),
    [
        (NOW, NOW, NOW, None),
        (NOW + timedelta(seconds=60), NOW, NOW + timedelta(hours=1), None),
        (NOW + timedelta(seconds=61), NOW, NOW + timedelta(hours=1), "event time 61 s ahead of the record timestamp"),
        (
            NOW + timedelta(seconds=61),
            NOW + timedelta(milliseconds=500),
            NOW + timedelta(hours=1),
            "event time 60 s ahead of the record timestamp",
        ),
        (NOW + timedelta(days=365), NOW, NOW, "event time 31536000 s ahead of the record timestamp"),
        (NOW + timedelta(minutes=5), NOW + timedelta(days=1), NOW, "event time 300 s ahead of the clock"),
        (NOW + timedelta(minutes=5), None, NOW, "event time 300 s ahead of the clock"),
        (NOW - timedelta(days=365), NOW, NOW, None),
    ],
)
def test_an_event_time_ahead_of_the_record_timestamp_or_the_clock_is_refused(
    event: datetime, record: datetime | None, now: datetime, expected: str | None
) -> None:
    assert skew_reason(event, record, now, 60) == expected


def test_a_zero_tolerance_refuses_a_millisecond_ahead() -> None:
    assert skew_reason(NOW + timedelta(milliseconds=1), NOW, NOW, 0) == "event time 0 s ahead of the record timestamp"


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("event time 31536000 s ahead of the record timestamp", "event time s ahead of the record timestamp"),
        ("event time 61 s ahead of the clock", "event time s ahead of the clock"),
        ("cpu 163.2 is out of range 0..100", "cpu is out of range"),
        ("cpu 'high' is not a number", "cpu is not a number"),
        ("not UTF-8: byte 0xff at position 12", "not UTF-8"),
        ("field 'mem' has no ':' (expected 'key: value')", "field has no"),
        ("invalid JSON: Expecting value: line 1 column 1 (char 0)", "invalid JSON"),
        ("date 'Wed, 31 Feb 2026' is not RFC 1123 ('Wed, 25 Nov 2026 16:00:03 GMT')", "date is not RFC 1123"),
        ("status '2OO' is not a 3-digit HTTP status", "status is not a 3-digit HTTP status"),
        ("empty message (no value)", "empty message"),
    ],
)
def test_reasons_are_counted_by_kind_without_their_particulars(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
