"""The peer for sml's log windows: a Quix Streams application counting the same lines in the same
5-minute tumbling windows with the same 10-minute grace, used by `bench_logs.py` (events/s) and by
`sml_assets_tests/test_quix_oracle.py` (its final windows against sml's).

Quix Streams is the peer because it is what a Python team would otherwise pick for this job: a
Kafka-native stream processor with event-time tumbling windows, a grace period, RocksDB state with
changelog topics and exactly-once processing over Kafka transactions, in one process, no JVM.

Its parser is its own (it knows only the GMT dates the load balancer writes, as the pandas peer
does): it shares no code with `sml_assets.parsing`, so agreeing counts mean something. Quix keeps
window state per message key, so the lines are read from a topic written with one key (one load
balancer); the simulator keys each line by its sequence number, which would give every line a
window of its own.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from sml_assets.windows import CATEGORIES, WATERMARK_DELAY, WINDOW, Counts

KEY = b"load-balancer"
"""The one message key of a topic the peer reads: Quix windows and closes them per key."""
LINE = re.compile(
    rb"\S+ \S+ \S+ \[(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT\] "
    rb"(GET|POST) \S+ (\d{3}) \d+"
)
MONTHS = {
    name.encode(): number for number, name in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)
}
WEEKDAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
CATEGORY_INDEX = {name: index for index, name in enumerate(CATEGORIES)}
IDLE_TIMEOUT_S = 60.0
"""Quix stops on its own after this long without a message: the end offsets were not reached."""


def parse(raw: bytes) -> tuple[int, int] | None:
    """(event time in ms, index of its category in CATEGORIES), or None for a line that is not a
    GET/POST access-log line with a valid GMT date and a 100-599 status."""
    match = LINE.fullmatch(raw.strip())
    if match is None:
        return None
    weekday, day, month_name, year, hour, minute, second, method, status = match.groups()
    month = MONTHS.get(month_name)
    if month is None:
        return None
    code = int(status)
    try:
        moment = datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        return None
    if WEEKDAYS[moment.weekday()] != weekday or not 100 <= code <= 599:
        return None
    success = "success" if 200 <= code <= 299 else "failure"
    return int(moment.timestamp()) * 1000, CATEGORY_INDEX[f"{method.decode()}_{success}"]


@dataclass(frozen=True)
class QuixRun:
    """What one Quix pass over a topic found, and how long it took."""

    final: dict[datetime, Counts]
    """Windows Quix closed (event time passed end + grace): their counts can no longer change."""
    late: int
    """Valid lines whose window had already closed when they arrived (Quix's `on_late`)."""
    lines: int
    startup_s: float
    """From building the application to its first processed message (topics, group join, state)."""
    processing_s: float
    """From the first processed message to the last."""


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark per partition of `topic`: where a pass over it is complete."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sml-quix-probe-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def count_windows(bootstrap: str, topic: str, processing_guarantee: str = "exactly-once") -> QuixRun:
    """Read `topic` from its earliest offset to its end offsets with Quix Streams and return the
    final windows; the consumer group, state folder and Quix's changelog topics are removed after."""
    from quixstreams import Application
    from quixstreams.models import Deserializer

    class LineDeserializer(Deserializer):
        def __call__(self, value: bytes, ctx: Any) -> tuple[int, int] | None:
            return parse(value)

    def event_time(value: tuple[int, int] | None, _headers: Any, timestamp_ms: int, _kind: Any) -> int:
        """The line's own date; a line that did not parse is filtered before the window."""
        return timestamp_ms if value is None else value[0]

    def started(value: tuple[int, int]) -> list[int]:
        counts = [0, 0, 0, 0]
        counts[value[1]] = 1
        return counts

    def added(counts: list[int], value: tuple[int, int]) -> list[int]:
        counts[value[1]] += 1
        return counts

    late = 0

    def on_late(*_args: Any, **_kwargs: Any) -> bool:
        nonlocal late
        late += 1
        return False

    ends = {p: end for p, end in end_offsets(bootstrap, topic).items() if end > 0}
    remaining = set(ends)
    final: dict[datetime, Counts] = {}
    first: float | None = None
    last = 0.0
    lines = 0

    group = f"sml-quix-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="sml-quix-state-") as state_dir, cleanup(bootstrap, group):
        app: Any = None

        def processed(_topic: str, partition: int, offset: int) -> None:
            nonlocal first, last, lines
            last = time.perf_counter()
            first = last if first is None else first
            lines += 1
            if offset >= ends.get(partition, 0) - 1:
                remaining.discard(partition)
                if not remaining:
                    app.stop()

        building = time.perf_counter()
        app = Application(
            broker_address=bootstrap,
            consumer_group=group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            processing_guarantee=processing_guarantee,  # type: ignore[arg-type]
            on_message_processed=processed,
            loglevel=logging.WARNING,
        )
        source = app.topic(
            topic, key_deserializer="bytes", value_deserializer=LineDeserializer(), timestamp_extractor=event_time
        )
        windows = (
            app.dataframe(source)
            .filter(lambda value: value is not None)
            .tumbling_window(WINDOW, grace_ms=WATERMARK_DELAY, name="log_summary", on_late=on_late)
            .reduce(added, started)
            .final(closing_strategy="key")
        )
        windows.update(
            lambda window: final.__setitem__(
                datetime.fromtimestamp(window["start"] / 1000, UTC), Counts(*window["value"])
            )
        )
        if remaining:
            app.run(timeout=IDLE_TIMEOUT_S)
        if remaining:
            raise RuntimeError(
                f"Quix Streams stopped before the end of {topic} on {bootstrap}: partitions {sorted(remaining)} "
                f"not read to their end offsets {ends} within {IDLE_TIMEOUT_S:.0f} s of the last message"
            )
    begun = building if first is None else first
    return QuixRun(final=final, late=late, lines=lines, startup_s=begun - building, processing_s=max(last - begun, 0.0))


@contextlib.contextmanager
def cleanup(bootstrap: str, group: str) -> Iterator[None]:
    """Whatever happens: delete the consumer group and the topics Quix made for it (named
    `changelog__<group>--...` or `repartition__<group>--...`)."""
    try:
        yield
    finally:
        client = AdminClient({"bootstrap.servers": bootstrap})
        internal = [
            name
            for name in client.list_topics(timeout=10).topics
            if name.startswith((f"changelog__{group}--", f"repartition__{group}--"))
        ]
        if internal:
            for future in client.delete_topics(internal, operation_timeout=30).values():
                future.result(timeout=30)
        for future in client.delete_consumer_groups([group], request_timeout=30).values():
            with contextlib.suppress(Exception):  # a group that never committed does not exist
                future.result(timeout=30)


def produce_keyed(bootstrap: str, topic: str, values: Sequence[bytes]) -> None:
    """Write `values` in order under the one KEY, waiting for every acknowledgement."""
    from confluent_kafka import Producer

    failed: list[object] = []

    def report(error: object, _message: object) -> None:
        if error is not None:
            failed.append(error)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for value in values:
        while True:
            try:
                producer.produce(topic, value, KEY, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60) or failed:
        raise RuntimeError(f"writing {len(values):,} lines to {topic} on {bootstrap} failed: {failed[:3]}")
