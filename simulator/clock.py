"""Event time: the real clock paces the run; a simulated clock runs as fast as it can."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_start(text: str) -> int:
    """`--start` as epoch milliseconds: ISO-8601 (UTC when no offset is given) or `now`."""
    if text == "now":
        return now_ms()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start {text!r} is not ISO-8601; use e.g. 2026-11-25T16:00:00Z or 'now'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class Clock(Protocol):
    def due_in_s(self, clock_ms: int) -> float:
        """Seconds to wait before a message due at `clock_ms` may be sent (0 when it is due)."""
        ...


class RealClock:
    """Event time is wall time: each message waits until its moment comes."""

    def due_in_s(self, clock_ms: int) -> float:
        return max(0.0, (clock_ms - now_ms()) / 1000)


class SimulatedClock:
    """Event time starts at --start and jumps from event to event, so an hour takes seconds."""

    def due_in_s(self, clock_ms: int) -> float:
        return 0.0
