"""The ground truth: what the broker acknowledged, counted the way sml's outputs count it.

Only acknowledged messages are counted (`delivered`), so a test can compare sml's table, dead
letters and CSV to this file exactly, whatever failed on the way. An event dated ahead of its
record timestamp by more than sml's tolerance (SML_MAX_CLOCK_SKEW) is counted as sml counts it:
refused (`skewed`: a dead letter or a reject), never in a window.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulator.records import Malformation, Message, Stream

WINDOW_S = 300
"""log_summary's tumbling window: five minutes, aligned to the epoch."""
WATERMARK_S = 600
"""log_summary's watermark: events more than ten minutes behind may be dropped."""
CATEGORIES = ("GET_success", "GET_failure", "POST_success", "POST_failure")
DEFAULT_MAX_CLOCK_SKEW_S = 60
"""sml's default SML_MAX_CLOCK_SKEW (sml_assets.parsing.DEFAULT_MAX_CLOCK_SKEW_S)."""


def iso_utc(epoch_ms: int) -> str:
    """`2026-11-25T16:00:03Z`, with milliseconds only when there are some."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    if epoch_ms % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def window_start_ms(event_ms: int) -> int:
    return event_ms - event_ms % (WINDOW_S * 1000)


def category(method: str, status: int) -> int:
    """Index into CATEGORIES: success when the status is 2xx, failure otherwise."""
    return (2 if method == "POST" else 0) + (0 if 200 <= status < 300 else 1)


@dataclass(frozen=True)
class LateEvent:
    """A valid, acknowledged event whose time is behind the simulator clock when it was sent."""

    stream: str
    server_id: int
    key: str
    event_time: str
    clock_time: str
    lateness_s: float
    beyond_watermark: bool
    window_start: str | None


@dataclass
class _StreamCounts:
    valid: int = 0
    failed: int = 0
    late: int = 0
    late_beyond_watermark: int = 0
    out_of_order: int = 0
    skewed: int = 0
    skewed_accepted: int = 0
    skewed_servers: Counter[int] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)


class Truth:
    """Accumulates acknowledged messages; `to_dict` is the `--truth` JSON document."""

    def __init__(self, seed: int, topics: dict[Stream, str], max_clock_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S) -> None:
        self._seed = seed
        self._max_clock_skew_ms = max_clock_skew_s * 1000
        self._topics = topics
        self._metrics = _StreamCounts()
        self._logs = _StreamCounts()
        self._counts = {Stream.METRICS: self._metrics, Stream.LOGS: self._logs}
        self._valid_per_server: Counter[int] = Counter()
        self._windows: dict[int, list[int]] = {}
        self._windows_within_watermark: dict[int, list[int]] = {}
        self._late: list[LateEvent] = []

    @property
    def acked(self) -> int:
        return sum(c.valid + c.skewed + sum(c.malformed.values()) for c in self._counts.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self._counts.values())

    def failed_delivery(self, message: Message) -> None:
        self._counts[message.stream].failed += 1

    def delivered(self, message: Message, record_ms: int | None = None) -> None:
        """`record_ms` is the Kafka record timestamp the broker acknowledged (default: the clock)."""
        metrics = message.stream is Stream.METRICS
        counts = self._metrics if metrics else self._logs
        if message.out_of_order:
            counts.out_of_order += 1
        if message.malformed is not None:
            counts.malformed[message.malformed.value] += 1
            return
        if message.skew_ms:
            ahead_ms = message.event_ms - (message.clock_ms if record_ms is None else record_ms)
            if ahead_ms > self._max_clock_skew_ms:
                counts.skewed += 1
                counts.skewed_servers[message.server_id] += 1
                return
            counts.skewed_accepted += 1
        counts.valid += 1
        beyond_watermark = False
        if message.lateness_ms:
            lateness_ms = message.clock_ms - message.event_ms
            beyond_watermark = lateness_ms > WATERMARK_S * 1000
            counts.late += 1
            counts.late_beyond_watermark += beyond_watermark
            self._late.append(self._late_event(message, lateness_ms, beyond_watermark))
        if metrics:
            self._valid_per_server[message.server_id] += 1
            return
        window = window_start_ms(message.event_ms)
        index = category(message.method, message.status)
        row = self._windows.get(window)
        if row is None:
            row = self._windows[window] = [0, 0, 0, 0]
        row[index] += 1
        if not beyond_watermark:
            self._windows_within_watermark.setdefault(window, [0, 0, 0, 0])[index] += 1

    @staticmethod
    def _late_event(message: Message, lateness_ms: int, beyond_watermark: bool) -> LateEvent:
        return LateEvent(
            stream=message.stream.value,
            server_id=message.server_id,
            key=message.key.decode(),
            event_time=iso_utc(message.event_ms),
            clock_time=iso_utc(message.clock_ms),
            lateness_s=lateness_ms / 1000,
            beyond_watermark=beyond_watermark,
            window_start=(iso_utc(window_start_ms(message.event_ms)) if message.stream is Stream.LOGS else None),
        )

    def to_dict(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        metrics, logs = self._counts[Stream.METRICS], self._counts[Stream.LOGS]
        return {
            "seed": self._seed,
            "options": options or {},
            "topics": {stream.value: topic for stream, topic in self._topics.items()},
            "acked": self.acked,
            "failed": self.failed,
            "window_seconds": WINDOW_S,
            "watermark_seconds": WATERMARK_S,
            "max_clock_skew_seconds": self._max_clock_skew_ms // 1000,
            "metrics": {
                **_stream_summary(metrics),
                "valid_per_server": {str(server): n for server, n in sorted(self._valid_per_server.items())},
            },
            "logs": {
                **_stream_summary(logs),
                "windows": _windows(self._windows),
                "windows_within_watermark": _windows(self._windows_within_watermark),
            },
            "late_events": [asdict(event) for event in self._late],
        }

    def write(self, path: Path, options: dict[str, Any] | None = None) -> None:
        """Write atomically (temp file, then rename) so a reader never sees half a document."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(self.to_dict(options), out, indent=1)
                out.write("\n")
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise


def _stream_summary(counts: _StreamCounts) -> dict[str, Any]:
    return {
        "valid": counts.valid,
        "malformed": {kind.value: counts.malformed[kind.value] for kind in Malformation},
        "malformed_total": sum(counts.malformed.values()),
        "failed": counts.failed,
        "late": counts.late,
        "late_beyond_watermark": counts.late_beyond_watermark,
        "out_of_order": counts.out_of_order,
        "skewed": counts.skewed,
        "skewed_accepted": counts.skewed_accepted,
        "skewed_servers": {str(server): n for server, n in sorted(counts.skewed_servers.items())},
    }


def _windows(windows: dict[int, list[int]]) -> dict[str, dict[str, Any]]:
    return {
        iso_utc(start): {
            "window_end": iso_utc(start + WINDOW_S * 1000),
            **dict(zip(CATEGORIES, row)),
            "total": sum(row),
        }
        for start, row in sorted(windows.items())
    }
