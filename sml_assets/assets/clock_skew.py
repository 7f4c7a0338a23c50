"""Checks that name the servers whose clocks are ahead: events refused for clock skew.

An event dated ahead of its record timestamp or of the processing clock by more than
SML_MAX_CLOCK_SKEW is refused (sml_assets.parsing.skew_reason): a dead letter for metrics, a reject
for log lines. Refusing keeps the summary right, but the server keeps sending wrong times until
someone fixes its clock; these checks warn when that is more than a trickle.
"""

from collections import Counter
from datetime import UTC, datetime, timedelta

from dagster import AssetCheckResult, AssetCheckSeverity, Config, MetadataValue, asset_check
from pydantic import Field

from sml_assets.logs_stream import read_rejects, stream_paths
from sml_assets.parsing import DeadLetter, parse_metric
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.storage import LocalStorage

SKEW_REASON_PREFIX = "event time "
"""Every clock-skew reason starts so ('event time 90 s ahead of the clock'); no other does."""
NAMED_AT_MOST = 20


class ClockSkewConfig(Config):
    max_ratio: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Warn above this share of events refused for clock skew."
    )
    window_minutes: int = Field(default=60, ge=1, description="Only events this recent count.")


def skew_result(config: ClockSkewConfig, events: int, sources: Counter[str], what: str) -> AssetCheckResult:
    """WARN when more than `max_ratio` of the window's events were refused, naming the sources."""
    refused = sum(sources.values())
    ratio = refused / events if events else 0.0
    named = ", ".join(f"{source} ({count})" for source, count in sources.most_common(NAMED_AT_MOST))
    passed = ratio <= config.max_ratio
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=None
        if passed
        else (
            f"{refused:,} of {events:,} {what} in the last {config.window_minutes} minutes "
            f"({ratio:.1%}) were refused for a clock ahead of time, from {named}: fix their clocks "
            "(NTP); the refused events are kept aside with the reason"
        ),
        metadata={
            "refused for clock skew": MetadataValue.int(refused),
            "events": MetadataValue.int(events),
            "ratio": MetadataValue.float(round(ratio, 6)),
            "max ratio": MetadataValue.float(config.max_ratio),
            "clocks ahead": MetadataValue.json(dict(sources.most_common(NAMED_AT_MOST))),
            "window (minutes)": MetadataValue.int(config.window_minutes),
        },
    )


@asset_check(
    asset="server_metrics",
    description="At most 1 % of the last hour's metrics messages were refused for a clock ahead of "
    "time; names the server ids whose clocks are off.",
)
def metrics_clocks_are_right(
    config: ClockSkewConfig, kafka: KafkaResource, metrics_db: MetricsDatabase
) -> AssetCheckResult:
    from sqlalchemy import func, select

    tables = metrics_db.tables
    now = datetime.now(UTC)
    since = now - timedelta(minutes=config.window_minutes)
    topic = kafka.metrics_topic
    letters = tables.dead_letters
    recent = (letters.c.kafka_topic == topic, letters.c.recorded_at >= since)
    with metrics_db.transaction() as connection:
        rows = connection.execute(
            select(func.count())
            .select_from(tables.metrics)
            .where(tables.metrics.c.kafka_topic == topic, tables.metrics.c.ingested_at >= since)
        ).scalar_one()
        dead = connection.execute(select(func.count()).select_from(letters).where(*recent)).scalar_one()
        skewed = (
            connection.execute(
                select(letters.c.raw_value).where(*recent, letters.c.reason.startswith(SKEW_REASON_PREFIX))
            )
            .scalars()
            .all()
        )
    servers: Counter[str] = Counter()
    for raw in skewed:
        parsed = parse_metric(raw, now)
        servers[f"server {parsed.server_id}" if not isinstance(parsed, DeadLetter) else "unknown server"] += 1
    return skew_result(config, rows + dead, servers, "metrics messages")


@asset_check(
    asset="log_summary",
    description="At most 1 % of the last hour's log lines were refused for a clock ahead of time; "
    "names the source addresses whose clocks are off.",
)
def log_clocks_are_right(config: ClockSkewConfig, kafka: KafkaResource, storage: LocalStorage) -> AssetCheckResult:
    since = datetime.now(UTC) - timedelta(minutes=config.window_minutes)
    topic = kafka.logs_topic
    since_ms = int(since.timestamp() * 1000)
    events = sum(
        marks.high - kafka.offset_for_time(topic, partition, since_ms)
        for partition, marks in kafka.watermarks(topic).items()
    )
    rejects = read_rejects(stream_paths(storage).rejects_dir)
    sources: Counter[str] = Counter()
    if not rejects.empty:
        recent = rejects[
            (rejects["kafka_timestamp"] >= since) & rejects["reject_reason"].str.startswith(SKEW_REASON_PREFIX)
        ]
        sources.update(line.split(" ", 1)[0] for line in recent["line"])
    return skew_result(config, events, sources, "log lines")
