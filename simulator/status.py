"""What a person watching sees: a live status line on a terminal and a final summary."""

from __future__ import annotations

import time
from typing import TextIO

from simulator.sender import Sink

REFRESH_S = 0.5


class StatusLine:
    """`sent … acked … failed … rate …` redrawn in place; silent when the output is no TTY."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._live = out.isatty()
        self._started = time.monotonic()
        self._next = self._started
        self._last_sent = 0
        self._last_time = self._started

    def update(self, sink: Sink) -> None:
        if not self._live:
            return
        now = time.monotonic()
        if now < self._next:
            return
        rate = (sink.sent - self._last_sent) / max(now - self._last_time, 1e-9)
        self._last_sent, self._last_time, self._next = sink.sent, now, now + REFRESH_S
        self._out.write(
            f"\rsent {sink.sent:,}  acked {sink.acked:,}  failed {sink.failed:,}  rate {rate:,.0f} msg/s   "
        )
        self._out.flush()

    def finish(self) -> None:
        if self._live:
            self._out.write("\n")
            self._out.flush()
