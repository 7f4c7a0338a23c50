"""The send loop: pace messages by the clock, hand them to the sink, stop cleanly when asked."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from simulator.clock import Clock
from simulator.records import Message
from simulator.sender import DELIVERY_TIMEOUT_MS, Sink
from simulator.status import StatusLine

FLUSH_TIMEOUT_S = DELIVERY_TIMEOUT_MS / 1000 + 5
"""Every message is acknowledged or failed by then, so the final flush is bounded."""
MAX_NAP_S = 0.1


class StopRequest:
    """Set by SIGINT/SIGTERM; the loop checks it between messages and then flushes."""

    def __init__(self) -> None:
        self.requested: str | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        self.requested = signal.Signals(signum).name


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class RunResult:
    sent: int
    acked: int
    failed: int
    unflushed: int
    elapsed_s: float
    stopped_by: str | None


def run(messages: Iterable[Message], sink: Sink, clock: Clock, status: StatusLine, stop: StopRequest) -> RunResult:
    started = time.monotonic()
    try:
        for sent, message in enumerate(messages):
            wait = clock.due_in_s(message.clock_ms)
            while wait > 0 and stop.requested is None:
                sink.poll(min(wait, MAX_NAP_S))
                status.update(sink)
                wait = clock.due_in_s(message.clock_ms)
            if stop.requested is not None:
                break
            sink.send(message)
            if sent & 0xFF == 0:
                status.update(sink)
    except BrokenPipeError:
        stop.requested = "broken pipe"
    unflushed = sink.close(FLUSH_TIMEOUT_S)
    status.update(sink)
    status.finish()
    return RunResult(sink.sent, sink.acked, sink.failed, unflushed, time.monotonic() - started, stop.requested)
