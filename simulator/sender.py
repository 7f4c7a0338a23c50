"""Where messages go: Kafka through confluent-kafka, every delivery report counted; or stdout."""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import BinaryIO, Protocol

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import (
    Message as KafkaMessage,
)

from simulator.records import Message, Stream
from simulator.topics import POLL_S, topic_problem
from simulator.truth import Truth
from sml_assets.kafka_security import KafkaSecurity

DELIVERY_TIMEOUT_MS = 30_000
"""A message not acknowledged within this time is reported failed, so a run never hangs."""
POLL_EVERY = 1_000
TOPIC_LOOK_AGAIN_S = 5.0
"""A topic created a moment ago may not be in the broker's metadata yet: look again this long."""


class BrokerUnreachable(RuntimeError):
    """The brokers did not answer, or a topic is missing; the message says what to do."""


def producer_config(bootstrap_servers: str, burst: bool, security: KafkaSecurity | None = None) -> dict[str, object]:
    """Idempotent, so a retry never duplicates a message the truth counted once; `burst` batches
    more for throughput. The benchmark's bare loop uses the same settings. `security` is sml's
    one set of Kafka security settings (the SML_KAFKA_* variables), PLAINTEXT when None."""
    config: dict[str, object] = {
        **(security or KafkaSecurity()).client_config(),
        "bootstrap.servers": bootstrap_servers,
        "client.id": "sml-simulator",
        "enable.idempotence": True,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "linger.ms": 5,
    }
    if burst:
        config |= {
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }
    return config


class Sink(Protocol):
    sent: int
    acked: int
    failed: int

    def send(self, message: Message) -> None: ...

    def poll(self, timeout_s: float) -> None:
        """Serve delivery reports, waiting at most `timeout_s`."""
        ...

    def close(self, timeout_s: float) -> int:
        """Flush; return how many messages are still unacknowledged (counted as failed)."""
        ...


class KafkaSink:
    """Produces to the two topics; the truth hears about each message when its report arrives."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: dict[Stream, str],
        truth: Truth,
        burst: bool,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.sent = self.acked = self.failed = 0
        self._bootstrap_servers = bootstrap_servers
        self._security = security or KafkaSecurity()
        self._topics = topics
        self._metrics_topic, self._logs_topic = topics[Stream.METRICS], topics[Stream.LOGS]
        self._truth = truth
        self._errors: list[str] = []
        self._producer = Producer(
            producer_config(bootstrap_servers, burst, self._security) | {"error_cb": self._on_error, "log_level": 0}
        )

    def check_broker(self, timeout_s: float) -> None:
        """Fail within `timeout_s` with a clear message instead of queueing into the void."""
        try:
            metadata = self._producer.list_topics(timeout=timeout_s)
        except KafkaException as error:
            self._producer.poll(0)  # serves the error callbacks: a refused login or handshake says why
            advice = self._security.diagnose(self._bootstrap_servers, reversed(self._errors))
            if advice is not None:
                raise BrokerUnreachable(
                    f"SML_KAFKA_BOOTSTRAP_SERVERS={self._bootstrap_servers}: could not connect "
                    f"within {timeout_s:g}s ({self._errors[-1] if self._errors else error.args[0].str()}): "
                    f"{advice}"
                ) from None
            seen = f"; last error: {self._errors[-1]}" if self._errors else ""
            raise BrokerUnreachable(
                f"SML_KAFKA_BOOTSTRAP_SERVERS={self._bootstrap_servers} did not answer within "
                f"{timeout_s:g}s ({error.args[0].str()}{seen}): "
                "is the stack up? run 'make stack-up'"
            ) from None
        deadline = time.monotonic() + TOPIC_LOOK_AGAIN_S
        for topic in self._topics.values():
            problem = topic_problem(metadata, topic)
            while problem is not None and time.monotonic() < deadline:
                time.sleep(POLL_S)
                try:
                    problem = topic_problem(self._producer.list_topics(topic=topic, timeout=timeout_s), topic)
                except KafkaException as error:
                    problem = error.args[0].str()
            if problem is not None:
                raise BrokerUnreachable(
                    f"topic {topic!r} does not exist on {self._bootstrap_servers} ({problem}, "
                    f"still after looking again for {TOPIC_LOOK_AGAIN_S:g}s): create it, or pick "
                    f"another with --metrics-topic/--logs-topic"
                )

    def send(self, message: Message) -> None:
        topic = self._metrics_topic if message.stream is Stream.METRICS else self._logs_topic
        report = partial(self._on_delivery, message)
        while True:
            try:
                self._producer.produce(topic, message.value, message.key, on_delivery=report)
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        if self.sent % POLL_EVERY == 0:
            self._producer.poll(0)

    def poll(self, timeout_s: float) -> None:
        self._producer.poll(timeout_s)

    def close(self, timeout_s: float) -> int:
        return self._producer.flush(timeout_s)

    def _on_delivery(self, message: Message, error: KafkaError | None, record: KafkaMessage) -> None:
        if error is None:
            self.acked += 1
            if message.skew_ms:
                kind, record_ms = record.timestamp()
                self._truth.delivered(message, None if kind == TIMESTAMP_NOT_AVAILABLE else record_ms)
            else:
                self._truth.delivered(message)
        else:
            self.failed += 1
            self._truth.failed_delivery(message)
            self._on_error(error)

    def _on_error(self, error: KafkaError) -> None:
        self._errors.append(error.str())
        del self._errors[:-5]


class StdoutSink:
    """`--stdout`: one `<topic>\\t<value>` line per message; a written line counts as delivered."""

    def __init__(self, topics: dict[Stream, str], truth: Truth, out: BinaryIO | None = None) -> None:
        self.sent = self.acked = self.failed = 0
        self._prefixes = {stream: f"{topic}\t".encode() for stream, topic in topics.items()}
        self._truth = truth
        self._out = out if out is not None else sys.stdout.buffer

    def send(self, message: Message) -> None:
        self._out.write(self._prefixes[message.stream] + message.value + b"\n")
        self.sent += 1
        self.acked += 1
        self._truth.delivered(message)

    def poll(self, timeout_s: float) -> None:
        if timeout_s > 0:
            self._out.flush()
            time.sleep(timeout_s)

    def close(self, timeout_s: float) -> int:
        self._out.flush()
        return 0
