"""Pure parsers: message bytes -> a record, or a dead letter saying precisely what was wrong.

No I/O and no exceptions escape: any input gives a record or a `DeadLetter`, so one bad message
never stops a run (DESIGN.md section 2). The log-line parser is the oracle other modules test against.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from functools import cache

PERCENT_MIN, PERCENT_MAX = 0.0, 100.0
MAX_SERVER_ID = 2**31 - 1
"""The largest id a 32-bit INTEGER column holds in every supported database."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_EPOCH_MS = 100_000_000_000
"""1973-03-03 in epoch ms: a smaller `ts` is almost surely epoch seconds sent by mistake."""
MAX_EPOCH_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a `datetime` can hold."""
LOG_METHODS = ("GET", "POST")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RFC1123 = re.compile(
    r"(?P<wday>[A-Z][a-z]{2}), (?P<day>\d{2}) (?P<mon>[A-Z][a-z]{2}) (?P<year>\d{4}) "
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) "
    r"(?P<zone>GMT|UTC|[+-](?:[01]\d|2[0-3])[0-5]\d)",
    re.ASCII,
)
"""RFC 1123 as load balancers write it: zone `GMT`, `UTC` or a numeric `+hhmm`/`-hhmm` (RFC 2822);
the weekday is that of the date as written, and a numeric zone is converted to UTC."""
RFC1123_EXAMPLE = "'Wed, 25 Nov 2026 16:00:03 GMT', zone GMT, UTC or +hhmm"
_LOG_HEAD = re.compile(
    r"(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<date>[^\]]*)\] (?P<rest>[^\r\n\x85\u2028\u2029]*)",
    re.ASCII,
)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
"""ASCII digits and spaces only: Python's defaults take Arabic-Indic or full-width digits for numbers
and NBSP for a separator, which no load balancer writes. `rest` stops at a line terminator (the ones
Unicode and Java know), and a log line is trimmed of `LINE_SPACE` only. These rules date from the Spark
SQL parse and are kept so every summary counts the same lines (log_batches follows this module)."""
LINE_SPACE = " \t\n\r\f\v\x85\u2028\u2029"
"""ASCII whitespace and the line terminators, trimmed from both ends of a log line."""
_PERCENT_TEXT = r"([0-9]{1,3}(?:\.[0-9]{1,6})?)"
_PREVIEW = 40
DEFAULT_MAX_CLOCK_SKEW_S = 60
"""SML_MAX_CLOCK_SKEW's default, in seconds; README "Event time you can trust" says why."""
SKEW_REFERENCES = ("the record timestamp", "the clock")
"""What an event time is compared with, in the order the reasons name them."""
_REASON_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'(?:\.\.\.)?|"(?:[^"\\]|\\.)*"(?:\.\.\.)?|\([^)]*\)""")
_REASON_NUMBER = re.compile(r"(?<![\w-])(?<!RFC )[-+]?\d[\d.,:]*(?![\w-])")
_CONNECT_ENVELOPE = {"schema", "payload"}
"""Kafka Connect's JsonConverter with `schemas.enable=true` wraps each value as
{"schema": ..., "payload": {...}}: an object of exactly these two keys is read as its payload."""


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One valid metrics message: a server's percentages at `event_time` (UTC).

    The fields between `server_id` and `event_time` are the metric fields, the one source of
    `METRIC_FIELDS`: the parser, the table's columns, ingest's rows and the checks derive from it,
    so adding a field is adding it here (then `python -m sml_assets.migrate` on an existing table).
    """

    server_id: int
    cpu: float
    mem: float
    disk: float
    event_time: datetime


METRIC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclass_fields(MetricRecord))[1:-1]
"""The percentages of a metrics message, in the order of `MetricRecord` and of the seed line."""


@cache
def _seed_line_patterns(metric_fields: tuple[str, ...]) -> tuple[re.Pattern[bytes], re.Pattern[str]]:
    """The simulator's and the seed's exact line shape: matched whole, it is parsed without the
    general path (one regex instead of splitting, stripping and checking per field); anything else,
    and any value out of range, takes the general path, which gives the same record or the reason."""
    percents = "".join(f", {name}: {_PERCENT_TEXT}" for name in metric_fields)
    line = rf"id: ([1-9][0-9]{{0,9}}){percents}" r"(?:, ts: ([1-9][0-9]{11,14}))?"
    return re.compile(line.encode()), re.compile(line)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One valid load-balancer access-log line; `time` is UTC with second resolution."""

    client: str
    user: str
    time: datetime
    method: str
    path: str
    status: int
    size: int

    @property
    def success(self) -> bool:
        return 200 <= self.status <= 299

    @property
    def category(self) -> str:
        """The summary CSV column this line counts in: `GET_success`, `POST_failure`, ..."""
        return f"{self.method}_{'success' if self.success else 'failure'}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a message was rejected, phrased so a person can find and fix the producer."""

    reason: str


