"""Pure: merge Spark's window counts into the stored log summary and decide what is final.

Each micro-batch brings the counts of its own lines per window (increments); `merge_increments`
turns them into the *absolute* counts a Spark `update`-mode aggregation would emit, with the
query's state (`StreamState`, what Spark's state store held) kept in the stored summary, and
merges those. Merging is idempotent per batch id (a replayed batch is skipped) and, beyond that,
monotone: a count never goes down and a final window never changes. That makes a replay harmless
even when the batch-id bookkeeping is lost (see `merge_batch`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sml_assets.parsing import EPOCH

WINDOW = timedelta(minutes=5)
WATERMARK_DELAY = timedelta(minutes=10)
CATEGORIES = ("GET_success", "GET_failure", "POST_success", "POST_failure")
CSV_COLUMNS = ("window_start", "window_end", *CATEGORIES, "total", "final")
STATE_VERSION = 1


class SummaryShapeError(ValueError):
    """The stored summary was counted with another window size or watermark delay than now."""


def shape_tag() -> str:
    """WINDOW and WATERMARK_DELAY in a checkpoint id: a checkpoint counted with others is not resumed."""
    return f"w{int(WINDOW.total_seconds())}s-d{int(WATERMARK_DELAY.total_seconds())}s"


@dataclass(frozen=True)
class Counts:
    """Requests in one window by category; the total is derived, so it cannot disagree."""

    GET_success: int = 0
    GET_failure: int = 0
    POST_success: int = 0
    POST_failure: int = 0

    def __post_init__(self) -> None:
        for name in CATEGORIES:
            if getattr(self, name) < 0:
                raise ValueError(f"count {name}={getattr(self, name)} is negative")

    @property
    def total(self) -> int:
        return self.GET_success + self.GET_failure + self.POST_success + self.POST_failure

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.GET_success, self.GET_failure, self.POST_success, self.POST_failure)

    def plus(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def at_least(self, other: Counts) -> Counts:
        """Category-wise maximum: the truth of a window only grows, so neither side is lost."""
        return Counts(*(max(a, b) for a, b in zip(self.as_tuple(), other.as_tuple())))


@dataclass(frozen=True)
class WindowUpdate:
    """One row of a Spark micro-batch: a window's absolute counts and its newest event time."""

    start: datetime
    counts: Counts
    max_event_time: datetime

    def __post_init__(self) -> None:
        check_window_start(self.start)
        if not self.start <= self.max_event_time < self.end:
            raise ValueError(
                f"max_event_time {iso(self.max_event_time)} lies outside window [{iso(self.start)}, {iso(self.end)})"
            )

    @property
    def end(self) -> datetime:
        return self.start + WINDOW


@dataclass(frozen=True)
class BatchUpdate:
    """Everything one foreachBatch call saw, tagged with the query and batch it came from."""

    query_id: str
    batch_id: int
    windows: tuple[WindowUpdate, ...]


@dataclass(frozen=True)
class StreamState:
    """What Spark's state store held for the window aggregation of one query (one checkpoint):
    that query's own counts of the windows its watermark has not passed, and its newest event time.

    Kept in the stored summary (written with it, atomically), so a run is one stateless Spark
    query whose batches bring increments; `merge_increments` applies the watermark to them exactly
    as Spark's stateful aggregation did."""

    windows: Mapping[datetime, Counts] = field(default_factory=dict)
    max_event_time: datetime | None = None

    @property
    def watermark(self) -> datetime | None:
        return None if self.max_event_time is None else self.max_event_time - WATERMARK_DELAY


@dataclass(frozen=True)
class Summary:
    """The stored summary: counts per window start, the newest event time seen, the last merged
    (query id, batch id) so a replayed batch is recognised, and that query's `StreamState`."""

    windows: Mapping[datetime, Counts] = field(default_factory=dict)
    max_event_time: datetime | None = None
    query_id: str | None = None
    last_batch_id: int = -1
    stream: StreamState = field(default_factory=StreamState)

    @property
    def watermark(self) -> datetime | None:
        """Spark's watermark for the next batch: newest event time minus the 10-minute delay."""
        return None if self.max_event_time is None else self.max_event_time - WATERMARK_DELAY

    def is_final(self, start: datetime) -> bool:
        """Final once the watermark has reached the window's end: Spark drops later rows for it."""
        watermark = self.watermark
        return watermark is not None and start + WINDOW <= watermark


