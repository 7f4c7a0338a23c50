"""`server_metrics`: every valid metrics message in the SQL table exactly once, and its checks."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
    asset_check,
)
from pydantic import Field

from sml_assets.assets.previews import metrics_previews
from sml_assets.assets.topics import METRICS_TOPIC_KEY
from sml_assets.cadence import INGEST_METRICS_POOL, METRICS_PERIOD, freshness_for
from sml_assets.ingest import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONSUMER,
    DEFAULT_MAX_MESSAGES,
    STREAMED_CHUNK_SIZE,
    IngestReport,
    ingest_metrics,
)
from sml_assets.parsing import METRIC_FIELDS, PERCENT_MAX, PERCENT_MIN
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Table

COLUMNS = TableSchema(
    columns=[
        TableColumn("server_id", "integer", description="server 1..N"),
        *(TableColumn(field, "float", description="percent, 0..100") for field in METRIC_FIELDS),
        TableColumn("event_time", "timestamp (UTC)", description="the message's ts, else its Kafka timestamp"),
        TableColumn("kafka_topic", "string"),
        TableColumn("kafka_partition", "integer"),
        TableColumn("kafka_offset", "bigint", description="unique with topic, topic id and partition"),
        TableColumn("ingested_at", "timestamp (UTC)", description="when the chunk was committed"),
        TableColumn("kafka_topic_id", "string", description="Kafka's topic id: rows of a recreated topic stay apart"),
    ]
)

SERVER_METRICS_KEY = AssetKey("server_metrics")
RANGES_KEY = "offset ranges"
"""Materialization metadata: {partition: [first offset read, next offset]} of the run, what the checks scan."""
MATERIALIZATIONS_PAGE = 500


class IngestConfig(Config):
    """How much one run drains; the defaults suit the 2-minute schedule."""

    max_messages: int = Field(
        default=DEFAULT_MAX_MESSAGES, ge=1, description="Cap per run; the rest waits for the next run."
    )
    chunk_size: int | None = Field(
        default=None,
        ge=1,
        description=f"Messages per transaction; by default {STREAMED_CHUNK_SIZE:,} on PostgreSQL (rows stream "
        f"to the server, none held) and {DEFAULT_CHUNK_SIZE:,} elsewhere (rows held until the commit).",
    )
    consumer_name: str = Field(
        default=DEFAULT_CONSUMER, description="Whose stored offsets in sml_offsets to read and advance."
    )


@asset(
    key="server_metrics",
    group_name="metrics",
    deps=[METRICS_TOPIC_KEY],
    kinds={"kafka", "sql"},
    metadata={"dagster/column_schema": COLUMNS},
    pool=INGEST_METRICS_POOL,
    freshness_policy=freshness_for(METRICS_PERIOD),
    description="Table server_matric (SML_METRICS_TABLE): every valid metrics message exactly once; "
    "rejects in sml_dead_letters, positions in sml_offsets.",
)
def server_metrics(
    context: AssetExecutionContext, config: IngestConfig, kafka: KafkaResource, metrics_db: MetricsDatabase
) -> MaterializeResult:
    report = ingest_metrics(
        kafka,
        metrics_db,
        context.log,
        consumer_name=config.consumer_name,
        max_messages=config.max_messages,
        chunk_size=config.chunk_size,
    )
    return MaterializeResult(metadata=report_metadata(report, metrics_db))


def report_metadata(report: IngestReport, metrics_db: MetricsDatabase) -> dict[str, MetadataValue]:
    """What the UI shows per materialization; the URL is masked, so it is safe to display."""
    lines = ["| partition | from | to | end offset at start | lag left |", "|---:|---:|---:|---:|---:|"]
    for run in report.partitions:
        lag = report.lag_left.get(run.partition, 0)
        lines.append(f"| {run.partition} | {run.start} | {run.next_offset} | {run.target} | {lag} |")
    return {
        "rows inserted": MetadataValue.int(report.rows),
        "dead letters": MetadataValue.int(report.dead_letters),
        "dead letters by reason": MetadataValue.json(dict(report.dead_letter_kinds.most_common())),
        "messages read": MetadataValue.int(report.messages),
        "offsets": MetadataValue.md("\n".join(lines)),
        RANGES_KEY: MetadataValue.json({str(run.partition): [run.start, run.next_offset] for run in report.partitions}),
        "lag left": MetadataValue.int(sum(report.lag_left.values())),
        "skipped by retention": MetadataValue.int(sum(run.skipped_by_retention for run in report.partitions)),
        "capped": MetadataValue.bool(report.capped),
        "chunks": MetadataValue.int(report.chunks),
        "messages per chunk": MetadataValue.int(report.chunk_size),
        "duration (s)": MetadataValue.float(round(report.duration_s, 3)),
        "rows/s": MetadataValue.float(round(report.rows_per_s, 1)),
        "topic": MetadataValue.text(report.topic),
        "topic id": MetadataValue.text(report.topic_id),
        "started at earliest retained offsets": MetadataValue.bool(report.new_table),
        "table": MetadataValue.text(f"{metrics_db.tables.metrics.name} at {metrics_db.masked_url}"),
        "dagster/table_name": MetadataValue.text(metrics_db.tables.metrics.name),
        **metrics_previews(metrics_db),
    }


class DeadLetterRatioConfig(Config):
    max_ratio: float = Field(default=0.05, ge=0.0, le=1.0, description="Warn above this share of dead letters.")
    window_minutes: int = Field(default=60, ge=1, description="Only runs this recent count.")


class FreshnessConfig(Config):
    max_age_minutes: int = Field(default=10, ge=1, description="Warn when the newest event_time is older.")


@dataclass(frozen=True)
class CheckScope:
    """The Kafka positions the checks look at: what the newest materialization of the topic (same
    topic id, same table) added, from where the one before it ended (so rows a killed run committed
    in between are covered too).

    Each range is a slice of the table's unique (partition, offset, topic, topic id) key, so a check
    costs what the run added, not what the table holds.
    """

    topic: str
    topic_id: str
    ranges: dict[int, tuple[int, int]]

    @property
    def messages(self) -> int:
        return sum(end - start for start, end in self.ranges.values())

    def where(self, table: "Table") -> "ColumnElement[bool] | None":
        """The rows in scope, or None when the scope is empty."""
        from sqlalchemy import and_, or_

        slices = [
            and_(table.c.kafka_partition == partition, table.c.kafka_offset >= start, table.c.kafka_offset < end)
            for partition, (start, end) in sorted(self.ranges.items())
            if end > start
        ]
        if not slices:
            return None
        return and_(table.c.kafka_topic == self.topic, table.c.kafka_topic_id == self.topic_id, or_(*slices))

    def metadata(self) -> dict[str, MetadataValue]:
        listing = ", ".join(f"{p}: {start}..{end}" for p, (start, end) in sorted(self.ranges.items()))
        return {
            "offsets checked": MetadataValue.text(f"{self.topic} [{listing}]"),
            "messages in scope": MetadataValue.int(self.messages),
        }


def _materializations(
    instance: DagsterInstance, wanted: dict[str, str], limit: int, after: datetime | None = None
) -> list[dict[str, Any]]:
    """Metadata values of the newest materializations of server_metrics whose metadata has every
    `wanted` entry (e.g. topic and table), newest first."""
    found: list[dict[str, Any]] = []
    cursor = None
    records_filter = AssetRecordsFilter(
        asset_key=SERVER_METRICS_KEY, after_timestamp=after.timestamp() if after else None
    )
    while len(found) < limit:
        page = instance.fetch_materializations(
            records_filter, limit=min(MATERIALIZATIONS_PAGE, max(limit, 10)), cursor=cursor
        )
        for record in page.records:
            materialization = record.asset_materialization
            metadata = {k: v.value for k, v in materialization.metadata.items()} if materialization else {}
            if all(metadata.get(key) == value for key, value in wanted.items()):
                found.append(metadata)
        if not page.has_more:
            break
        cursor = page.cursor
    return found[:limit]


def check_scope(instance: DagsterInstance, topic: str, table: str) -> CheckScope | None:
    """What the newest materialization for `topic` into `table` added, or None before the first one.

    A partition the previous materialization of the same topic id did not record (the first run, a
    new partition, a recreated topic) is checked from offset 0, once."""
    newest = _materializations(instance, {"topic": topic, "dagster/table_name": table}, limit=1)
    if not newest or RANGES_KEY not in newest[0]:
        return None
    topic_id = str(newest[0].get("topic id", ""))
    found = _materializations(instance, {"topic": topic, "dagster/table_name": table, "topic id": topic_id}, limit=2)
    previous = found[1].get(RANGES_KEY, {}) if len(found) > 1 else {}
    ranges: dict[int, tuple[int, int]] = {}
    for partition, (start, end) in newest[0][RANGES_KEY].items():
        begin = min(start, previous[partition][1]) if partition in previous else 0
        ranges[int(partition)] = (begin, end)
    return CheckScope(topic, topic_id, ranges)


def _nothing_to_check(topic: str, table: str) -> AssetCheckResult:
    return AssetCheckResult(
        passed=True,
        description=f"no materialization of server_metrics from {topic} into {table} recorded yet: nothing to check",
    )


@asset_check(
    asset=server_metrics,
    description="No Kafka message (topic, topic id, partition, offset) the newest run read is in the table twice.",
)
def no_duplicate_messages(
    context: AssetCheckExecutionContext, kafka: KafkaResource, metrics_db: MetricsDatabase
) -> AssetCheckResult:
    """Among the rows the newest run added (see `CheckScope`)."""
    from sqlalchemy import func, select

    table = metrics_db.tables.metrics
    scope = check_scope(context.instance, kafka.metrics_topic, table.name)
    if scope is None:
        return _nothing_to_check(kafka.metrics_topic, table.name)
    key = (table.c.kafka_topic, table.c.kafka_partition, table.c.kafka_offset, table.c.kafka_topic_id)
    count, examples = 0, []
    where = scope.where(table)
    if where is not None:
        duplicates = (
            select(*key, func.count().label("copies")).where(where).group_by(*key).having(func.count() > 1).subquery()
        )
        with metrics_db.transaction() as connection:
            count = connection.execute(select(func.count()).select_from(duplicates)).scalar_one()
            examples = connection.execute(select(duplicates).limit(5)).all()
    listing = "\n".join(
        f"- {topic}[{partition}]@{offset}: {copies} copies" for topic, partition, offset, _id, copies in examples
    )
    return AssetCheckResult(
        passed=count == 0,
        metadata={
            "duplicated messages": MetadataValue.int(count),
            "examples": MetadataValue.md(listing or "none"),
            **scope.metadata(),
        },
    )


@asset_check(
    asset=server_metrics,
    description=f"server_id >= 1 and {', '.join(METRIC_FIELDS)} within 0..100 on every row the newest run read.",
)
def values_in_range(
    context: AssetCheckExecutionContext, kafka: KafkaResource, metrics_db: MetricsDatabase
) -> AssetCheckResult:
    """On the rows the newest run added (see `CheckScope`)."""
    from sqlalchemy import func, or_, select

    table = metrics_db.tables.metrics
    scope = check_scope(context.instance, kafka.metrics_topic, table.name)
    if scope is None:
        return _nothing_to_check(kafka.metrics_topic, table.name)
    outside = or_(
        table.c.server_id < 1,
        *(~table.c[name].between(PERCENT_MIN, PERCENT_MAX) for name in METRIC_FIELDS),
    )
    count = 0
    where = scope.where(table)
    if where is not None:
        with metrics_db.transaction() as connection:
            count = connection.execute(select(func.count()).select_from(table).where(where, outside)).scalar_one()
    return AssetCheckResult(
        passed=count == 0, metadata={"rows out of range": MetadataValue.int(count), **scope.metadata()}
    )


@asset_check(
    asset=server_metrics,
    description="Share of dead letters among the metrics messages the runs of the last window_minutes "
    "read stays under max_ratio.",
)
def dead_letter_ratio(
    context: AssetCheckExecutionContext,
    config: DeadLetterRatioConfig,
    kafka: KafkaResource,
    metrics_db: MetricsDatabase,
) -> AssetCheckResult:
    """Running totals from the runs' own metadata ("rows inserted", "dead letters") for this topic
    and table: the cost follows the number of runs in the window, never the size of the table."""
    since = datetime.now(UTC) - timedelta(minutes=config.window_minutes)
    topic, table = kafka.metrics_topic, metrics_db.tables.metrics.name
    runs = _materializations(
        context.instance, {"topic": topic, "dagster/table_name": table}, limit=100_000, after=since
    )
    rows = sum(int(run.get("rows inserted", 0)) for run in runs)
    dead = sum(int(run.get("dead letters", 0)) for run in runs)
    ratio = dead / (rows + dead) if rows + dead else 0.0
    return AssetCheckResult(
        passed=ratio <= config.max_ratio,
        severity=AssetCheckSeverity.WARN,
        description=None if rows + dead else f"no metrics message ingested in the last {config.window_minutes} minutes",
        metadata={
            "dead-letter ratio": MetadataValue.float(round(ratio, 6)),
            "max ratio": MetadataValue.float(config.max_ratio),
            "dead letters": MetadataValue.int(dead),
            "rows": MetadataValue.int(rows),
            "window (minutes)": MetadataValue.int(config.window_minutes),
            "runs": MetadataValue.int(len(runs)),
        },
    )


@asset_check(asset=server_metrics, description="The newest row's event_time is at most max_age_minutes old.")
def newest_row_is_fresh(config: FreshnessConfig, metrics_db: MetricsDatabase) -> AssetCheckResult:
    from sqlalchemy import func, select

    table = metrics_db.tables.metrics
    with metrics_db.transaction() as connection:
        newest = connection.execute(select(func.max(table.c.event_time))).scalar_one()
    if newest is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, description="the table has no rows yet")
    age = datetime.now(UTC) - newest
    return AssetCheckResult(
        passed=age <= timedelta(minutes=config.max_age_minutes),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "newest event_time": MetadataValue.text(newest.isoformat()),
            "age (minutes)": MetadataValue.float(round(age.total_seconds() / 60, 2)),
            "max age (minutes)": MetadataValue.float(float(config.max_age_minutes)),
        },
    )
