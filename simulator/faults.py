"""Fault injection: malformed messages, late events, events from a clock set ahead (skewed) and
out-of-order delivery, each at a rate.

Every malformed kind breaks the documented grammar however a parser decodes the bytes (strictly,
or with replacement or ignored errors), so each one is unambiguously a dead letter downstream.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from random import Random

from simulator.fleet import Reading, render_metrics
from simulator.loadbalancer import Request, rfc1123, server_ip
from simulator.records import Malformation, Message

KINDS = tuple(Malformation)
INVALID_UTF8 = b"\xff\xfe\xfd"
MAX_DISPLACEMENT = 8
"""An out-of-order message is held back by 1..MAX_DISPLACEMENT positions."""

_WORDS = ("high", "unknown", "ok", "12%")


class Faults:
    """Decides, per message and reproducibly from the seed, which faults it carries."""

    def __init__(
        self,
        seed: int,
        malformed_rate: float,
        late_rate: float,
        max_lateness_s: float,
        out_of_order_rate: float,
        skewed_clock_rate: float = 0.0,
        max_skew_s: float = 0.0,
    ) -> None:
        self._malformed_rng = Random(f"{seed}/malformed")
        self._late_rng = Random(f"{seed}/late")
        self._order_rng = Random(f"{seed}/order")
        self._malformed_rate = malformed_rate
        self._late_rate = late_rate
        self._max_lateness_ms = int(max_lateness_s * 1000)
        self._out_of_order_rate = out_of_order_rate
        self._skew_rng = Random(f"{seed}/skew")
        self._skewed_clock_rate = skewed_clock_rate
        self._max_skew_ms = int(max_skew_s * 1000)

    def malformation(self) -> Malformation | None:
        if self._malformed_rate and self._malformed_rng.random() < self._malformed_rate:
            return self._malformed_rng.choice(KINDS)
        return None

    def lateness_ms(self) -> int:
        """How far behind the clock this event's time is; 0 for an on-time event."""
        if self._late_rate and self._late_rng.random() < self._late_rate:
            return self._late_rng.randint(min(1000, self._max_lateness_ms), self._max_lateness_ms)
        return 0

    def skew_ms(self) -> int:
        """How far ahead of the clock this event's time is (a server whose clock is wrong):
        max_skew/2 .. max_skew; 0 for an event from a correct clock."""
        if self._skewed_clock_rate and self._skew_rng.random() < self._skewed_clock_rate:
            return self._skew_rng.randint(self._max_skew_ms // 2, self._max_skew_ms)
        return 0

    def malformed_metrics(self, kind: Malformation, reading: Reading, ts_ms: int) -> bytes:
        rng = self._malformed_rng
        fields = {
            "id": str(reading.server_id),
            "cpu": f"{reading.cpu:.1f}",
            "mem": f"{reading.mem:.1f}",
            "disk": f"{reading.disk:.1f}",
        }
        if kind is Malformation.EMPTY:
            return b""
        if kind is Malformation.TRUNCATED:
            text = render_metrics(reading, ts_ms)
            return text[: rng.randrange(1, text.index(b", disk"))]
        if kind is Malformation.WRONG_TYPES:
            fields[rng.choice(tuple(fields))] = rng.choice(_WORDS)
        elif kind is Malformation.OUT_OF_RANGE:
            value = rng.uniform(100.5, 250.0) if rng.random() < 0.5 else rng.uniform(-50.0, -0.5)
            fields[rng.choice(("cpu", "mem", "disk"))] = f"{value:.1f}"
        body = ", ".join(f"{name}: {value}" for name, value in fields.items()).encode()
        if kind is Malformation.NOT_UTF8:
            name = rng.choice(("cpu", "mem", "disk")).encode()
            head, _, rest = body.partition(name + b": ")
            _, comma, tail = rest.partition(b",")
            body = head + name + b": " + INVALID_UTF8 + comma + tail
        return body + f", ts: {ts_ms}".encode()

    def malformed_log(self, kind: Malformation, request: Request, epoch_s: int) -> bytes:
        rng = self._malformed_rng
        date = rfc1123(epoch_s)
        status, size = str(request.status).encode(), str(request.size).encode()
        if kind is Malformation.EMPTY:
            return b""
        if kind is Malformation.WRONG_TYPES:
            if rng.random() < 0.5:
                status = rng.choice(("OK", "ERR", "2xx")).encode()
            else:
                size = rng.choice(("-", "big", "1.5k")).encode()
        elif kind is Malformation.OUT_OF_RANGE:
            day, clock = date[5:7], date[17:25]
            if rng.random() < 0.5:
                date = date.replace(f" {day} ", f" {rng.randint(32, 39)} ", 1)
            else:
                date = date.replace(clock, f"{rng.randint(24, 29)}{clock[2:]}", 1)
        elif kind is Malformation.NOT_UTF8:
            status = INVALID_UTF8
        head = f"{server_ip(request.server_id)} - {request.user} [{date}] {request.method} {request.path} "
        line = head.encode() + status + b" " + size
        if kind is Malformation.TRUNCATED:
            return line[: rng.randrange(1, len(head))]
        return line

    def reorder(self, messages: Iterable[Message]) -> Iterator[Message]:
        """Hold back a fraction of messages by 1..MAX_DISPLACEMENT positions, so later ones
        overtake them; at most MAX_DISPLACEMENT + 1 messages are ever held. Without reordering the
        messages pass through untouched (no generator in between: --burst sends every one)."""
        if not self._out_of_order_rate:
            return iter(messages)
        return self._reordered(messages)

    def _reordered(self, messages: Iterable[Message]) -> Iterator[Message]:
        rng = self._order_rng
        rate = self._out_of_order_rate
        held: list[tuple[float, int, Message]] = []
        for position, message in enumerate(messages):
            slot: float = position
            if rng.random() < rate:
                message.out_of_order = True
                slot = position + rng.randint(1, MAX_DISPLACEMENT) + 0.5
            heapq.heappush(held, (slot, position, message))
            while held and held[0][0] <= position:
                yield heapq.heappop(held)[2]
        while held:
            yield heapq.heappop(held)[2]
