"""What every benchmark shares: the stack's addresses, own topics and schemas, the same data,
and median/spread statistics, so `run_all.py` can put all figures in one table."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import create_engine, text

from simulator.generator import SimulationOptions, generate
from simulator.records import Stream
from simulator.runner import FLUSH_TIMEOUT_S
from simulator.sender import producer_config
from simulator.topics import wait_for_topics

BOOTSTRAP = os.environ.get("SML_BENCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
POSTGRES_URL = os.environ.get("SML_BENCH_POSTGRES_URL", "postgresql+psycopg://sml:sml@127.0.0.1:55432/sml")
START_MS = 1_795_622_400_000
"""2026-11-25T16:00:00Z, the simulator benchmark's start: every benchmark generates the same data."""
SEED = 1
RUN_ID = uuid.uuid4().hex[:8]
QUIET = logging.getLogger("sml.bench")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


@dataclass(frozen=True)
class Stat:
    """Repeated measurements of one figure: the median is reported, the spread says how stable."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.1 means the repeats lie within 10% of each other."""
        return (max(self.values) - min(self.values)) / self.median if self.median else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "spread": self.spread,
            "values": list(self.values),
        }


def report(stats: dict[str, Stat], json_path: Path | None, digits: int | None = None) -> int:
    """A part run alone: write every repeat to `json_path` (if given), print the medians."""
    figures = {name: stat.as_json() for name, stat in stats.items()}
    if json_path:
        json_path.write_text(json.dumps(figures))
    print(json.dumps({name: round(f["median"], digits) for name, f in figures.items()}, indent=2))
    return 0


def unique(stem: str) -> str:
    """A topic, table or schema name no other run or test uses (letters, digits, '_')."""
    return f"bench_{stem}_{RUN_ID}_{uuid.uuid4().hex[:6]}"


def admin() -> AdminClient:
    client = AdminClient({"bootstrap.servers": BOOTSTRAP})
    client.list_topics(timeout=10)
    return client


@contextlib.contextmanager
def own_topics(count: int, stem: str, partitions: int = 1) -> Iterator[list[str]]:
    """Fresh topics for one benchmark, ready for clients (a leader for every partition), deleted
    afterwards whatever happens."""
    client = admin()
    names = [unique(f"{stem}{i}") for i in range(count)]
    futures = client.create_topics([NewTopic(n, partitions, 1) for n in names])
    try:
        for future in futures.values():
            future.result(timeout=30)
        wait_for_topics(BOOTSTRAP, dict.fromkeys(names, partitions), 30)
        yield names
    finally:
        for future in client.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


@contextlib.contextmanager
def own_pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of its own (dropped afterwards); the URL puts it first on search_path,
    so sml's fixed-name tables (sml_offsets, sml_dead_letters) are the benchmark's own too."""
    schema = unique("pg")
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


def metrics_values(count: int) -> list[bytes]:
    """`count` valid seed-format metrics messages from the simulator (100 servers, 10 Hz each)."""
    options = SimulationOptions(start_ms=START_MS, seed=SEED, servers=100, metrics_interval_s=0.1, log_rate=0.0)
    return [m.value for m in generate(SimulationOptions(**{**options.__dict__, "count": count}))]


def log_values(count: int) -> list[bytes]:
    """`count` load-balancer lines from the simulator: 1,000 requests/s of simulated time."""
    options = SimulationOptions(
        start_ms=START_MS, seed=SEED, servers=10, metrics_interval_s=1e9, log_rate=1000.0, count=count + 10
    )
    return [m.value for m in generate(options) if m.stream is Stream.LOGS][:count]


def produce(topic: str, values: Sequence[bytes]) -> None:
    """Send `values` with the simulator's burst settings and wait until every one is acknowledged."""
    failed: list[object] = []

    def report(error: object, _message: object) -> None:
        if error is not None:
            failed.append(error)

    producer = Producer(producer_config(BOOTSTRAP, burst=True))
    for index, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 1000 == 0:
            producer.poll(0)
    left = producer.flush(FLUSH_TIMEOUT_S)
    if left or failed:
        raise RuntimeError(f"producing to {topic}: {left} unflushed, {len(failed)} failed ({failed[:1]})")
