"""The Arrow batch parse of log lines (`sml_assets.log_batches`) against `parse_log_line`, the one
definition of a valid line: same verdict, event time, method and success for every line, and the
reason's kind as `log_summary` counts it. No Spark here: the same function runs in Spark's workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.common import log_values
from sml_assets import log_batches
from sml_assets.log_batches import NOW_COLUMN, RECORD_COLUMN, count_batches, parsed_columns, reject_kind
from sml_assets.logs_stream import REJECT_KINDS, SKEW_KINDS
from sml_assets.parsing import DeadLetter, LogRecord, parse_log_line, skew_reason
from sml_assets_tests.helpers import encoded, mutate
from sml_assets_tests.test_hostile_input import HOSTILE_LOGS, LINE
from sml_assets_tests.test_log_summary_asset import MALFORMED, ZONED_DATES

DATE = "Wed, 25 Nov 2026 16:00:03 GMT"
EDGES = {
    "every zone": [LINE.replace("GMT", zone) for zone in ("UTC", "+0000", "+0130", "-0900", "+2359", "-2359")],
    "dates at the edges": [
        LINE.replace(DATE, date)
        for date in (
            "Thu, 29 Feb 2024 16:00:03 GMT",
            "Sun, 29 Feb 2026 16:00:03 GMT",
            "Wed, 31 Nov 2026 16:00:03 GMT",
            "Wed, 00 Nov 2026 16:00:03 GMT",
            "Wed, 32 Nov 2026 16:00:03 GMT",
            "Wed, 25 Nov 2026 16:00:60 GMT",
            "Wed, 25 Nov 2026 24:00:03 GMT",
            "Thu, 25 Nov 2026 16:00:03 GMT",
            "wed, 25 Nov 2026 16:00:03 GMT",
            "Mon, 01 Jan 0001 16:00:03 GMT",
            "Mon, 01 Jan 0001 00:30:00 +0100",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Fri, 31 Dec 9999 23:00:00 -0100",
            "Wed, 25 Nov 0000 16:00:03 GMT",
        )
    ],
    "space around": [" " + LINE, LINE + "\t", LINE + "\u2028", LINE + "\u2028\u2028", "\u0085" + LINE],
    "odd fields": [
        LINE.replace("GET", "PUT"),
        LINE.replace("GET", "get"),
        LINE.replace(" 200 ", " 099 "),
        LINE.replace(" 200 ", " 600 "),
        LINE.replace(" 200 ", " 2000 "),
        LINE.replace("5123", "-5"),
        LINE.replace("5123", "5123 extra"),
        LINE.replace("/files/report.pdf", ""),
        LINE.replace("/files/report.pdf", "/a\tb"),
        LINE.replace("/files/report.pdf", "/a\rb"),
        LINE.replace("/files/report.pdf", "/a]b"),
        LINE.replace("user42", "us]er"),
        LINE.replace("] GET", "]  GET"),
        LINE.replace("GMT]", "GMT\n]"),
        LINE.replace("Nov", "Foo"),
    ],
}
CORPUS: list[bytes | None] = [
    *log_values(300),
    *HOSTILE_LOGS.values(),
    *MALFORMED,
    *(f"10.0.0.1 - u [{date}] GET /x 200 1".encode() for date in ZONED_DATES),
    *(encoded(line) for lines in EDGES.values() for line in lines),
    None,
    b"",
    b" \t ",
]


def verdicts(values: list[bytes | None]) -> list[tuple[object, ...]]:
    """Each value's (event time, method, success, reason kind) as `parsed_columns` gives them."""
    columns = parsed_columns(pa.array(values, pa.binary()))
    assert list(columns) == ["line", "event_time", "method", "success", "_sml_parse_reason"]
    rows = pa.table(columns).to_pylist()
    return [(row["event_time"], row["method"], row["success"], row["_sml_parse_reason"]) for row in rows]


def expected(value: bytes | None) -> tuple[object, ...]:
    outcome = parse_log_line(value)
    if isinstance(outcome, LogRecord):
        return (outcome.time, outcome.method, outcome.success, None)
    return (None, None, None, reject_kind(outcome.reason))


def test_every_line_of_the_corpus_gets_parse_log_lines_verdict() -> None:
    assert verdicts(CORPUS) == [expected(value) for value in CORPUS]


