"""The chunk parser: a whole batch of metrics messages -> columns, one vectorised pass per field.

`parse_metric` is the authority; this module only makes the common case cheap. The values of a
chunk are matched at once against the seed line (pyarrow's RE2 `extract_regex`), their fields
cast to numbers as columns and range-checked as arrays. Every value that does not take that
fast path (another shape, JSON, an out-of-range number, a timestamp outside the epoch-ms window,
bytes that are not UTF-8, no value at all) goes through `parse_metric` one by one and gets
exactly its record or its reason. `sml_assets_tests/test_chunks.py` checks that both agree on
every outcome and reason.

A new dead-letter rule belongs in `parse_metric`; if it can reject a value the fast path accepts,
add its vectorised test to `_fast_path_ok` (which sees the record times) so that those values take
the per-message path and get the rule's reason from `parse_metric`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _compute

from sml_assets import parsing
from sml_assets.parsing import (
    EPOCH,
    MAX_EPOCH_MS,
    MAX_SERVER_ID,
    METRIC_FIELDS,
    MIN_EPOCH_MS,
    PERCENT_MAX,
    DeadLetter,
    MetricRecord,
    _seed_line_patterns,
    parse_metric,
)

pc: Any = _compute
"""pyarrow.compute, whose functions are generated at import: a type checker sees none of them."""

_ONE_US = timedelta(microseconds=1)
_JSON_ID = r"[1-9][0-9]{0,9}"
_JSON_PERCENT = r"(?:0|[1-9][0-9]{0,2})(?:\.[0-9]{1,6})?"
_JSON_TS = r"[1-9][0-9]{11,14}"


_ENVELOPE_TRIES = 8
"""Envelopes looked at for the batch's prefix before the batch is left to the per-message path."""
_ENVELOPE_START = b'{"schema":'
_PAYLOAD_START = b',"payload":{'


@dataclass(frozen=True)
class Shapes:
    """The fast path's patterns for one tuple of metric fields; `shapes(parsing.METRIC_FIELDS)` at
    each batch, so the parser follows `MetricRecord` as `parse_metric` does."""

    seed_line_pattern: str
    """The parser's seed line anchored at both ends. RE2 syntax: `$` matches only at the very end
    (no trailing newline), as Python's `fullmatch` does. A matched line is then cut at ', ' and
    each part after its 'key: '."""
    seed_keys: tuple[str, ...]
    """The keys of the seed line in their order (id, the metric fields, ts), read off the pattern."""
    envelope_tail_pattern: str
    """A Connect envelope's payload after `{"schema":<S>,"payload":{`, in JsonConverter's compact
    form and field order: JSON numbers only in the forms whose float cast is exact and that
    `parse_metric` reads as numbers; ranges are checked afterwards as for the seed line."""
    envelope_tail: re.Pattern[bytes]


@cache
def shapes(metric_fields: tuple[str, ...]) -> Shapes:
    line = _seed_line_patterns(metric_fields)[1].pattern
    keys = tuple(re.findall(r"(?:^|, )([a-z_]+): ", line))
    if keys != ("id", *metric_fields, "ts"):
        raise AssertionError(f"the seed-line pattern has keys {keys}, expected id, {metric_fields}, ts")
    payload = (
        f'"id":{_JSON_ID}' + "".join(f',"{key}":{_JSON_PERCENT}' for key in metric_fields) + f'(?:,"ts":{_JSON_TS})?'
    )
    tail = re.compile(re.escape(_PAYLOAD_START) + payload.encode() + rb"\}\}\Z")
    return Shapes(f"^{line}$", keys, f"^{payload}}}}}$", tail)


SEED_LINE_PATTERN = shapes(METRIC_FIELDS).seed_line_pattern
"""The seed line of the metric fields at import, for tests."""
SEED_KEYS = shapes(METRIC_FIELDS).seed_keys


