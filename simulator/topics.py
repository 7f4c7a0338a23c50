"""Topics: creating them replicated as production needs, and whether clients can use one yet. A
finished CreateTopics call only means the controller took it; a new client's metadata shows the
topic with a leader for every partition a moment later."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # pyright: ignore[reportPrivateImportUsage]
    AdminClient,
    ClusterMetadata,
    NewTopic,
)

POLL_S = 0.1


class TopicNotReady(RuntimeError):
    """Topics still missing or leaderless at the deadline; the message names each and why."""


def topic_problem(metadata: ClusterMetadata, topic: str, partitions: int | None = None) -> str | None:
    """Why `topic` is not usable in this metadata (None when it is): absent, an error, fewer
    partitions than `partitions`, or a partition without a leader."""
    found = metadata.topics.get(topic)
    if found is None:
        return "no metadata"
    if found.error is not None:
        return found.error.str()
    if not found.partitions or (partitions is not None and len(found.partitions) < partitions):
        return f"{len(found.partitions)} of {partitions or 'its'} partitions in the metadata"
    leaderless = sorted(p.id for p in found.partitions.values() if p.leader < 0 or p.error is not None)
    if leaderless:
        return f"no leader yet for partition(s) {', '.join(map(str, leaderless))}"
    return None


def wait_for_topics(config: Mapping[str, Any] | str, topics: Mapping[str, int | None], timeout_s: float = 30) -> None:
    """Until a new client's metadata shows every topic (name -> partitions, or None for any) with a
    leader for each partition; `config` is a client config or a bootstrap string."""
    client_config: dict[str, Any] = {"bootstrap.servers": config} if isinstance(config, str) else dict(config)
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            metadata = AdminClient(client_config).list_topics(timeout=min(5.0, max(0.5, remaining)))
        except KafkaException as error:
            problems = {topic: f"metadata request failed: {error.args[0].str()}" for topic in topics}
        else:
            problems = {
                topic: problem
                for topic, partitions in topics.items()
                if (problem := topic_problem(metadata, topic, partitions)) is not None
            }
        if not problems:
            return
        if remaining <= 0:
            listed = "; ".join(f"{topic}: {problem}" for topic, problem in problems.items())
            raise TopicNotReady(
                f"waited {timeout_s:g}s for a new client on {client_config['bootstrap.servers']} to see "
                f"every partition of these topics with a leader: {listed}"
            )
        time.sleep(POLL_S)


REPLICATION_VARIABLE = "SML_KAFKA_REPLICATION_FACTOR"
MIN_INSYNC_VARIABLE = "SML_KAFKA_MIN_INSYNC_REPLICAS"


@dataclass(frozen=True)
class Replication:
    """How a new topic is replicated: `factor` copies, of which `min_insync` must acknowledge an
    `acks=all` write (Kafka's `min.insync.replicas`)."""

    factor: int
    min_insync: int


def topic_replication(brokers: int, environ: Mapping[str, str] = os.environ) -> Replication:
    """SML_KAFKA_REPLICATION_FACTOR and SML_KAFKA_MIN_INSYNC_REPLICAS when set; else what a
    production user chooses, bounded by the cluster: min(3, brokers) copies, one of which may be
    lost without refusing writes (3 -> 2; 1 and 1 on a single broker). devstack/kafka.py has the
    same rule for the stack's topics."""
    values: dict[str, int | None] = {}
    for variable in (REPLICATION_VARIABLE, MIN_INSYNC_VARIABLE):
        raw = environ.get(variable, "").strip()
        if raw and (not raw.isdigit() or int(raw) < 1):
            raise ValueError(f"{variable}={raw!r} is not a whole number of at least 1: set it so, or unset it")
        values[variable] = int(raw) if raw else None
    factor = values[REPLICATION_VARIABLE] or min(3, brokers)
    min_insync = values[MIN_INSYNC_VARIABLE] or max(1, min(2, factor - 1))
    if factor > brokers:
        raise ValueError(f"{REPLICATION_VARIABLE}={factor} but the cluster has {brokers} broker(s): lower it")
    if min_insync > factor:
        raise ValueError(
            f"{MIN_INSYNC_VARIABLE}={min_insync} exceeds the replication factor {factor}: no acks=all write could "
            "succeed; lower it"
        )
    return Replication(factor, min_insync)


def create_topics(config: Mapping[str, Any] | str, topics: Mapping[str, int], timeout_s: float = 30) -> Replication:
    """Create `topics` (name -> partitions) replicated by `topic_replication` of the cluster's broker
    count, an existing topic left as it is; returns once a new client sees a leader everywhere."""
    client_config: dict[str, Any] = {"bootstrap.servers": config} if isinstance(config, str) else dict(config)
    admin = AdminClient(client_config)
    brokers = len(admin.list_topics(timeout=timeout_s).brokers)
    replication = topic_replication(brokers)
    configs = {"min.insync.replicas": str(replication.min_insync)}
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication.factor, config=configs) for name, partitions in topics.items()]
    )
    for future in futures.values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    wait_for_topics(client_config, dict(topics), timeout_s)
    return replication
