"""The data itself in the UI: the newest rows of server_matric, each server's latest reading and
the newest log_summary windows, as Dagster table metadata (rendered as tables, not pictures)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from sml_assets.resources.database import MetricsDatabase
from sml_assets.windows import SummaryRow

if TYPE_CHECKING:
    from sqlalchemy import Column, Row

NEWEST_ROWS = 10
LATEST_LOOKBACK = timedelta(hours=1)
"""A server's latest reading is looked for in the hour before the newest row (an index range
scan on event_time), so a server silent for longer drops out of the per-server table."""
METRIC_FIELDS = ("cpu", "mem", "disk")

ROW_SCHEMA = TableSchema(
    columns=[
        TableColumn("server_id", "int"),
        TableColumn("cpu", "float"),
        TableColumn("mem", "float"),
        TableColumn("disk", "float"),
        TableColumn("event_time", "string", description="UTC, ISO-8601"),
        TableColumn("kafka_partition", "int"),
        TableColumn("kafka_offset", "int"),
    ]
)
WINDOW_SCHEMA = TableSchema(
    columns=[
        TableColumn("window_start", "string"),
        TableColumn("window_end", "string"),
        TableColumn("GET_success", "int"),
        TableColumn("GET_failure", "int"),
        TableColumn("POST_success", "int"),
        TableColumn("POST_failure", "int"),
        TableColumn("total", "int"),
        TableColumn("final", "bool"),
    ]
)


@dataclass(frozen=True)
class Reading:
    """One row of server_matric, as shown in the UI."""

    server_id: int
    cpu: float
    mem: float
    disk: float
    event_time: str
    kafka_partition: int
    kafka_offset: int

    def record(self) -> TableRecord:
        return TableRecord(
            {
                "server_id": self.server_id,
                "cpu": self.cpu,
                "mem": self.mem,
                "disk": self.disk,
                "event_time": self.event_time,
                "kafka_partition": self.kafka_partition,
                "kafka_offset": self.kafka_offset,
            }
        )


def _reading(row: Row[*tuple[Any, ...]]) -> Reading:
    return Reading(
        server_id=int(row.server_id),
        cpu=float(row.cpu),
        mem=float(row.mem),
        disk=float(row.disk),
        event_time=row.event_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        kafka_partition=int(row.kafka_partition),
        kafka_offset=int(row.kafka_offset),
    )


def _columns(metrics_db: MetricsDatabase) -> list[Column[Any]]:
    table = metrics_db.tables.metrics
    return [table.c[column.name] for column in ROW_SCHEMA.columns]


def newest_rows(metrics_db: MetricsDatabase, limit: int = NEWEST_ROWS) -> list[Reading]:
    """The `limit` rows with the newest event_time, newest first."""
    from sqlalchemy import select

    table = metrics_db.tables.metrics
    query = (
        select(*_columns(metrics_db))
        .order_by(table.c.event_time.desc(), table.c.kafka_partition, table.c.kafka_offset.desc())
        .limit(limit)
    )
    with metrics_db.transaction() as connection:
        return [_reading(row) for row in connection.execute(query)]


def latest_per_server(metrics_db: MetricsDatabase) -> list[Reading]:
    """Each server's newest reading within LATEST_LOOKBACK of the newest row, by server_id."""
    from sqlalchemy import func, select

    table = metrics_db.tables.metrics
    with metrics_db.transaction() as connection:
        newest = connection.execute(select(func.max(table.c.event_time))).scalar_one()
        if newest is None:
            return []
        rank = (
            func.row_number()
            .over(
                partition_by=table.c.server_id,
                order_by=(table.c.event_time.desc(), table.c.kafka_offset.desc()),
            )
            .label("rank")
        )
        recent = select(*_columns(metrics_db), rank).where(table.c.event_time >= newest - LATEST_LOOKBACK).subquery()
        query = (
            select(*(recent.c[column.name] for column in ROW_SCHEMA.columns))
            .where(recent.c.rank == 1)
            .order_by(recent.c.server_id)
        )
        return [_reading(row) for row in connection.execute(query)]


def readings_table(readings: list[Reading]) -> MetadataValue:
    return MetadataValue.table(records=[reading.record() for reading in readings], schema=ROW_SCHEMA)


def metrics_previews(metrics_db: MetricsDatabase) -> dict[str, MetadataValue]:
    """server_metrics' tables for the UI: the newest rows and every server's latest reading."""
    return {
        "newest rows": readings_table(newest_rows(metrics_db)),
        "latest per server": readings_table(latest_per_server(metrics_db)),
    }


def windows_table(summary_rows: list[SummaryRow], limit: int) -> MetadataValue:
    """The newest `limit` windows of log_summary, newest first."""
    records = [
        TableRecord(
            {
                "window_start": row.window_start,
                "window_end": row.window_end,
                "GET_success": row.GET_success,
                "GET_failure": row.GET_failure,
                "POST_success": row.POST_success,
                "POST_failure": row.POST_failure,
                "total": row.total,
                "final": row.final,
            }
        )
        for row in reversed(summary_rows[-limit:])
    ]
    return MetadataValue.table(records=records, schema=WINDOW_SCHEMA)
