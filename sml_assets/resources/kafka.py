"""Kafka, reached through confluent-kafka: consumers, producer, admin, end offsets and lag.

Every call that talks to the broker has a deadline (`timeout_s`), so a sensor or a run never hangs
on a broker that is down; failures become a `KafkaUnavailableError` naming the variable to fix.
The security settings (SASL over TLS, mTLS) live here once and reach every client sml makes:
librdkafka's in `_base_config()`, Spark's Kafka source through `spark_source_options()`
(the rules themselves are in `sml_assets.kafka_security`, which the simulator shares).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from dagster import ConfigurableResource
from pydantic import Field

from sml_assets.errors import STACK_HINT
from sml_assets.kafka_security import (
    CA_VARIABLE,
    CERTIFICATE_VARIABLE,
    KEY_VARIABLE,
    LOGIN_MODULES,
    MECHANISM_VARIABLE,
    PASSWORD_VARIABLE,
    PROTOCOL_VARIABLE,
    PROTOCOLS,
    USERNAME_VARIABLE,
    KafkaSecurity,
)
from sml_assets.parsing import DEFAULT_MAX_CLOCK_SKEW_S

BOOTSTRAP_VARIABLE = "SML_KAFKA_BOOTSTRAP_SERVERS"
METRICS_TOPIC_VARIABLE = "SML_METRICS_TOPIC"
LOGS_TOPIC_VARIABLE = "SML_LOGS_TOPIC"


class KafkaUnavailableError(RuntimeError):
    """The broker did not answer in time, or a topic is missing; the message says what to set."""


class TopicMissingError(KafkaUnavailableError):
    """The broker answered: the topic does not exist."""


@dataclass(frozen=True, slots=True)
class Watermarks:
    """A partition's first available offset (`low`) and the offset the next message gets (`high`)."""

    partition: int
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What the broker says of a topic: its id (base64) and its partitions."""

    topic_id: str
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class KafkaSession:
    """One admin client for a series of questions about topics (a `server_metrics` run asks for the
    topic's id and partitions, its offsets, the id again, and the lag left), instead of a new client
    per question: a new client's first request pays its connection and metadata, 2-7 ms on an idle
    machine and 10-25 ms beside a run's other work (a 200,000-message run takes 0.45 s); a later
    one, half a millisecond. Every request still goes to the broker. The client reports its errors
    to `errors` (`KafkaResource.unavailable` reads them)."""

    admin: AdminClient
    errors: list[KafkaError]


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
    security_protocol: str = Field(default="PLAINTEXT", description=f"{', '.join(PROTOCOLS)} ({PROTOCOL_VARIABLE})")
    sasl_mechanism: str | None = Field(default=None, description=f"{', '.join(LOGIN_MODULES)} ({MECHANISM_VARIABLE})")
    sasl_username: str | None = Field(default=None, description=USERNAME_VARIABLE)
    sasl_password: str | None = Field(
        default=None, repr=False, description=f"only from the environment: EnvVar('{PASSWORD_VARIABLE}')"
    )
    ssl_ca_location: str | None = Field(
        default=None, description=f"PEM file of the CA that signed the brokers' certificates ({CA_VARIABLE})"
    )
    ssl_certificate_location: str | None = Field(
        default=None, description=f"PEM client certificate, for mTLS ({CERTIFICATE_VARIABLE})"
    )
    ssl_key_location: str | None = Field(
        default=None, description=f"PEM (PKCS#8) key of the client certificate ({KEY_VARIABLE})"
    )
    max_clock_skew_s: int = Field(
        default=DEFAULT_MAX_CLOCK_SKEW_S,
        ge=0,
        description="SML_MAX_CLOCK_SKEW: seconds an event time may be ahead of its record timestamp "
        "or of the clock before the event is refused (a dead letter or a reject).",
    )

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

    def admin(self, **overrides: Any) -> AdminClient:
        return AdminClient({**self._base_config(), **overrides})

    def session(self) -> KafkaSession:
        """A `KafkaSession`: one admin client and its errors."""
        errors: list[KafkaError] = []
        return KafkaSession(self.admin(error_cb=errors.append), errors)

    def watermarks(
        self, topic: str, partitions: Sequence[int] | None = None, session: KafkaSession | None = None
    ) -> dict[int, Watermarks]:
        """Low and high watermark of `partitions` of `topic` (default: every partition, asked of the
        broker first), read within `timeout_s` in all, through the `session`'s client if given.

        The high watermark is what a consumer of sml reads up to: the last stable offset (consumers
        read committed messages only), as `Consumer.get_watermark_offsets` gives it. Asked through
        an admin client (`list_offsets`, both ends at once): a new consumer's first
        `get_watermark_offsets` waited about 50 ms for its metadata, a tenth of a 200,000-message run.
        """
        session = session or self.session()
        deadline = time.monotonic() + self.timeout_s
        if partitions is None:
            partitions = self.describe_topic(topic, session).partitions
        if not partitions:
            return {}
        try:
            asked = [
                session.admin.list_offsets(
                    {TopicPartition(topic, partition): spec for partition in partitions},
                    isolation_level=IsolationLevel.READ_COMMITTED,
                    request_timeout=_remaining(deadline),
                )
                for spec in (OffsetSpec.earliest(), OffsetSpec.latest())
            ]
            low, high = (
                {
                    key.partition: future.result(timeout=_remaining(deadline) + 1).offset
                    for key, future in futures.items()
                }
                for futures in asked
            )
        except (KafkaException, TimeoutError) as error:
            session.admin.poll(0)  # serves the error callbacks: a refused login or TLS handshake says why
            reason = error if isinstance(error, KafkaException) else str(error) or "timed out"
            raise self.unavailable(f"reading end offsets of {topic}", reason, session.errors) from None
        return {partition: Watermarks(partition, low[partition], high[partition]) for partition in partitions}

    def topic_id(self, topic: str, session: KafkaSession | None = None) -> str:
        """Kafka's id of `topic` (base64): a topic deleted and created again under the same name
        gets a new one, so stored positions can tell which topic they were read from."""
        return self.describe_topic(topic, session).topic_id

    def describe_topic(self, topic: str, session: KafkaSession | None = None) -> TopicInfo:
        """The id and the partitions of `topic`, in one request to the broker (through the same
        `session` too: a topic recreated meanwhile shows its new id)."""
        session = session or self.session()  # kept referenced: a collected client fails its futures
        admin, client_errors = session.admin, session.errors
        try:
            futures = admin.describe_topics(TopicCollection([topic]), request_timeout=self.timeout_s)
            description = futures[topic].result(timeout=self.timeout_s + 1)
        except KafkaException as error:
            code = error.args[0].code() if error.args and isinstance(error.args[0], KafkaError) else None
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TopicMissingError(
                    f"topic {topic!r} is not available on {BOOTSTRAP_VARIABLE}={self.bootstrap_servers} "
                    f"(unknown topic): create it, or set {self.topic_variable(topic)} to an existing topic"
                ) from None
            admin.poll(0)  # serves the error callbacks: a refused login or TLS handshake says why
            raise self.unavailable(f"describing {topic}", error, client_errors) from None
        except TimeoutError as error:
            admin.poll(0)
            raise self.unavailable(f"describing {topic}", str(error) or "timed out", client_errors) from None
        return TopicInfo(str(description.topic_id), tuple(sorted(p.id for p in description.partitions)))

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """First offset whose record timestamp is at or after `timestamp_ms`; the end if none is."""
        client_errors: list[KafkaError] = []
        consumer = self.consumer("sml-replay", error_cb=client_errors.append)
        try:
            found = consumer.offsets_for_times([TopicPartition(topic, partition, timestamp_ms)], timeout=self.timeout_s)
            offset = found[0].offset
            if found[0].error is not None:
                raise KafkaException(found[0].error)
            if offset < 0:
                _, offset = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self.timeout_s)
            return offset
        except KafkaException as error:
            consumer.poll(0)
            raise self.unavailable(
                f"looking up {topic}[{partition}] at {timestamp_ms} ms", error, client_errors
            ) from None
        finally:
            consumer.close()

    def topic_variable(self, topic: str) -> str:
        """The environment variable that chose `topic`, for error messages."""
        if topic == self.metrics_topic:
            return METRICS_TOPIC_VARIABLE
        if topic == self.logs_topic:
            return LOGS_TOPIC_VARIABLE
        return f"{METRICS_TOPIC_VARIABLE} or {LOGS_TOPIC_VARIABLE}"

    def unavailable(
        self, what: str, error: KafkaError | KafkaException | str, client_errors: list[KafkaError] | None = None
    ) -> KafkaUnavailableError:
        """The error for a broker that failed while doing `what`, naming the variable to fix.

        A refused login or TLS handshake shows up as a client error before the call times out;
        then the message names the security setting to fix instead of blaming the brokers.
        """
        detail = _text(error)
        reasons = [detail, *(_text(seen) for seen in reversed(client_errors or []))]
        advice = self.security().diagnose(self.bootstrap_servers, reasons, min(2.0, self.timeout_s))
        if advice is not None:
            reason = next((r for r in reasons if self.security().explain(r) is not None), detail)
            return KafkaUnavailableError(
                f"{BOOTSTRAP_VARIABLE}={self.bootstrap_servers}: could not connect within "
                f"{self.timeout_s:g}s while {what} ({reason}): {advice}"
            )
        return KafkaUnavailableError(
            f"{BOOTSTRAP_VARIABLE}={self.bootstrap_servers} did not answer within {self.timeout_s:g}s "
            f"while {what} ({detail}): {STACK_HINT}, or set {BOOTSTRAP_VARIABLE} to reachable brokers"
        )

    def security(self) -> KafkaSecurity:
        """This resource's security settings, checked (a contradiction raises `KafkaSettingsError`)."""
        return KafkaSecurity(
            protocol=self.security_protocol,
            mechanism=self.sasl_mechanism,
            username=self.sasl_username,
            password=self.sasl_password,
            ca_location=self.ssl_ca_location,
            certificate_location=self.ssl_certificate_location,
            key_location=self.ssl_key_location,
        ).checked()

    def spark_source_options(self) -> dict[str, str]:
        """Options for Spark's Kafka source: the brokers and the same security as every other client."""
        return {"kafka.bootstrap.servers": self.bootstrap_servers, **self.security().spark_options()}

    def _base_config(self) -> dict[str, Any]:
        """Quiet client logs (level 2, critical): a down broker is reported once, by our exception."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "socket.connection.setup.timeout.ms": max(1000, int(self.timeout_s * 1000)),
            "log_level": 2,
            **self.security().client_config(),
        }


def _text(error: Any) -> str:
    """The readable part of a confluent-kafka error (KafkaError, KafkaException or text). `Any`:
    confluent-kafka before 2.13 ships no type stubs, so its classes are unknown to the type checker."""
    inner = error.args[0] if isinstance(error, KafkaException) and error.args else error
    return inner.str() if isinstance(inner, KafkaError) else str(error)


def _remaining(deadline: float) -> float:
    """Seconds left before `deadline`; at least a little, so the last call still gets an answer."""
    return max(0.1, deadline - time.monotonic())