class _Reject(Exception):
    """Internal short-cut out of nested parsing; always turned into a `DeadLetter`."""


def parse_metric(value: bytes | str | None, default_time: datetime) -> MetricRecord | DeadLetter:
    """Parse a metrics message (seed `key: value` pairs, a JSON object, or Kafka Connect's JSON envelope
    `{"schema": ..., "payload": {...}}` around one).

    `default_time` is the event time when the message carries no `ts` (the Kafka record timestamp).
    """
    if value:
        fast = _seed_line(value, default_time)
        if fast is not None:
            return fast
    try:
        text = _decode(value)
        fields = _json_fields(text) if text[0] in "{[" else _seed_fields(text)
        return _metric_from_fields(fields, default_time)
    except _Reject as reject:
        return DeadLetter(str(reject))


def _seed_line(value: bytes | str, default_time: datetime) -> MetricRecord | None:
    """The common case of `parse_metric` in one regex; None sends the value down the general path."""
    as_bytes, as_text = _seed_line_patterns(METRIC_FIELDS)
    match = as_bytes.fullmatch(value) if isinstance(value, bytes) else as_text.fullmatch(value)
    if match is None:
        return None
    raw_id, *raw_values, raw_ts = match.groups()
    server_id, values = int(raw_id), [float(raw) for raw in raw_values]
    if server_id > MAX_SERVER_ID or any(number > PERCENT_MAX for number in values):
        return None
    if raw_ts is None:
        return MetricRecord(server_id, *values, event_time=default_time)
    ts = int(raw_ts)
    if not MIN_EPOCH_MS <= ts <= MAX_EPOCH_MS:
        return None
    return MetricRecord(server_id, *values, event_time=EPOCH + timedelta(milliseconds=ts))


def parse_log_line(line: bytes | str | None) -> LogRecord | DeadLetter:
    """Parse `10.0.0.7 - user42 [Wed, 25 Nov 2026 16:00:03 GMT] GET /files/report.pdf 200 5123`."""
    try:
        text = _decode(line, LINE_SPACE)
        head = _LOG_HEAD.fullmatch(text)
        if head is None:
            raise _Reject(
                "not an access-log line (expected 'ip - user [date] METHOD path status size'): " + _preview(text)
            )
        time = _rfc1123(head["date"])
        rest = head["rest"].split(" ")
        if len(rest) != 4:
            raise _Reject(
                f"expected 'METHOD path status size' after the date, got {len(rest)} fields: " + _preview(head["rest"])
            )
        method, path, status, size = rest
        if method not in LOG_METHODS:
            raise _Reject(f"method {method!r} is not GET or POST")
        if not (status.isascii() and status.isdigit() and len(status) == 3 and 100 <= int(status) <= 599):
            raise _Reject(f"status {status!r} is not a 3-digit HTTP status")
        if not (size.isascii() and size.isdigit()):
            raise _Reject(f"size {size!r} is not a whole number of bytes")
        return LogRecord(head["client"], head["user"], time, method, path, int(status), int(size))
    except _Reject as reject:
        return DeadLetter(str(reject))


def skew_reason(event_time: datetime, record_time: datetime | None, now: datetime, max_skew_s: int) -> str | None:
    """Why an event is refused for a clock ahead of time, or None when its time is believable.

    An event cannot happen after it was written to Kafka, nor after the machine reading it looks at
    its clock: a time ahead of either by more than `max_skew_s` seconds comes from a wrong clock, and
    counting it would move the watermark into the future and drop every later event as late.
    The difference is whole seconds rounded down, as `logs_stream.parse_lines` computes it in Spark SQL.
    """
    for reference, moment in zip(SKEW_REFERENCES, (record_time, now)):
        if moment is None:
            continue
        ahead_ms = (event_time - moment) // timedelta(milliseconds=1)
        if ahead_ms > max_skew_s * 1000:
            return f"event time {ahead_ms // 1000} s ahead of {reference}"
    return None


def reason_kind(reason: str) -> str:
    """A reason without its particulars (quoted values, numbers, what follows a colon), so reasons
    can be counted by kind: 'event time 31536000 s ahead of the clock' -> 'event time s ahead of
    the clock', "cpu 123 is out of range 0..100" -> 'cpu is out of range'."""
    kind = _REASON_NUMBER.sub("", _REASON_QUOTED.sub("", reason).split(": ", 1)[0])
    return " ".join(kind.split()).rstrip(":,") or "unknown"


def _decode(value: bytes | str | None, spaces: str | None = None) -> str:
    if value is None:
        raise _Reject("empty message (no value)")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _Reject(f"not UTF-8: byte 0x{value[error.start]:02x} at position {error.start}") from None
    text = value.strip(spaces)
    if not text:
        raise _Reject("empty message")
    return text


