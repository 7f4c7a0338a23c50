"""Metrics ingestion rows/s: sml's `server_metrics` code path into SQLite and PostgreSQL, next to
a plain Python consume-and-parse loop that writes nothing and shares no code with sml (batched
`consume`, one compiled regex per value, a tuple per row) and the original's approach (kafka-python,
a pandas DataFrame per 1,000 messages, `DataFrame.to_sql`, then commit). Beside them, each
database's part alone (`write_alone`): the same rows, parsed before the clock starts, written by
sml's own chunk transactions on one thread, no Kafka: what bounds sml from above on that database.

Every contender reads the same topic from offset 0 into a table of its own, in alternating order,
after one plain loop over the topic that is not counted: the first read of a new topic was the
slowest of a run (290,000 rows/s against 424,000-432,000 for the plain loop's later repeats).
Each contender starts after a full garbage collection, so none inherits the previous one's
garbage: the plain loop spends about half its time in Python's cyclic collector (passes over every
object of the process), and without it its figure swung with whichever contender ran before
(349,000-495,000 rows/s in one process). Beside it, the same plain loop with the collector frozen
(`plain_frozen`, as sml's drain runs, `ingest._old_objects_frozen`): what the consume-and-parse
costs without it.

    python benchmarks/bench_ingest.py [--messages 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer
from sqlalchemy import create_engine, text

from benchmarks.common import (
    BOOTSTRAP,
    QUIET,
    Stat,
    metrics_values,
    own_pg_schema,
    own_topics,
    produce,
    report,
    unique,
)
from sml_assets.chunks import MetricColumns, parse_values
from sml_assets.ingest import default_chunk_size, ingest_metrics
from sml_assets.resources.database import MetricsDatabase, OffsetAdvance
from sml_assets.resources.kafka import KafkaResource

SEED_BATCH = 1_000
"""The original flushed a DataFrame to SQL every 1,000 messages."""
DEADLINE_S = 600.0
RAW_TUNING = {"queued.min.messages": 1_000_000}
"""The prefetch that made a bare consume() fastest (0.7 us/message against 5.4 with the defaults)."""
PLAIN_BATCH = 5_000
PLAIN_LINE = re.compile(rb"id: (\d+), cpu: ([\d.]+), mem: ([\d.]+), disk: ([\d.]+)(?:, ts: (\d+))?")
CONTENDERS = (
    "plain",
    "plain_frozen",
    "sml_sqlite",
    "sml_postgres",
    "original_sqlite",
    "original_postgres",
    "write_sqlite",
    "write_postgres",
)


def plain_loop(topic: str, messages: int) -> float:
    """What a plain Python consumer does at best: confluent-kafka's batched `consume()` with the
    fastest prefetch found (unbounded, which sml caps for memory), one compiled regex per value and
    a tuple per row, nothing written. It imports nothing of sml, so it does not move with sml's code."""
    consumer = Consumer(
        {"bootstrap.servers": BOOTSTRAP, "group.id": unique("plain"), "enable.auto.commit": False, **RAW_TUNING}
    )
    started = time.perf_counter()
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = parsed = 0
    try:
        while seen < messages and time.perf_counter() - started < DEADLINE_S:
            rows = []
            for message in consumer.consume(num_messages=PLAIN_BATCH, timeout=1.0):
                match = PLAIN_LINE.fullmatch(message.value())
                if match is not None:
                    server_id, cpu, mem, disk, ts = match.groups()
                    rows.append(
                        (
                            message.partition(),
                            message.offset(),
                            int(server_id),
                            float(cpu),
                            float(mem),
                            float(disk),
                            int(ts) if ts else message.timestamp()[1],
                        )
                    )
                seen += 1
            parsed += len(rows)
    finally:
        consumer.close()
    elapsed = time.perf_counter() - started
    _expect(seen, parsed, messages, "plain loop")
    return messages / elapsed


def frozen_plain_loop(topic: str, messages: int) -> float:
    """`plain_loop` with the objects that exist before it frozen out of the garbage collector, as
    `ingest._old_objects_frozen` does for sml's drain (not called: that one also warms sml's parse
    up, and the plain loop shares no code with sml)."""
    gc.freeze()
    try:
        return plain_loop(topic, messages)
    finally:
        gc.unfreeze()


def sml_ingest(topic: str, url: str, messages: int) -> float:
    """One `server_metrics` run (the asset's own function) into an empty table of its own that
    exists already, as every run but a deployment's first finds it (its `CREATE TABLE` took 20-30 ms
    on PostgreSQL, once in a table's life); the run's resources are new, as in a run's own process,
    so its engine connects and checks the schema on the clock."""
    table = unique("sml")
    creator = MetricsDatabase(url=url, table=table)
    creator.ensure_tables()
    creator.engine().dispose()
    database = MetricsDatabase(url=url, table=table)
    kafka = KafkaResource(bootstrap_servers=BOOTSTRAP, metrics_topic=topic)
    started = time.perf_counter()
    report = ingest_metrics(kafka, database, QUIET, consumer_name=unique("c"), max_messages=messages)
    elapsed = time.perf_counter() - started
    database.engine().dispose()
    _expect(report.messages, report.rows, messages, "sml ingest")
    return messages / elapsed