@dataclass(frozen=True)
class MetricColumns:
    """Valid metrics of one topic, column by column: `metrics` holds one float array per name of
    parsing.METRIC_FIELDS, in that order; `event_time_us` is UTC epoch microseconds."""

    topic: str
    partition: np.ndarray
    offset: np.ndarray
    server_id: np.ndarray
    metrics: dict[str, np.ndarray]
    event_time_us: np.ndarray

    def __len__(self) -> int:
        return len(self.offset)

    @classmethod
    def empty(cls, topic: str) -> MetricColumns:
        ints, floats = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(topic, ints, ints, ints, dict.fromkeys(parsing.METRIC_FIELDS, floats), ints)

    @classmethod
    def concat(cls, topic: str, parts: Sequence[MetricColumns]) -> MetricColumns:
        if not parts:
            return cls.empty(topic)
        if len(parts) == 1:
            return parts[0]

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(part, name) for part in parts])

        return cls(
            topic,
            joined("partition"),
            joined("offset"),
            joined("server_id"),
            {key: np.concatenate([part.metrics[key] for part in parts]) for key in parsing.METRIC_FIELDS},
            joined("event_time_us"),
        )

    @classmethod
    def from_rows(cls, topic: str, rows: Sequence[Mapping[str, Any]]) -> MetricColumns:
        """Row dicts (`kafka_topic`, `kafka_partition`, `kafka_offset`, `server_id`, the metric
        fields, `event_time`)."""
        strays = {row["kafka_topic"] for row in rows} - {topic}
        if strays:
            raise ValueError(f"rows of topics {sorted(strays)} given with a chunk of topic {topic!r}")
        return cls(
            topic,
            np.array([row["kafka_partition"] for row in rows], np.int64),
            np.array([row["kafka_offset"] for row in rows], np.int64),
            np.array([row["server_id"] for row in rows], np.int64),
            {key: np.array([row[key] for row in rows], np.float64) for key in parsing.METRIC_FIELDS},
            np.array([datetime_to_us(row["event_time"]) for row in rows], np.int64),
        )

    def take(self, keep: np.ndarray) -> MetricColumns:
        """The rows where `keep` (a boolean array), in order."""
        return MetricColumns(
            self.topic,
            self.partition[keep],
            self.offset[keep],
            self.server_id[keep],
            {key: values[keep] for key, values in self.metrics.items()},
            self.event_time_us[keep],
        )

    def event_times(self) -> list[datetime]:
        """Aware UTC datetimes, for writers that bind Python objects."""
        return [EPOCH + timedelta(microseconds=us) for us in self.event_time_us.tolist()]


@dataclass(frozen=True)
class ParsedValues:
    """The outcome for each value of a batch: `valid[i]` says whether row i of the arrays is a record;
    the others are in `dead_letters` as (index, reason), in order. `metrics` as in MetricColumns."""

    valid: np.ndarray
    server_id: np.ndarray
    metrics: dict[str, np.ndarray]
    event_time_us: np.ndarray
    dead_letters: list[tuple[int, str]]

    def outcome(self, index: int) -> MetricRecord | DeadLetter:
        """The value at `index` as `parse_metric` would return it (for tests and diagnostics)."""
        if not self.valid[index]:
            return DeadLetter(dict(self.dead_letters)[index])
        percents = [float(self.metrics[key][index]) for key in parsing.METRIC_FIELDS]
        event_time = EPOCH + timedelta(microseconds=int(self.event_time_us[index]))
        return MetricRecord(int(self.server_id[index]), *percents, event_time=event_time)

    def columns(self, topic: str, partition: np.ndarray, offset: np.ndarray, keep: np.ndarray) -> MetricColumns:
        """The rows where `keep`, with their Kafka positions, as a chunk's columns."""
        return MetricColumns(topic, partition, offset, self.server_id, self.metrics, self.event_time_us).take(keep)