def test_the_corpus_meets_every_reject_kind_and_no_other() -> None:
    kinds = {kind for *_, kind in verdicts(CORPUS) if kind is not None}
    assert kinds == set(REJECT_KINDS) - set(SKEW_KINDS)


@given(data=st.data())
def test_any_one_character_mutation_of_a_line_gets_parse_log_lines_verdict(data: st.DataObject) -> None:
    line = data.draw(st.sampled_from([LINE, *EDGES["every zone"]]))
    value = encoded(mutate(line, data))
    assert verdicts([value]) == [expected(value)]


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    zone=st.sampled_from(["GMT", "UTC", "+0000", "-0000", "+0530", "-1200", "+2359"]),
)
def test_any_date_gets_parse_log_lines_event_time(moment: datetime, zone: str) -> None:
    value = f"10.0.0.1 - u [{moment:%a, %d %b} {moment.year:04d} {moment:%H:%M:%S} {zone}] POST /x 503 0".encode()
    [got] = verdicts([value])
    assert got == expected(value)
    offset = 0 if zone in ("GMT", "UTC") else int(zone[0] + "1") * (int(zone[1:3]) * 60 + int(zone[3:]))
    assert got[0] == moment.replace(microsecond=0, tzinfo=UTC) - timedelta(minutes=offset)


def test_the_simulators_lines_and_every_zone_never_take_the_line_by_line_path() -> None:
    lines = [*log_values(2_000), *(encoded(line) for line in EDGES["every zone"])]
    with mock.patch.object(log_batches, "parse_log_line", wraps=parse_log_line) as slow:
        got = verdicts(lines)
    assert slow.call_count == 0, "the vectorised path left common lines to parse_log_line"
    assert got == [expected(value) for value in lines]


def test_reasons_are_counted_by_the_kinds_spark_named_them() -> None:
    reasons = {value: parse_log_line(value) for value in CORPUS}
    for value, outcome in reasons.items():
        if isinstance(outcome, DeadLetter):
            assert reject_kind(outcome.reason) in REJECT_KINDS, (value, outcome.reason)


def test_count_batches_counts_what_parse_log_line_and_skew_reason_decide() -> None:
    """Counts per window and category, and per kind of reject, of lines spread over three batches,
    with skewed ones (against the record timestamp, the clock, both, and neither by a millisecond),
    equal a recount line by line."""
    now = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)
    base = datetime(2026, 11, 25, 16, 2, 3, tzinfo=UTC)
    skewed = [
        (f"10.0.0.1 - u [{moment:%a, %d %b %Y %H:%M:%S} GMT] GET /x 200 1".encode(), record)
        for moment, record in (
            (base + timedelta(seconds=61), base),
            (base + timedelta(seconds=60), base),
            (base + timedelta(seconds=61), base + timedelta(microseconds=1_000)),
            (now + timedelta(seconds=61), now + timedelta(days=1)),
            (now + timedelta(days=400), None),
        )
    ]
    lines = [(value, base) for value in CORPUS] + skewed
    expected_counts: dict[tuple[int | None, str], list[int | None]] = {}
    for value, record in lines:
        outcome = parse_log_line(value)
        reason = outcome.reason if isinstance(outcome, DeadLetter) else skew_reason(outcome.time, record, now, 60)
        if reason is not None:
            key, second = (None, reject_kind(reason)), None
        else:
            assert isinstance(outcome, LogRecord)
            second = int(outcome.time.timestamp())
            key = (second - second % 300, outcome.category)
        seen = expected_counts.setdefault(key, [0, None])
        seen[0] = int(seen[0] or 0) + 1
        seen[1] = second if seen[1] is None or second is None else max(int(seen[1]), second)
    timestamps = pa.timestamp("us", tz="UTC")
    batches = [
        pa.record_batch(
            {
                "value": pa.array([value for value, _ in part], pa.binary()),
                RECORD_COLUMN: pa.array([record for _, record in part], timestamps),
                NOW_COLUMN: pa.array([now] * len(part), timestamps),
            }
        )
        for part in (lines[:100], lines[100:101], lines[101:])
    ]
    got = {
        (row["start"], row["label"]): [row["lines"], row["max_seconds"]]
        for batch in count_batches(batches, 60)
        for row in batch.to_pylist()
    }
    assert got == expected_counts
    assert {"event time s ahead of the record timestamp", "event time s ahead of the clock"} <= {
        label for start, label in got if start is None
    }