@dataclass(frozen=True)
class MergeResult:
    """The merged summary and what the batch changed (for run metadata)."""

    summary: Summary
    replayed: bool
    updated: tuple[datetime, ...]
    ignored: tuple[datetime, ...]
    counted: int
    """Events this batch added to the windows (sum of total increases): with the lines Spark
    parsed, it gives the exact number of events dropped as late."""
    late: int = 0
    """Events of the batch whose window the query's watermark had already passed (`merge_increments`)."""


@dataclass(frozen=True)
class SummaryRow:
    """One CSV row (DESIGN.md section 3)."""

    window_start: str
    window_end: str
    GET_success: int
    GET_failure: int
    POST_success: int
    POST_failure: int
    total: int
    final: bool


def check_window_start(start: datetime) -> None:
    """Windows are 5-minute tumbling windows aligned to the epoch, in UTC."""
    if start.tzinfo is None or start.utcoffset() != timedelta(0):
        raise ValueError(f"window start {start!r} is not a UTC datetime")
    if (start - EPOCH) % WINDOW:
        raise ValueError(f"window start {iso(start)} is not aligned to {WINDOW}")


def merge_batch(summary: Summary, batch: BatchUpdate) -> MergeResult:
    """Merge one micro-batch; the same batch merged twice changes nothing.

    - a batch of the stored query with id <= the last merged one is a replay: skipped;
    - a window whose end is at or before the stored watermark is not touched: either it is final,
      or Spark counted it only because its state was rebuilt from scratch (lost checkpoint);
    - otherwise a window takes the category-wise maximum of stored and new counts.
    A new query id (a fresh checkpoint) starts a new batch sequence.
    """
    if batch.query_id == summary.query_id and batch.batch_id <= summary.last_batch_id:
        return MergeResult(summary=summary, replayed=True, updated=(), ignored=(), counted=0)
    watermark = summary.watermark
    windows = dict(summary.windows)
    updated: list[datetime] = []
    ignored: list[datetime] = []
    counted = 0
    for update in batch.windows:
        if watermark is not None and update.end <= watermark:
            ignored.append(update.start)
            continue
        before = windows.get(update.start)
        after = update.counts if before is None else before.at_least(update.counts)
        if after != before:
            windows[update.start] = after
            updated.append(update.start)
            counted += after.total - (0 if before is None else before.total)
    newest = [u.max_event_time for u in batch.windows]
    if summary.max_event_time is not None:
        newest.append(summary.max_event_time)
    merged = Summary(
        windows=windows,
        max_event_time=max(newest) if newest else None,
        query_id=batch.query_id,
        last_batch_id=batch.batch_id,
    )
    return MergeResult(
        summary=merged,
        replayed=False,
        updated=tuple(sorted(set(updated))),
        ignored=tuple(ignored),
        counted=counted,
    )


def merge_increments(summary: Summary, batch: BatchUpdate) -> MergeResult:
    """Merge one micro-batch of *increments* (this batch's lines per window) like Spark's
    update-mode aggregation with a 10-minute watermark followed by `merge_batch`.

    The query's watermark is its newest event time of the earlier batches minus the delay; an
    increment for a window whose end is at or before it is dropped as late (Spark's rule for
    window aggregations). The others are added to the query's state and merged as absolute counts.
    Windows the new watermark has passed leave the state (Spark evicts them too). A batch of
    another query (a fresh checkpoint) starts from an empty state, as Spark's would.
    """
    if batch.query_id == summary.query_id and batch.batch_id <= summary.last_batch_id:
        return MergeResult(summary=summary, replayed=True, updated=(), ignored=(), counted=0)
    stream = summary.stream if batch.query_id == summary.query_id else StreamState()
    watermark = stream.watermark
    state = dict(stream.windows)
    absolute: list[WindowUpdate] = []
    late = 0
    for increment in batch.windows:
        if watermark is not None and increment.end <= watermark:
            late += increment.counts.total
            continue
        total = state.get(increment.start, Counts()).plus(increment.counts)
        state[increment.start] = total
        absolute.append(WindowUpdate(increment.start, total, increment.max_event_time))
    newest = [increment.max_event_time for increment in batch.windows]
    if stream.max_event_time is not None:
        newest.append(stream.max_event_time)
    advanced = StreamState(max_event_time=max(newest) if newest else None)
    horizon = advanced.watermark
    advanced = replace(
        advanced,
        windows={start: counts for start, counts in state.items() if horizon is None or start + WINDOW > horizon},
    )
    result = merge_batch(summary, BatchUpdate(batch.query_id, batch.batch_id, tuple(absolute)))
    return replace(result, summary=replace(result.summary, stream=advanced), late=late)