def datetime_to_us(moment: datetime) -> int:
    """UTC epoch microseconds of an aware datetime, exactly (no float on the way)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r} given as an event time; attach a time zone")
    return (moment - EPOCH) // _ONE_US


def parse_values(values: Sequence[bytes | None], record_time_us: np.ndarray) -> ParsedValues:
    """Parse a batch of metrics values; `record_time_us` is each message's Kafka record timestamp
    (epoch microseconds), the event time of a value without `ts`."""
    count = len(values)
    server_id = np.zeros(count, np.int64)
    percents = {key: np.zeros(count, np.float64) for key in parsing.METRIC_FIELDS}
    event_time_us = np.array(record_time_us, np.int64, copy=True)
    fast = _fast_path(values, record_time_us, server_id, percents, event_time_us)
    valid = fast.copy()
    dead_letters: list[tuple[int, str]] = []
    for index in np.flatnonzero(~fast).tolist():
        parsed = parse_metric(values[index], EPOCH + timedelta(microseconds=int(record_time_us[index])))
        if isinstance(parsed, DeadLetter):
            dead_letters.append((index, parsed.reason))
            continue
        valid[index] = True
        server_id[index] = parsed.server_id
        for key in parsing.METRIC_FIELDS:
            percents[key][index] = getattr(parsed, key)
        event_time_us[index] = datetime_to_us(parsed.event_time)
    return ParsedValues(valid, server_id, percents, event_time_us, dead_letters)


def _fast_path(
    values: Sequence[bytes | None],
    record_time_us: np.ndarray,
    server_id: np.ndarray,
    percents: dict[str, np.ndarray],
    event_time_us: np.ndarray,
) -> np.ndarray:
    """Fill the arrays for the values of a known shape whose numbers are in range; True where that
    worked. The shapes: the seed line, then Connect's JSON envelope (`_envelope_prefix`)."""
    count = len(values)
    fast = np.zeros(count, bool)
    if count == 0:
        return fast
    binary = binary_array(values)
    shape = shapes(parsing.METRIC_FIELDS)
    hit = numpy_bools(pc.match_substring_regex(binary, shape.seed_line_pattern))
    batches = [(hit, pc.filter(binary, arrow_bools(hit)), ", ", ": ")]
    prefix = _envelope_prefix(values, hit, shape)
    if prefix is not None:
        starts = numpy_bools(pc.starts_with(binary, prefix))
        rest = pc.binary_slice(pc.filter(binary, arrow_bools(starts)), len(prefix), 2**31 - 1)
        tail_ok = numpy_bools(pc.match_substring_regex(rest, shape.envelope_tail_pattern))
        candidates = np.flatnonzero(starts)
        json_hit = np.zeros(count, bool)
        json_hit[candidates[tail_ok]] = True
        batches.append((json_hit, pc.binary_slice(pc.filter(rest, arrow_bools(tail_ok)), 0, -2), ",", '":'))
    for rows_hit, texts, separator, after_key in batches:
        rows = np.flatnonzero(rows_hit)
        if len(rows) == 0:
            continue
        ids, numbers, has_ts, ts_ms = _columns(texts.cast(pa.string()), separator, after_key, shape.seed_keys)
        ok = _fast_path_ok(ids, numbers, has_ts, ts_ms, record_time_us[rows])
        rows = rows[ok]
        server_id[rows] = ids[ok]
        for key in parsing.METRIC_FIELDS:
            percents[key][rows] = numbers[key][ok]
        event_time_us[rows] = np.where(has_ts[ok], ts_ms[ok] * 1000, event_time_us[rows])
        fast[rows] = True
    return fast


def binary_array(values: Sequence[bytes | None]) -> pa.Array:
    """The values as an Arrow binary array, from one joined buffer and its offsets.

    This and the other converters below build Arrow arrays from buffers: pyarrow's own conversions
    of Python lists and numpy arrays import pandas on first use (0.3 s and tens of MiB in a run
    process that has no other use for it). A batch with a value of None (a tombstone) still goes
    through `pa.array`.
    """
    try:
        lengths = np.fromiter(map(len, values), np.int64, len(values))  # type: ignore[arg-type]
    except TypeError:
        return pa.array(values, pa.binary())
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    kind, width = (pa.binary(), np.int32) if offsets[-1] < 2**31 else (pa.large_binary(), np.int64)
    data = b"".join(values)  # type: ignore[arg-type]
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(offsets.astype(width)), pa.py_buffer(data)])


def arrow_ints(values: np.ndarray) -> pa.Array:
    """An int64 numpy array as an Arrow array sharing its memory (see `binary_array`)."""
    values = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def arrow_bools(mask: np.ndarray) -> pa.Array:
    """A numpy boolean array as an Arrow boolean array (see `binary_array`)."""
    packed = np.packbits(np.asarray(mask, bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(packed)])


_NUMPY_TYPES = {pa.int32(): np.int32, pa.int64(): np.int64, pa.float64(): np.float64}


def numpy_numbers(numbers: pa.Array) -> np.ndarray:
    """A numeric Arrow array without nulls as numpy, sharing its memory (see `binary_array`)."""
    if numbers.null_count:
        raise ValueError(f"{numbers.null_count} nulls in an array of {numbers.type} that should have none")
    dtype = _NUMPY_TYPES[numbers.type]
    return np.frombuffer(numbers.buffers()[1], dtype)[numbers.offset : numbers.offset + len(numbers)]


