"""Access-log lines parsed a whole Arrow batch at a time: `log_summary`'s parse, run by Spark's
`mapInArrow` in its Python workers.

The common line goes through one vectorised RE2 match (pyarrow compute) and a few column
operations; every line that match does not take (not ASCII, a malformed or unusual line, a date
the columns cannot vouch for) goes to `sml_assets.parsing.parse_log_line`, the one definition of a
valid line, so the fast path can only ever agree with it. Spark SQL string functions cost 15-17 us
of CPU a line here (a regex decodes the line to UTF-16 each time); this costs about 2 (README,
"Log summary throughput").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

import pyarrow as pa
import pyarrow.compute as _compute

from sml_assets.parsing import LINE_SPACE, LogRecord, parse_log_line, reason_kind

pc: Any = _compute
"""pyarrow.compute, whose functions are generated at import: a type checker sees none of them."""
FAST_LINE = (
    r"^[^ \t\n\r\f\v]+ [^ \t\n\r\f\v]+ [^ \t\n\r\f\v]+ "
    r"\[(?P<wday>[A-Z][a-z]{2}), "
    r"(?P<date>[0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<year>[0-9]{4}) "
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]) "
    r"(?P<zone>GMT|UTC|[+-](?:[01][0-9]|2[0-3])[0-5][0-9])\] "
    r"(?P<method>GET|POST) [^ \r\n]* (?P<status>[1-5][0-9]{2}) [0-9]+$"
)
"""An ASCII line `parse_log_line` accepts, in its most common shape: nothing to trim, a known month,
hours, minutes and seconds in range, a 3-digit status from 100 to 599. What the pattern cannot
check (the day exists in its month, the weekday, a year away from the ends of the calendar) is
checked on the columns; anything else takes the slow path."""
DATE_FORMAT = "%d %b %Y %H:%M:%S"
PARSED_FIELDS = (
    pa.field("line", pa.string()),
    pa.field("event_time", pa.timestamp("us", tz="UTC")),
    pa.field("method", pa.string()),
    pa.field("success", pa.bool_()),
    pa.field("_sml_parse_reason", pa.string()),
)
"""What `parse_batches` adds to each batch: the line (trimmed, for the rejects), its event time in
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


def parse_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`mapInArrow`'s function: each batch with its `value` column parsed into `PARSED_FIELDS`."""
    for batch in batches:
        yield parse_batch(batch)


def parse_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` (with a binary `value` column) and the `PARSED_FIELDS` of each of its values."""
    values = batch.column(batch.schema.get_field_index("value"))
    text = values.cast(pa.string(), safe=False)
    ascii_text = pc.if_else(pc.fill_null(pc.string_is_ascii(text), False), text, pa.scalar(None, pa.string()))
    match = pc.extract_regex(ascii_text, FAST_LINE)
    date = pc.struct_field(match, "date")
    written = pc.strptime(date, format=DATE_FORMAT, unit="s", error_is_null=True)
    year = pc.struct_field(match, "year")
    fast = pc.and_(
        pc.and_(
            pc.equal(pc.strftime(written, format=DATE_FORMAT, locale="C"), date),
            pc.equal(pc.strftime(written, format="%a", locale="C"), pc.struct_field(match, "wday")),
        ),
        pc.and_(pc.greater(year, "0001"), pc.less(year, "9999")),
    )
    fast = pc.fill_null(fast, False)
    zone = pc.struct_field(match, "zone")
    zone = pc.if_else(pc.is_in(zone, pa.array(["GMT", "UTC"])), "+0000", zone)
    sign = pc.if_else(pc.equal(pc.utf8_slice_codeunits(zone, 0, 1), "-"), -1, 1)
    hours = pc.cast(pc.utf8_slice_codeunits(zone, 1, 3), pa.int64())
    minutes = pc.cast(pc.utf8_slice_codeunits(zone, 3, 5), pa.int64())
    offset_s = pc.multiply(sign, pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)))
    seconds = pc.subtract(pc.cast(written, pa.int64()), pc.fill_null(offset_s, 0))
    status = pc.cast(pc.struct_field(match, "status"), pa.int64(), safe=False)
    columns: dict[str, pa.Array] = {
        "line": ascii_text,
        "event_time": pc.cast(pc.multiply(seconds, 1_000_000), pa.timestamp("us", tz="UTC")),
        "method": pc.struct_field(match, "method"),
        "success": pc.and_(pc.greater_equal(status, 200), pc.less_equal(status, 299)),
        "_sml_parse_reason": pa.nulls(len(batch), pa.string()),
    }
    slow = pc.invert(fast)
    if pc.any(slow).as_py():
        columns = _parse_slowly(values, slow, columns)
    arrays = [*batch.columns, *(columns[field.name] for field in PARSED_FIELDS)]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([*batch.schema, *PARSED_FIELDS]))


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