def _seed_fields(text: str) -> dict[str, object]:
    fields: dict[str, object] = {}
    for part in text.split(","):
        key, colon, raw = part.partition(":")
        key = key.strip()
        if not colon:
            raise _Reject(f"field {_preview(part.strip())} has no ':' (expected 'key: value')")
        if not key:
            raise _Reject(f"field {_preview(part.strip())} has no key before ':'")
        if key in fields:
            raise _Reject(f"duplicate key {key!r}")
        fields[key] = raw.strip()
    return fields


def _json_fields(text: str) -> dict[str, object]:
    try:
        loaded = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise _Reject(f"invalid JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise _Reject(f"JSON is a {type(loaded).__name__}, expected an object")
    if loaded.keys() == _CONNECT_ENVELOPE and isinstance(loaded["payload"], dict):
        return loaded["payload"]
    return loaded


def _metric_from_fields(fields: dict[str, object], default_time: datetime) -> MetricRecord:
    missing = [key for key in ("id", *METRIC_FIELDS) if key not in fields]
    if missing:
        raise _Reject(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    server_id = _server_id(fields["id"])
    values = [_percent(key, fields[key]) for key in METRIC_FIELDS]
    event_time = default_time if fields.get("ts") in (None, "") else _timestamp(fields["ts"])
    return MetricRecord(server_id, *values, event_time=event_time)


def _server_id(raw: object) -> int:
    if isinstance(raw, bool):
        raise _Reject(f"id {raw!r} is not a whole number")
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw):
        number = _int(f"id {_preview(raw)}", raw)
    else:
        raise _Reject(f"id {_preview(raw)} is not a whole number")
    if not 1 <= number <= MAX_SERVER_ID:
        raise _Reject(f"id {number} is out of range 1..{MAX_SERVER_ID}")
    return number


def _percent(key: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Reject(f"{key} {_preview(raw)} is not a number")
    if isinstance(raw, str) and (not raw.isascii() or "_" in raw):
        raise _Reject(f"{key} {_preview(raw)} is not a number")
    try:
        number = float(raw)
    except (ValueError, OverflowError):
        raise _Reject(f"{key} {_preview(raw)} is not a number") from None
    if not math.isfinite(number):
        raise _Reject(f"{key} {_preview(raw)} is not a finite number")
    if not PERCENT_MIN <= number <= PERCENT_MAX:
        raise _Reject(f"{key} {number:g} is out of range 0..100")
    return number


def _timestamp(raw: object) -> datetime:
    """`ts` as epoch milliseconds (int, or a string of digits) or an ISO-8601 string with a zone."""
    if isinstance(raw, bool):
        raise _Reject(f"ts {raw!r} is neither epoch milliseconds nor ISO-8601")
    if isinstance(raw, str) and _INTEGER.fullmatch(raw):
        raw = _int(f"ts {_preview(raw)}", raw)
    if isinstance(raw, int):
        if raw < MIN_EPOCH_MS:
            raise _Reject(f"ts {raw} is before 1973 in epoch milliseconds (epoch seconds sent by mistake?)")
        if raw > MAX_EPOCH_MS:
            raise _Reject(f"ts {raw} is past year 9999 in epoch milliseconds")
        return EPOCH + timedelta(milliseconds=raw)
    if not isinstance(raw, str):
        raise _Reject(f"ts {_preview(raw)} is neither epoch milliseconds nor ISO-8601")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise _Reject(f"ts {_preview(raw)} is neither epoch milliseconds nor ISO-8601") from None
    if parsed.tzinfo is None:
        raise _Reject(f"ts {_preview(raw)} has no time zone: add 'Z' or an offset like '+00:00'")
    return parsed.astimezone(UTC)


def _int(what: str, digits: str) -> int:
    try:
        return int(digits)
    except ValueError:
        raise _Reject(f"{what} has too many digits") from None


def _rfc1123(text: str) -> datetime:
    match = _RFC1123.fullmatch(text)
    if match is None:
        raise _Reject(f"date {_preview(text)} is not RFC 1123 ({RFC1123_EXAMPLE})")
    if match["mon"] not in _MONTHS:
        raise _Reject(f"date {_preview(text)} has unknown month {match['mon']!r}")
    try:
        parsed = datetime(
            int(match["year"]),
            _MONTHS.index(match["mon"]) + 1,
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            tzinfo=UTC,
        )
    except ValueError as error:
        raise _Reject(f"date {_preview(text)} is not a valid time: {error}") from None
    if _DAYS[parsed.weekday()] != match["wday"]:
        raise _Reject(f"date {_preview(text)} says {match['wday']} but that day is a {_DAYS[parsed.weekday()]}")
    zone = match["zone"]
    if zone in ("GMT", "UTC"):
        return parsed
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    try:
        return parsed - offset if zone[0] == "+" else parsed + offset
    except OverflowError:
        raise _Reject(f"date {_preview(text)} is not a valid time: out of range in UTC") from None


def _preview(raw: object) -> str:
    """A value quoted for a reason, cut short so a huge message cannot bloat the dead-letter table."""
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return repr(text if len(text) <= _PREVIEW else text[:_PREVIEW] + "...")
