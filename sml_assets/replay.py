"""Replay: move the stored offset of a metrics partition, so the next run re-reads (or skips) messages.

    python -m sml_assets.replay show
    python -m sml_assets.replay reset --partition 0 --offset 1200
    python -m sml_assets.replay reset --partition 0 --timestamp 2026-11-25T16:00:00Z
    python -m sml_assets.replay reset --partition 0 --earliest

Rows and dead letters at or after the new offset are deleted in the same transaction, so the
table stays exactly-once when they are read again. Uses the same environment as the runs
(SML_KAFKA_BOOTSTRAP_SERVERS, the SML_KAFKA_* security variables, SML_METRICS_TOPIC,
SML_METRICS_DB_URL, SML_METRICS_TABLE).
Stop the schedule and sensor first if a run could be in flight: its next chunk would then fail
on the moved offset (nothing is lost; it stops instead of writing twice).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from sml_assets.ingest import DEFAULT_CONSUMER
from sml_assets.kafka_security import KafkaSettingsError
from sml_assets.resources import resources_now
from sml_assets.resources.database import DatabaseUnavailableError, MetricsDatabase
from sml_assets.resources.kafka import (
    KafkaResource,
    KafkaUnavailableError,
    lag_per_partition,
)


def parse_timestamp(text: str) -> int:
    """ISO-8601 with a zone (or epoch milliseconds) -> epoch milliseconds, as Kafka wants it."""
    if text.isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--timestamp {text!r} has no time zone: add 'Z' or an offset")
    return int(parsed.astimezone(UTC).timestamp() * 1000)


def show(kafka: KafkaResource, database: MetricsDatabase, topic: str, consumer: str) -> None:
    watermarks = kafka.watermarks(topic)
    stored = database.stored_offsets(consumer, topic)
    print(f"{topic}, consumer {consumer!r}, table {database.table} at {database.masked_url}")
    print(f"{'partition':>9} {'first':>10} {'end':>10} {'stored':>10} {'lag':>10}")
    for lag in lag_per_partition(watermarks, stored):
        stored_text = str(stored[lag.partition]) if lag.partition in stored else "-"
        low = watermarks[lag.partition].low
        print(f"{lag.partition:>9} {low:>10} {lag.end_offset:>10} {stored_text:>10} {lag.lag:>10}")


def reset(
    kafka: KafkaResource, database: MetricsDatabase, topic: str, consumer: str, args: argparse.Namespace
) -> None:
    marks = kafka.watermarks(topic)
    if args.partition not in marks:
        raise SystemExit(f"{topic} has no partition {args.partition}; it has {sorted(marks)}")
    low, high = marks[args.partition].low, marks[args.partition].high
    if args.earliest:
        offset = low
    elif args.latest:
        offset = high
    elif args.timestamp is not None:
        offset = kafka.offset_for_time(topic, args.partition, args.timestamp)
    else:
        offset = args.offset
    if not low <= offset <= high:
        raise SystemExit(f"offset {offset} is outside {topic}[{args.partition}]'s range {low}..{high}")
    database.ensure_tables()
    before = database.stored_offsets(consumer, topic).get(args.partition)
    removed = database.reset_offset(consumer, topic, args.partition, offset)
    print(
        f"{topic}[{args.partition}] consumer {consumer!r}: stored offset "
        f"{before if before is not None else '-'} -> {offset}; {removed} rows and dead letters at or "
        f"after it removed; the next run of ingest_metrics_job reads from {offset}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sml_assets.replay", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--topic", help="default: SML_METRICS_TOPIC")
    parser.add_argument(
        "--consumer", default=DEFAULT_CONSUMER, help=f"whose stored offsets (default {DEFAULT_CONSUMER})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="end offsets, stored offsets and lag per partition")
    reset_parser = commands.add_parser("reset", help="move one partition's stored offset")
    reset_parser.add_argument("--partition", type=int, required=True)
    target = reset_parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--offset", type=int)
    target.add_argument("--timestamp", type=parse_timestamp, help="ISO-8601 with zone, or epoch ms")
    target.add_argument("--earliest", action="store_true", help="the oldest retained message")
    target.add_argument("--latest", action="store_true", help="the end: skip everything waiting")
    args = parser.parse_args(argv)
    resources = resources_now()
    kafka, database = resources.kafka, resources.metrics_db
    topic = args.topic or kafka.metrics_topic
    try:
        if args.command == "show":
            show(kafka, database, topic, args.consumer)
        else:
            reset(kafka, database, topic, args.consumer, args)
    except (KafkaUnavailableError, KafkaSettingsError, DatabaseUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
