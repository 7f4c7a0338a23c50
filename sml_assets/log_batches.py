"""Access-log lines parsed a whole Arrow batch at a time: `log_summary`'s parse, run by Spark's
`mapInArrow` in its Python workers.

The common line goes through one vectorised RE2 match without captures (pyarrow compute), a split
on spaces and integer column operations (the date's day count computed, not parsed: strptime and a
strftime round trip to vouch for the day cost 2 us a line); every line that match does not take
(not ASCII, a malformed or unusual line, a date the columns cannot vouch for) goes to
`sml_assets.parsing.parse_log_line`, the one definition of a valid line, so the fast path can only
ever agree with it. Spark SQL string functions cost 15-17 us of CPU a line here (a regex decodes
the line to UTF-16 each time); this costs about 0.95 (README, "Log summary throughput").

`count_batches` also counts the lines (window, category, kind of reject) in the worker, so only the
counts go back to the JVM; `judge_batches` gives the lines themselves (the rejects, the tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

import pyarrow as pa
import pyarrow.compute as _compute

from sml_assets.parsing import LINE_SPACE, LogRecord, parse_log_line, reason_kind, skew_reason
from sml_assets.windows import WINDOW

pc: Any = _compute
"""pyarrow.compute, whose functions are generated at import: a type checker sees none of them."""
FAST_LINE = (
    r"^[^ \t\n\r\f\v]+ [^ \t\n\r\f\v]+ [^ \t\n\r\f\v]+ "
    r"\[(?P<wday>[A-Z][a-z]{2}), "
    r"(?P<day>[0-9]{2}) (?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<year>[0-9]{4}) "
    r"(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9]):(?P<second>[0-5][0-9]) "
    r"(?P<zone>GMT|UTC|[+-](?:[01][0-9]|2[0-3])[0-5][0-9])\] "
    r"(?P<method>GET|POST) [^ \r\n]* (?P<status>[1-5][0-9]{2}) [0-9]+$"
)
"""An ASCII line `parse_log_line` accepts, in its most common shape: nothing to trim, a known month,
hours, minutes and seconds in range, a 3-digit status from 100 to 599. What the pattern cannot
check (the day exists in its month, the weekday, a year away from the ends of the calendar) is
checked on the columns; anything else takes the slow path."""
MONTHS = pa.array(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
WEEKDAYS = pa.array(["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"])
"""Weekdays from the one of 1970-01-01 (a Thursday) on."""
MONTH_DAYS = pa.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int64())
PARSED_FIELDS = (
    pa.field("line", pa.string()),
    pa.field("event_time", pa.timestamp("us", tz="UTC")),
    pa.field("method", pa.string()),
    pa.field("success", pa.bool_()),
    pa.field("_sml_parse_reason", pa.string()),
)
"""What `parsed_columns` gives for each value: the line (trimmed, for the rejects), its event time in
UTC, method and success, and the kind of reason when `parse_log_line` rejects it (else null)."""
KIND_OF = {
    "date has unknown month": "date is not a valid time",
    "expected after the date, got fields": "expected 'METHOD path status size' after the date",
}
"""Kinds of `parse_log_line`'s reasons (`reason_kind`) that `log_summary` counts under another name
(`logs_stream.REJECT_KINDS`, the names Spark's parse gave them)."""


def reject_kind(reason: str) -> str:
    """The kind `log_summary` counts one of `parse_log_line`'s reasons under, without particulars."""
    if reason == "empty message (no value)":
        return reason
    kind = reason_kind(reason)
    if kind.startswith("date says "):
        return "date has the wrong weekday"
    return KIND_OF.get(kind, kind)


def parsed_columns(values: pa.Array) -> dict[str, pa.Array]:
    """The `PARSED_FIELDS` of each of `values` (binary), by field name."""
    text = values.cast(pa.string(), safe=False)
    ascii_text = pc.if_else(pc.fill_null(pc.string_is_ascii(text), False), text, pa.scalar(None, pa.string()))
    match = _fields(ascii_text)
    year = _number(match, "year")
    month = pc.add(pc.index_in(match["month"], value_set=MONTHS), 1)
    day = _number(match, "day")
    days = _days_from_civil(year, month, day)
    fast = pc.and_(
        pc.and_(
            pc.and_(pc.greater_equal(day, 1), pc.less_equal(day, _month_days(year, month))),
            pc.equal(pc.index_in(match["wday"], value_set=WEEKDAYS), pc.modulo(days, 7)),
        ),
        pc.and_(pc.greater(year, 1), pc.less(year, 9999)),
    )
    fast = pc.fill_null(fast, False)
    zone = match["zone"]
    zone = pc.if_else(pc.is_in(zone, pa.array(["GMT", "UTC"])), "+0000", zone)
    sign = pc.if_else(pc.equal(pc.utf8_slice_codeunits(zone, 0, 1), "-"), -1, 1)
    hours = pc.cast(pc.utf8_slice_codeunits(zone, 1, 3), pa.int64())
    minutes = pc.cast(pc.utf8_slice_codeunits(zone, 3, 5), pa.int64())
    offset_s = pc.multiply(sign, pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)))
    clock = pc.add(
        pc.add(pc.multiply(_number(match, "hour"), 3600), pc.multiply(_number(match, "minute"), 60)),
        _number(match, "second"),
    )
    seconds = pc.subtract(pc.add(pc.multiply(days, 86_400), clock), pc.fill_null(offset_s, 0))
    status = pc.cast(match["status"], pa.int64(), safe=False)
    columns: dict[str, pa.Array] = {
        "line": ascii_text,
        "event_time": pc.cast(pc.multiply(seconds, 1_000_000), pa.timestamp("us", tz="UTC")),
        "method": match["method"],
        "success": pc.and_(pc.greater_equal(status, 200), pc.less_equal(status, 299)),
        "_sml_parse_reason": pa.nulls(len(values), pa.string()),
    }
    slow = pc.invert(fast)
    if pc.any(slow).as_py():
        columns = _parse_slowly(values, slow, columns)
    return columns


