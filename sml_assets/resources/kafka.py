"""Kafka, reached through confluent-kafka: consumers, producer, admin, end offsets and lag.

Every call that talks to the broker has a deadline (`timeout_s`), so a sensor or a run never hangs
on a broker that is down; failures become a `KafkaUnavailableError` naming the variable to fix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from dagster import ConfigurableResource

BOOTSTRAP_VARIABLE = "SML_KAFKA_BOOTSTRAP_SERVERS"
METRICS_TOPIC_VARIABLE = "SML_METRICS_TOPIC"
LOGS_TOPIC_VARIABLE = "SML_LOGS_TOPIC"
_STACK_HINT = "is the stack up? run 'python3 devstack/stack.py up'"


class KafkaUnavailableError(RuntimeError):
    """The broker did not answer in time, or a topic is missing; the message says what to set."""


@dataclass(frozen=True, slots=True)
class Watermarks:
    """A partition's first available offset (`low`) and the offset the next message gets (`high`)."""

    partition: int
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a consumer's stored position is behind a partition's end."""

    partition: int
    end_offset: int
    position: int
    lag: int


def lag_per_partition(watermarks: Mapping[int, Watermarks], stored: Mapping[int, int]) -> list[PartitionLag]:
    """Lag of a consumer per partition; a partition never read starts at its low watermark."""
    lags = []
    for partition, marks in sorted(watermarks.items()):
        position = max(stored.get(partition, marks.low), marks.low)
        lags.append(PartitionLag(partition, marks.high, position, max(0, marks.high - position)))
    return lags


class KafkaResource(ConfigurableResource):
    """The brokers and the two topics of the contract (DESIGN.md sections 1 and 5)."""

    bootstrap_servers: str
    metrics_topic: str = "test-topic4"
    logs_topic: str = "test-topic3"
    timeout_s: float = 10.0

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        """A consumer that never commits to Kafka: sml keeps positions in `sml_offsets`.

        Use it with `assign()` and explicit offsets; the group id only names it in broker logs.
        """
        config: dict[str, Any] = {
            **self._base_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
        config.update(overrides)
        return Consumer(config)

    def producer(self, **overrides: Any) -> Producer:
        """An idempotent producer (no duplicates from its own retries)."""
        return Producer({**self._base_config(), "enable.idempotence": True, **overrides})

    def admin(self) -> AdminClient:
        return AdminClient(self._base_config())

    def watermarks(self, topic: str) -> dict[int, Watermarks]:
        """Low and high watermark of every partition of `topic`, read within `timeout_s` in all."""
        deadline = time.monotonic() + self.timeout_s
        consumer = self.consumer("sml-watermarks")
        try:
            partitions = self._partitions(consumer, topic, deadline)
            marks = {}
            for partition in partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=_remaining(deadline), cached=False
                )
                marks[partition] = Watermarks(partition, low, high)
            return marks
        except KafkaException as error:
            raise self.unavailable(f"reading end offsets of {topic}", error) from None
        finally:
            consumer.close()

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """First offset whose record timestamp is at or after `timestamp_ms`; the end if none is."""
        consumer = self.consumer("sml-replay")
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, partition, timestamp_ms)], timeout=self.timeout_s
            )
            offset = found[0].offset
            if found[0].error is not None:
                raise KafkaException(found[0].error)
            if offset < 0:
                _, offset = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self.timeout_s
                )
            return offset
        except KafkaException as error:
            raise self.unavailable(f"looking up {topic}[{partition}] at {timestamp_ms} ms", error) from None
        finally:
            consumer.close()

    def topic_variable(self, topic: str) -> str:
        """The environment variable that chose `topic`, for error messages."""
        if topic == self.metrics_topic:
            return METRICS_TOPIC_VARIABLE
        if topic == self.logs_topic:
            return LOGS_TOPIC_VARIABLE
        return f"{METRICS_TOPIC_VARIABLE} or {LOGS_TOPIC_VARIABLE}"

    def _partitions(self, consumer: Consumer, topic: str, deadline: float) -> list[int]:
        metadata = consumer.list_topics(topic, timeout=_remaining(deadline))
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            reason = (
                described.error.str()
                if described is not None and described.error is not None
                else "no partitions"
            )
            raise KafkaUnavailableError(
                f"topic {topic!r} is not available on "
                f"{BOOTSTRAP_VARIABLE}={self.bootstrap_servers} ({reason}): create it, or set "
                f"{self.topic_variable(topic)} to an existing topic"
            )
        return sorted(described.partitions)

    def unavailable(self, what: str, error: KafkaError | KafkaException | str) -> KafkaUnavailableError:
        """The error for a broker that failed while doing `what`, naming the variable to fix."""
        detail = (
            error.args[0].str()
            if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError)
            else str(error)
        )
        return KafkaUnavailableError(
            f"{BOOTSTRAP_VARIABLE}={self.bootstrap_servers} did not answer within {self.timeout_s:g}s "
            f"while {what} ({detail}): {_STACK_HINT}, or set {BOOTSTRAP_VARIABLE} to reachable brokers"
        )

    def _base_config(self) -> dict[str, Any]:
        """Quiet client logs (level 2, critical): a down broker is reported once, by our exception."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "socket.connection.setup.timeout.ms": max(1000, int(self.timeout_s * 1000)),
            "log_level": 2,
        }


def _remaining(deadline: float) -> float:
    """Seconds left before `deadline`; at least a little, so the last call still gets an answer."""
    return max(0.1, deadline - time.monotonic())