def parsed_chunks(topic: str, messages: int, size: int) -> list[MetricColumns]:
    """The columns sml parses from the benchmark's `messages` values (all valid, partition 0), cut
    into chunks of `size` as a run cuts them."""
    values = metrics_values(messages)
    parsed = parse_values(values, np.zeros(len(values), np.int64))
    _expect(len(values), int(parsed.valid.sum()), messages, "parse of the benchmark's values")
    offsets = np.arange(len(values), dtype=np.int64)
    partitions = np.zeros(len(values), np.int64)
    return [
        parsed.columns(topic, partitions, offsets, parsed.valid & (offsets >= start) & (offsets < start + size))
        for start in range(0, len(values), size)
    ]


def chunk_size_of(url: str) -> int:
    """The chunk size a run into `url` uses (`ingest.default_chunk_size`)."""
    database = MetricsDatabase(url=url)
    size = default_chunk_size(database)
    database.engine().dispose()
    return size


def write_alone(chunks: list[MetricColumns], url: str) -> float:
    """The database's part of a run alone: `chunks` (already parsed, cut as a run into `url` cuts
    them) into a fresh table, each in one of sml's chunk transactions (rows, offset compare-and-set,
    commit), one after the other on this thread; no Kafka, no parse, no writer thread."""
    database = MetricsDatabase(url=url, table=unique("alone"))
    database.ensure_tables()
    consumer, stored = unique("c"), None
    started = time.perf_counter()
    for chunk in chunks:
        end = int(chunk.offset[-1]) + 1
        database.commit_chunk(consumer, chunk.topic, chunk, [], [OffsetAdvance(0, stored, end)], "bench-topic-id")
        stored = end
    elapsed = time.perf_counter() - started
    database.engine().dispose()
    return sum(map(len, chunks)) / elapsed


def seed_parse(value: bytes) -> dict[str, float]:
    """The original's parser: split on ', ' and ': ', numbers as floats."""
    return {key: float(raw) for key, raw in (part.split(": ") for part in value.decode().split(", "))}


def original_ingest(topic: str, url: str, messages: int) -> float:
    """The original's loop: kafka-python, 1,000 messages -> DataFrame -> to_sql -> commit."""
    engine = create_engine(url)
    table = unique("orig")
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=unique("orig"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    started = time.perf_counter()
    written = 0
    batch: list[dict[str, float]] = []
    try:
        while written < messages and time.perf_counter() - started < DEADLINE_S:
            polled = consumer.poll(timeout_ms=1000, max_records=SEED_BATCH - len(batch))
            for records in polled.values():
                batch.extend(seed_parse(record.value) for record in records)
            if len(batch) >= SEED_BATCH or (batch and written + len(batch) >= messages):
                pd.DataFrame(batch).to_sql(table, engine, if_exists="append", index=False)
                consumer.commit()
                written += len(batch)
                batch = []
    finally:
        consumer.close()
    elapsed = time.perf_counter() - started
    with engine.begin() as connection:
        stored = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        connection.execute(text(f"DROP TABLE {table}"))
    engine.dispose()
    _expect(stored, stored, messages, "original loop")
    return messages / elapsed


def _expect(seen: int, good: int, messages: int, what: str) -> None:
    if seen != messages or good != messages:
        raise RuntimeError(f"{what} handled {seen:,} messages ({good:,} valid), expected {messages:,}")


@contextlib.contextmanager
def metrics_topic(messages: int) -> Iterator[str]:
    """One topic holding `messages` simulator metrics, shared by every contender."""
    with own_topics(1, "metrics") as (topic,):
        produce(topic, metrics_values(messages))
        yield topic


def run(messages: int, repeats: int) -> dict[str, Stat]:
    """Rows/s per contender; each repeat runs every contender once, in rotated order."""
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with (
        tempfile.TemporaryDirectory(prefix="sml-bench-") as tmp,
        own_pg_schema() as pg_url,
        metrics_topic(messages) as topic,
    ):
        sqlite_chunks = parsed_chunks(topic, messages, chunk_size_of(f"sqlite:///{tmp}/sizing.db"))
        pg_chunks = parsed_chunks(topic, messages, chunk_size_of(pg_url))
        warm_up = plain_loop(topic, messages)
        print(f"  ingest warm-up: one plain loop over the topic, not counted ({warm_up:,.0f} rows/s)", file=sys.stderr)
        for index in range(repeats):
            order = CONTENDERS[index % len(CONTENDERS) :] + CONTENDERS[: index % len(CONTENDERS)]
            for name in order:
                sqlite_url = f"sqlite:///{tmp}/{name}-{index}.db"
                url = pg_url if name.endswith("postgres") else sqlite_url
                gc.collect()
                if name == "plain":
                    rate = plain_loop(topic, messages)
                elif name == "plain_frozen":
                    rate = frozen_plain_loop(topic, messages)
                elif name.startswith("write"):
                    rate = write_alone(pg_chunks if name.endswith("postgres") else sqlite_chunks, url)
                elif name.startswith("sml"):
                    rate = sml_ingest(topic, url, messages)
                else:
                    rate = original_ingest(topic, url, messages)
                rates[name].append(rate)
                print(f"  ingest repeat {index + 1}/{repeats} {name:<18} {rate:>10,.0f} rows/s", file=sys.stderr)
    _forget_groups()
    return {name: Stat(tuple(values)) for name, values in rates.items()}


def _forget_groups() -> None:
    """Delete the consumer groups the original's loop committed to (it is the only one that does)."""
    client = AdminClient({"bootstrap.servers": BOOTSTRAP})
    groups = [
        g.group_id
        for g in client.list_consumer_groups().result(timeout=30).valid
        if g.group_id.startswith("bench_orig_")
    ]
    if groups:
        for future in client.delete_consumer_groups(groups, request_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    return report(run(args.messages, args.repeats), args.json)


if __name__ == "__main__":
    sys.exit(main())
