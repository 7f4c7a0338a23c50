"""The whole traffic as a pure function of (seed, options): the fleet and the load balancer
interleaved on one clock, with faults applied. Tests use it directly, without Kafka."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from random import Random

from simulator.faults import Faults
from simulator.fleet import Fleet, render_metrics
from simulator.loadbalancer import LineRenderer, LoadBalancer
from simulator.records import Message, Stream


@dataclass(frozen=True)
class SimulationOptions:
    """What to generate; `start_ms` is the first event time (the simulated or the real start)."""

    start_ms: int
    seed: int
    servers: int = 10
    metrics_interval_s: float = 5.0
    log_rate: float = 20.0
    post_ratio: float = 0.3
    error_ratio: float = 0.1
    count: int | None = None
    duration_s: float | None = None
    malformed_rate: float = 0.0
    late_rate: float = 0.0
    max_lateness_s: float = 900.0
    out_of_order_rate: float = 0.0
    skewed_clock_rate: float = 0.0
    max_skew_s: float = 31_536_000.0

    def __post_init__(self) -> None:
        problems = []
        if self.servers < 1:
            problems.append(f"--servers must be at least 1, got {self.servers}")
        if self.metrics_interval_s <= 0:
            problems.append(f"--metrics-interval must be positive, got {self.metrics_interval_s}")
        if self.log_rate < 0:
            problems.append(f"--log-rate must not be negative, got {self.log_rate}")
        rates = {
            "--post-ratio": self.post_ratio,
            "--error-ratio": self.error_ratio,
            "--malformed-rate": self.malformed_rate,
            "--late-rate": self.late_rate,
            "--out-of-order": self.out_of_order_rate,
            "--skewed-clock-rate": self.skewed_clock_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                problems.append(f"{name} is a fraction in [0, 1], got {rate}")
        if self.late_rate and self.max_lateness_s < 1:
            problems.append(f"--max-lateness must be at least 1 second, got {self.max_lateness_s}")
        if self.skewed_clock_rate and self.max_skew_s < 2:
            problems.append(f"--max-skew must be at least 2 seconds, got {self.max_skew_s}")
        if self.count is not None and self.count < 0:
            problems.append(f"--count must not be negative, got {self.count}")
        if self.duration_s is not None and self.duration_s < 0:
            problems.append(f"--duration must not be negative, got {self.duration_s}")
        if problems:
            raise ValueError("; ".join(problems))


def random_seed() -> int:
    """A fresh seed for runs that did not ask for one; reported so the run can be replayed."""
    return Random().randrange(2**32)


def generate(options: SimulationOptions) -> Iterator[Message]:
    """Every message of the run in emission order; stops after `count` messages or `duration_s`."""
    faults = Faults(
        options.seed,
        options.malformed_rate,
        options.late_rate,
        options.max_lateness_s,
        options.out_of_order_rate,
        options.skewed_clock_rate,
        options.max_skew_s,
    )
    messages = faults.reorder(_scheduled(options, faults))
    return messages if options.count is None else islice(messages, options.count)


def _scheduled(options: SimulationOptions, faults: Faults) -> Iterator[Message]:
    """Metrics every interval per server (each with its own phase) and Poisson-spaced requests."""
    fleet = Fleet(options.servers, options.seed)
    balancer = LoadBalancer(options.servers, options.post_ratio, options.error_ratio, options.seed)
    renderer = LineRenderer()
    interval_ms = options.metrics_interval_s * 1000.0
    end_ms = float("inf") if options.duration_s is None else options.start_ms + options.duration_s * 1000
    phases = Random(f"{options.seed}/phases")
    metrics_due = [
        (options.start_ms + phases.random() * interval_ms, server_id) for server_id in range(1, options.servers + 1)
    ]
    heapq.heapify(metrics_due)
    log_rate = options.log_rate
    next_request = options.start_ms + balancer.gap_ms(log_rate) if log_rate else float("inf")
    sequence = 0
    while True:
        due, server_id = metrics_due[0]
        if due <= next_request:
            if due >= end_ms:
                return
            heapq.heapreplace(metrics_due, (due + interval_ms, server_id))
            clock_ms = int(due)
            reading = fleet.read(server_id)
            lateness = faults.lateness_ms()
            skew = faults.skew_ms()
            lateness = 0 if skew else lateness
            event_ms = clock_ms - lateness + skew
            kind = faults.malformation()
            value = (
                render_metrics(reading, event_ms) if kind is None else faults.malformed_metrics(kind, reading, event_ms)
            )
            yield Message(
                Stream.METRICS,
                str(server_id).encode(),
                value,
                clock_ms,
                event_ms,
                server_id,
                lateness_ms=lateness,
                malformed=kind,
                skew_ms=skew,
            )
        else:
            if next_request >= end_ms:
                return
            clock_ms = int(next_request)
            next_request += balancer.gap_ms(log_rate)
            request = balancer.request()
            lateness = faults.lateness_ms()
            skew = faults.skew_ms()
            lateness = 0 if skew else lateness
            epoch_s = (clock_ms - lateness + skew) // 1000
            kind = faults.malformation()
            value = renderer.render(request, epoch_s) if kind is None else faults.malformed_log(kind, request, epoch_s)
            sequence += 1
            yield Message(
                Stream.LOGS,
                str(sequence).encode(),
                value,
                clock_ms,
                epoch_s * 1000,
                request.server_id,
                request.method,
                request.status,
                lateness,
                kind,
                skew_ms=skew,
            )
