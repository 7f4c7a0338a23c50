"""Whether clients can use a topic yet. A finished CreateTopics call only means the controller took
it; a new client's metadata shows the topic with a leader for every partition a moment later."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata  # pyright: ignore[reportPrivateImportUsage]

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
