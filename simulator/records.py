"""The records that flow from generation to the sender and into the ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Stream(Enum):
    """Which of the two topics a message belongs to; the sender maps it to a topic name."""

    METRICS = "metrics"
    LOGS = "logs"


class Malformation(str, Enum):
    """How a message was deliberately broken; every kind is a dead letter for sml's parsers."""

    TRUNCATED = "truncated"
    WRONG_TYPES = "wrong_types"
    OUT_OF_RANGE = "out_of_range"
    NOT_UTF8 = "not_utf8"
    EMPTY = "empty"


@dataclass(slots=True)
class Message:
    """One Kafka record plus the facts the ground truth counts once the broker acknowledges it.

    `clock_ms` is when the simulator clock emits it; `event_ms` is the time written into it,
    behind the clock by `lateness_ms` for late events, ahead of it by `skew_ms` for events from a
    server whose clock is wrong. For log lines `event_ms` is whole seconds, because the access-log
    date has second resolution.
    """

    stream: Stream
    key: bytes
    value: bytes
    clock_ms: int
    event_ms: int
    server_id: int
    method: str = ""
    status: int = 0
    lateness_ms: int = 0
    malformed: Malformation | None = None
    out_of_order: bool = False
    skew_ms: int = 0