def _fields(text: pa.Array) -> dict[str, pa.Array]:
    """The groups of `FAST_LINE` of each line it matches (null where it does not), by name.

    A line `FAST_LINE` matches has single spaces between 13 fields (the path has none, and may be
    empty), and fixed widths inside the date: a match without captures then a split on spaces and
    slices cost 0.4 us a line, where RE2 with captures (`extract_regex`) costs 1.1."""
    matched = pc.if_else(pc.match_substring_regex(text, FAST_LINE), text, pa.scalar(None, pa.string()))
    tokens = pc.split_pattern(matched, " ")

    def token(index: int, start: int = 0, stop: int | None = None) -> pa.Array:
        field = pc.list_element(tokens, index)
        return field if start == 0 and stop is None else pc.utf8_slice_codeunits(field, start, stop)

    return {
        "wday": token(3, 1, 4),
        "day": token(4),
        "month": token(5),
        "year": token(6),
        "hour": token(7, 0, 2),
        "minute": token(7, 3, 5),
        "second": token(7, 6, 8),
        "zone": token(8, 0, -1),
        "method": token(9),
        "status": token(11),
    }


def _number(match: dict[str, pa.Array], group: str) -> pa.Array:
    """A group of digits of `_fields` as a number (null where the line did not match)."""
    return pc.cast(match[group], pa.int64(), safe=False)


def _month_days(year: pa.Array, month: pa.Array) -> pa.Array:
    """Days in each month of the proleptic Gregorian calendar, as `datetime` counts them."""
    leap = pc.and_(
        pc.equal(pc.modulo(year, 4), 0),
        pc.or_(pc.not_equal(pc.modulo(year, 100), 0), pc.equal(pc.modulo(year, 400), 0)),
    )
    february = pc.and_(pc.equal(month, 2), leap)
    return pc.add(pc.take(MONTH_DAYS, pc.subtract(month, 1)), pc.cast(february, pa.int64()))