def numpy_bools(matched: pa.Array) -> np.ndarray:
    """An Arrow boolean array as numpy, False where null (a value of None), from its bitmaps (see
    `binary_array`: pyarrow's `to_numpy` and `fill_null` of booleans import pandas)."""
    count, offset = len(matched), matched.offset
    if count == 0:
        return np.zeros(0, bool)
    validity, bits = matched.buffers()

    def unpack(buffer: pa.Buffer) -> np.ndarray:
        unpacked = np.unpackbits(np.frombuffer(buffer, np.uint8), bitorder="little")
        return unpacked[offset : offset + count].astype(bool)

    values = unpack(bits)
    return values & unpack(validity) if validity is not None and matched.null_count else values


def _columns(
    texts: pa.Array, separator: str, after_key: str, seed_keys: tuple[str, ...]
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Values already matched against a shape's pattern, cut at `separator`: each part is a key of
    `seed_keys` in order, `after_key` and its number (the key's own quote, if any, is counted in)."""
    parts = pc.split_pattern(texts, separator)
    lengths = numpy_numbers(pc.list_value_length(parts))
    first = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    flat = pc.list_flatten(parts)
    skip = len(after_key) + (1 if after_key.startswith('"') else 0)
    numbers_text = {
        key: pc.utf8_slice_codeunits(pc.take(flat, arrow_ints(first + k)), len(key) + skip)
        for k, key in enumerate(seed_keys[:-1])
    }
    ids = numpy_numbers(numbers_text["id"].cast(pa.int64()))
    numbers = {key: numpy_numbers(numbers_text[key].cast(pa.float64())) for key in parsing.METRIC_FIELDS}
    has_ts = lengths == len(seed_keys)
    ts_ms = np.zeros(len(lengths), np.int64)
    if has_ts.any():
        ts_text = pc.take(flat, arrow_ints(first[has_ts] + len(seed_keys) - 1))
        ts_ms[has_ts] = numpy_numbers(pc.utf8_slice_codeunits(ts_text, len("ts") + skip).cast(pa.int64()))
    return ids, numbers, has_ts, ts_ms


def _envelope_prefix(values: Sequence[bytes | None], seed_hit: np.ndarray, shape: Shapes) -> bytes | None:
    """`{"schema":<S>,"payload":{` of the batch's first Connect envelope in the compact form
    JsonConverter writes, if <S> is valid JSON on its own.

    Then any value that is this prefix followed by a payload matching `shape.envelope_tail_pattern` is a
    whole, valid JSON document of exactly the keys schema and payload, whose payload
    `parse_metric` reads as the same numbers; other envelopes take the per-message path.
    """
    tries = 0
    for index in np.flatnonzero(~seed_hit).tolist():
        value = values[index]
        if value is None or not value.startswith(_ENVELOPE_START):
            continue
        tries += 1
        if tries > _ENVELOPE_TRIES:
            return None
        tail = shape.envelope_tail.search(value)
        if tail is None:
            continue
        schema = value[len(_ENVELOPE_START) : tail.start()]
        try:
            json.loads(schema.decode("utf-8"))
        except (ValueError, RecursionError):
            continue
        return value[: tail.start()] + _PAYLOAD_START
    return None


def _fast_path_ok(
    ids: np.ndarray,
    numbers: dict[str, np.ndarray],
    has_ts: np.ndarray,
    ts_ms: np.ndarray,
    record_time_us: np.ndarray,
) -> np.ndarray:
    """The range checks of `parse_metric`'s seed-line path, as arrays. Matched lines failing them
    are not rejected here: `parse_metric` gives their record or reason. `record_time_us` is there
    for rules that compare the event time with the record time."""
    ok = ids <= MAX_SERVER_ID
    for key in parsing.METRIC_FIELDS:
        ok &= numbers[key] <= PERCENT_MAX
    ok &= ~has_ts | ((ts_ms >= MIN_EPOCH_MS) & (ts_ms <= MAX_EPOCH_MS))
    return ok


def record_times_us(pairs: np.ndarray, not_available: int) -> np.ndarray:
    """Kafka `(kind, ms)` timestamps (`timestamp_pairs`) as epoch microseconds; `now` where the broker gave none."""
    stamps = pairs[:, 1] * 1000
    missing = pairs[:, 0] == not_available
    if missing.any():
        stamps[missing] = datetime_to_us(datetime.now(UTC))
    return stamps


def timestamp_pairs(timestamps: Sequence[tuple[int, int]]) -> np.ndarray:
    """Kafka `(kind, ms)` timestamps as an (n, 2) array, through one iterator in C (twice as fast
    as `np.array` of the tuples)."""
    return np.fromiter(chain.from_iterable(timestamps), np.int64, 2 * len(timestamps)).reshape(-1, 2)