def newly_final(before: Summary, after: Summary) -> tuple[datetime, ...]:
    """Windows that became final between two versions of the summary."""
    return tuple(
        start
        for start in sorted(after.windows)
        if after.is_final(start) and not (start in before.windows and before.is_final(start))
    )


def rows(summary: Summary) -> list[SummaryRow]:
    """The CSV rows: one per window, sorted by start, unique by construction."""
    return [
        SummaryRow(
            window_start=iso(start),
            window_end=iso(start + WINDOW),
            GET_success=counts.GET_success,
            GET_failure=counts.GET_failure,
            POST_success=counts.POST_success,
            POST_failure=counts.POST_failure,
            total=counts.total,
            final=summary.is_final(start),
        )
        for start, counts in sorted(summary.windows.items())
    ]


def render_csv(summary_rows: Iterable[SummaryRow]) -> str:
    """`output_log_summary.csv` as text; `final` is written `true`/`false`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in summary_rows:
        writer.writerow(
            [
                row.window_start,
                row.window_end,
                row.GET_success,
                row.GET_failure,
                row.POST_success,
                row.POST_failure,
                row.total,
                str(row.final).lower(),
            ]
        )
    return out.getvalue()


def to_json(summary: Summary) -> str:
    """The stored form of the summary (the CSV cannot hold the watermark or the batch id)."""
    state: dict[str, Any] = {
        "version": STATE_VERSION,
        "window_seconds": int(WINDOW.total_seconds()),
        "watermark_delay_seconds": int(WATERMARK_DELAY.total_seconds()),
        "query_id": summary.query_id,
        "last_batch_id": summary.last_batch_id,
        "max_event_time": None if summary.max_event_time is None else iso(summary.max_event_time),
        "windows": _windows_json(summary.windows),
        "stream": {
            "max_event_time": None if summary.stream.max_event_time is None else iso(summary.stream.max_event_time),
            "windows": _windows_json(summary.stream.windows),
        },
    }
    return json.dumps(state, indent=1) + "\n"


def _windows_json(windows: Mapping[datetime, Counts]) -> list[dict[str, Any]]:
    return [
        {"window_start": iso(start), **dict(zip(CATEGORIES, counts.as_tuple()))}
        for start, counts in sorted(windows.items())
    ]


def _windows_from_json(items: list[dict[str, Any]]) -> dict[datetime, Counts]:
    windows: dict[datetime, Counts] = {}
    for item in items:
        start = parse_iso(item["window_start"])
        check_window_start(start)
        windows[start] = Counts(*(int(item[name]) for name in CATEGORIES))
    return windows


def from_json(text: str) -> Summary:
    """Inverse of `to_json`; an unknown version, or other windows than WINDOW and WATERMARK_DELAY
    (a state without them predates them and was counted with 5 and 10 minutes), is an error
    rather than a silent reset.

    A state written before `StreamState` existed has no "stream": it belongs to a checkpoint of
    the two-query layout, which `logs_stream.open_checkpoint` does not resume (a fresh query
    replays the topic into an empty state, merged under `merge_batch`'s rules)."""
    state = json.loads(text)
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"summary state version {state.get('version')!r} is not {STATE_VERSION}")
    stored = (
        timedelta(seconds=int(state.get("window_seconds", 300))),
        timedelta(seconds=int(state.get("watermark_delay_seconds", 600))),
    )
    if stored != (WINDOW, WATERMARK_DELAY):
        raise SummaryShapeError(
            f"the log summary was counted with WINDOW = {_minutes(stored[0])} and WATERMARK_DELAY = "
            f"{_minutes(stored[1])}, but sml_assets/windows.py now sets WINDOW = {_minutes(WINDOW)} "
            f"and WATERMARK_DELAY = {_minutes(WATERMARK_DELAY)}"
        )
    raw_max = state["max_event_time"]
    stream = state.get("stream") or {}
    raw_stream_max = stream.get("max_event_time")
    return Summary(
        windows=_windows_from_json(state["windows"]),
        max_event_time=None if raw_max is None else parse_iso(raw_max),
        query_id=state["query_id"],
        last_batch_id=int(state["last_batch_id"]),
        stream=StreamState(
            windows=_windows_from_json(stream.get("windows", [])),
            max_event_time=None if raw_stream_max is None else parse_iso(raw_stream_max),
        ),
    )


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g} minutes"


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a `Z`, second precision (log dates carry whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def from_epoch_seconds(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)
