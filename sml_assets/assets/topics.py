"""The two Kafka topics as external assets, so the lineage graph starts at the topics.

Dagster does not write them; the backlog sensor reports what it reads of them as observations.

An observation reads end offsets and the readers' positions (`server_metrics`'s stored offsets,
`log_summary`'s Spark checkpoint) within the resources' timeouts; it never consumes or commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import (
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    DataVersion,
    MetadataValue,
)

from sml_assets.ingest import DEFAULT_CONSUMER
from sml_assets.logs_stream import committed_positions, stream_paths
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import (
    KafkaResource,
    PartitionLag,
    Watermarks,
    lag_per_partition,
)
from sml_assets.resources.storage import LocalStorage

METRICS_TOPIC_KEY = AssetKey(["kafka", "metrics_topic"])
LOGS_TOPIC_KEY = AssetKey(["kafka", "logs_topic"])


@dataclass(frozen=True)
class TopicSnapshot:
    """End offsets of a topic and, when a consumer's positions are known, its lag per partition."""

    topic: str
    watermarks: dict[int, Watermarks]
    lags: list[PartitionLag] | None

    @property
    def end_total(self) -> int:
        return sum(marks.high for marks in self.watermarks.values())

    @property
    def backlog(self) -> int:
        """Messages waiting for the consumer (0 when no consumer positions were given)."""
        return sum(lag.lag for lag in self.lags) if self.lags is not None else 0

    @property
    def data_version(self) -> DataVersion:
        """Changes exactly when a message is appended, so downstream assets show as stale."""
        return DataVersion(str(self.end_total))

    def metadata(self) -> dict[str, MetadataValue]:
        metadata = {
            "topic": MetadataValue.text(self.topic),
            "partitions": MetadataValue.int(len(self.watermarks)),
            "end offsets (sum)": MetadataValue.int(self.end_total),
            "messages retained": MetadataValue.int(sum(m.high - m.low for m in self.watermarks.values())),
        }
        if self.lags is None:
            lines = ["| partition | first offset | end offset |", "|---:|---:|---:|"]
            lines += [f"| {m.partition} | {m.low} | {m.high} |" for m in self.watermarks.values()]
        else:
            metadata["consumer lag"] = MetadataValue.int(self.backlog)
            lines = [
                "| partition | first offset | end offset | stored position | lag |",
                "|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {lag.partition} | {self.watermarks[lag.partition].low} | {lag.end_offset} "
                f"| {lag.position} | {lag.lag} |"
                for lag in self.lags
            ]
        metadata["offsets"] = MetadataValue.md("\n".join(lines))
        return metadata

    def observation(self, key: AssetKey) -> AssetObservation:
        return AssetObservation(
            asset_key=key, metadata=self.metadata(), tags={"dagster/data_version": self.data_version.value}
        )


def snapshot_metrics_topic(
    kafka: KafkaResource, metrics_db: MetricsDatabase, consumer: str = DEFAULT_CONSUMER
) -> TopicSnapshot:
    """End offsets of the metrics topic and the lag of `server_metrics` behind them."""
    watermarks = kafka.watermarks(kafka.metrics_topic)
    stored = metrics_db.stored_offsets(consumer, kafka.metrics_topic)
    return TopicSnapshot(kafka.metrics_topic, watermarks, lag_per_partition(watermarks, stored))


def snapshot_logs_topic(kafka: KafkaResource, storage: LocalStorage | None = None) -> TopicSnapshot:
    """End offsets of the logs topic and, given the storage, the lag of `log_summary`'s Spark query
    (its positions live in its checkpoint's offset log, not in Kafka)."""
    watermarks = kafka.watermarks(kafka.logs_topic)
    positions = None
    if storage is not None:
        positions = committed_positions(stream_paths(storage).windows_checkpoint, kafka.logs_topic)
    lags = lag_per_partition(watermarks, positions) if positions is not None else None
    return TopicSnapshot(kafka.logs_topic, watermarks, lags)


metrics_topic = AssetsDefinition(
    specs=[
        AssetSpec(
            key=METRICS_TOPIC_KEY,
            group_name="kafka",
            kinds={"kafka"},
            description="Kafka topic of server metrics (SML_METRICS_TOPIC), written by the fleet, not by "
            "Dagster; metrics_backlog_sensor reports its end offsets and the lag of server_metrics as "
            "observations.",
        )
    ]
)

logs_topic = AssetsDefinition(
    specs=[
        AssetSpec(
            key=LOGS_TOPIC_KEY,
            group_name="kafka",
            kinds={"kafka"},
            description="Kafka topic of load-balancer access logs (SML_LOGS_TOPIC), written by the load "
            "balancer, not by Dagster; metrics_backlog_sensor reports its end offsets and the lag of "
            "log_summary's Spark query as observations.",
        )
    ]
)