def _days_from_civil(year: pa.Array, month: pa.Array, day: pa.Array) -> pa.Array:
    """Days since 1970-01-01 of a date (years 1 to 9999), H. Hinnant's `days_from_civil` on columns.

    Years count from March, so February's leap day ends one; every quantity here is positive."""
    march_year = pc.subtract(year, pc.cast(pc.less_equal(month, 2), pa.int64()))
    era = pc.divide(march_year, 400)
    year_of_era = pc.subtract(march_year, pc.multiply(era, 400))
    shifted_month = pc.add(month, pc.if_else(pc.greater(month, 2), -3, 9))
    day_of_year = pc.add(pc.divide(pc.add(pc.multiply(shifted_month, 153), 2), 5), pc.subtract(day, 1))
    day_of_era = pc.add(
        pc.add(pc.multiply(year_of_era, 365), pc.divide(year_of_era, 4)),
        pc.subtract(day_of_year, pc.divide(year_of_era, 100)),
    )
    return pc.subtract(pc.add(pc.multiply(era, 146_097), day_of_era), 719_468)


def _parse_slowly(values: pa.Array, slow: pa.Array, columns: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """The columns with the values where `slow` is true parsed by `parse_log_line`, one by one; only
    those values become Python objects, and their results are put back in place column by column."""
    parsed: dict[str, list[object]] = {field.name: [] for field in PARSED_FIELDS}
    for value in pc.filter(values, slow).to_pylist():
        outcome = parse_log_line(value)
        parsed["line"].append(None if value is None else value.decode("utf-8", "replace").strip(LINE_SPACE))
        if isinstance(outcome, LogRecord):
            found: tuple[object, ...] = (outcome.time.astimezone(UTC), outcome.method, outcome.success, None)
        else:
            found = (None, None, None, reject_kind(outcome.reason))
        for name, item in zip(("event_time", "method", "success", "_sml_parse_reason"), found, strict=True):
            parsed[name].append(item)
    return {
        field.name: pc.replace_with_mask(columns[field.name], slow, pa.array(parsed[field.name], field.type))
        for field in PARSED_FIELDS
    }


NOW_COLUMN = "_sml_now"
"""The micro-batch's time (Spark's `current_timestamp()` in a streaming plan, kept in its offset log),
handed to the Python workers as a column: the skew rule's clock."""
RECORD_COLUMN = "kafka_timestamp"
JUDGED_FIELDS = (*PARSED_FIELDS[:4], pa.field("reject_reason", pa.string()))
"""What `judge_batches` adds: `PARSED_FIELDS` with the skew rule applied, the reason with its particulars."""
COUNT_FIELDS = (
    pa.field("start", pa.int64()),
    pa.field("label", pa.string()),
    pa.field("lines", pa.int64()),
    pa.field("max_seconds", pa.int64()),
)
"""What `count_batches` gives: lines per window start (epoch seconds) and category, with the newest
event second; a row without a start counts the rejects of one kind (`label`)."""
SKEW_PARTICULARS = r"^event time [0-9]+ s ahead"


def judged_columns(batch: pa.RecordBatch, max_skew_s: int) -> dict[str, pa.Array]:
    """`PARSED_FIELDS` of the batch's `value`s, then the skew rule (`skew_reason`) against its
    `RECORD_COLUMN` (when it has one) and `NOW_COLUMN`: `JUDGED_FIELDS`.

    Arrays pick the candidates (ahead of either moment by more than `max_skew_s`, to the millisecond),
    `skew_reason` words their reasons: only those lines become Python objects."""
    names = batch.schema.names
    columns = parsed_columns(batch.column(names.index("value")))
    event_us = pc.cast(columns["event_time"], pa.int64())
    moments = [batch.column(names.index(name)) for name in (RECORD_COLUMN, NOW_COLUMN) if name in names]
    candidate = pa.repeat(False, len(batch))
    for moment in moments:
        ahead_us = pc.subtract(event_us, pc.cast(moment, pa.int64()))
        candidate = pc.or_(candidate, pc.fill_null(pc.greater(ahead_us, max_skew_s * 1_000_000 + 999), False))
    reason = columns.pop("_sml_parse_reason")
    if pc.any(candidate).as_py():
        reason = pc.replace_with_mask(reason, candidate, _skew_reasons(batch, columns, candidate, max_skew_s))
    return {**columns, "reject_reason": reason}


def _skew_reasons(
    batch: pa.RecordBatch, columns: dict[str, pa.Array], candidate: pa.Array, max_skew_s: int
) -> pa.Array:
    names = batch.schema.names
    events = pc.filter(columns["event_time"], candidate).to_pylist()
    records = (
        pc.filter(batch.column(names.index(RECORD_COLUMN)), candidate).to_pylist()
        if RECORD_COLUMN in names
        else [None] * len(events)
    )
    nows = pc.filter(batch.column(names.index(NOW_COLUMN)), candidate).to_pylist()
    return pa.array(
        [skew_reason(event, record, now, max_skew_s) for event, record, now in zip(events, records, nows, strict=True)],
        pa.string(),
    )


def judge_batches(batches: Iterable[pa.RecordBatch], max_skew_s: int) -> Iterator[pa.RecordBatch]:
    """`mapInArrow`'s function for the lines themselves: each batch without `NOW_COLUMN`, plus `JUDGED_FIELDS`."""
    for batch in batches:
        columns = judged_columns(batch, max_skew_s)
        kept = [name for name in batch.schema.names if name != NOW_COLUMN]
        arrays = [*(batch.column(name) for name in kept), *(columns[field.name] for field in JUDGED_FIELDS)]
        schema = pa.schema([*(batch.schema.field(name) for name in kept), *JUDGED_FIELDS])
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def count_batches(batches: Iterable[pa.RecordBatch], max_skew_s: int) -> Iterator[pa.RecordBatch]:
    """`mapInArrow`'s function for the counts: a partition's lines judged a batch at a time and
    counted per `COUNT_FIELDS` group (a few rows per partition, vectorised, nothing per line),
    so only the counts go back to the JVM."""
    partials = [_counts(judged_columns(batch, max_skew_s)) for batch in batches]
    if partials:
        combined = (
            pa.concat_tables(partials)
            .group_by(["start", "label"])
            .aggregate([("lines", "sum"), ("max_seconds", "max")])
        )
        table = pa.table({field.name: combined.column(_aggregated(field.name)) for field in COUNT_FIELDS})
        yield from table.cast(pa.schema(COUNT_FIELDS)).to_batches()


def _aggregated(name: str) -> str:
    return {"lines": "lines_sum", "max_seconds": "max_seconds_max"}.get(name, name)


def _counts(columns: dict[str, pa.Array]) -> pa.Table:
    """One batch's lines per window and category (valid lines) or per kind of reason (rejects)."""
    valid = pc.is_null(columns["reject_reason"])
    seconds = _floor_div(pc.cast(columns["event_time"], pa.int64()), 1_000_000)
    window_s = int(WINDOW.total_seconds())
    suffix = pc.if_else(columns["success"], "_success", "_failure")
    category = pc.binary_join_element_wise(columns["method"], suffix, "")
    kind = pc.replace_substring_regex(columns["reject_reason"], SKEW_PARTICULARS, "event time s ahead")
    null_seconds = pa.scalar(None, pa.int64())
    table = pa.table(
        {
            "start": pc.if_else(valid, pc.multiply(_floor_div(seconds, window_s), window_s), null_seconds),
            "label": pc.if_else(valid, category, kind),
            "seconds": pc.if_else(valid, seconds, null_seconds),
        }
    )
    grouped = table.group_by(["start", "label"]).aggregate([("label", "count"), ("seconds", "max")])
    return pa.table(
        {
            "start": grouped.column("start"),
            "label": grouped.column("label"),
            "lines": grouped.column("label_count"),
            "max_seconds": grouped.column("seconds_max"),
        }
    )


def _floor_div(values: pa.Array, divisor: int) -> pa.Array:
    """Integer division rounded down (Arrow's rounds toward zero), as Spark's `unix_seconds` and `pmod`."""
    quotient = pc.divide(values, divisor)
    return pc.subtract(quotient, pc.cast(pc.greater(pc.multiply(quotient, divisor), values), pa.int64()))
