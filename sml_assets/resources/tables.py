"""The SQLAlchemy tables of the metrics database (DESIGN.md section 3).

Apart from `database` so that loading the code location does not import SQLAlchemy: the resource
builds these on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
    UnicodeText,
    UniqueConstraint,
)
from sqlalchemy.dialects import mssql, postgresql

from sml_assets import parsing
from sml_assets.resources.database import DEAD_LETTERS_TABLE, LEGACY_TOPIC_ID, OFFSETS_TABLE, validate_table_name


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the column type each database offers.

    PostgreSQL keeps `timestamptz`; SQLite and SQL Server (DATETIME2, no offset: DATETIMEOFFSET
    breaks pyodbc's fast_executemany) store naive UTC, which is read back as UTC.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.DATETIME2(precision=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column; attach a time zone")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class MetricsSchema:
    """The three tables of DESIGN.md section 3, for one configurable metrics table name."""

    metadata: MetaData
    metrics: Table
    offsets: Table
    dead_letters: Table


def metrics_schema(table_name: str) -> MetricsSchema:
    """Build the tables; `table_name` is validated first."""
    name = validate_table_name(table_name)
    metadata = MetaData()
    metrics = Table(
        name,
        metadata,
        Column("server_id", Integer, nullable=False),
        *(Column(field, Float, nullable=False) for field in parsing.METRIC_FIELDS),
        Column("event_time", UtcDateTime, nullable=False),
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("ingested_at", UtcDateTime, nullable=False),
        _topic_id_column(),
        # Partition and offset first: each insert's descent of the index compares integers that
        # differ at once instead of two texts that are the same for every row (PostgreSQL's binary
        # COPY: heap and this index 1.40 us a row instead of 1.70). Queries give the partition
        # and an offset range, so they use it as well. Tables made before keep their order.
        UniqueConstraint(
            "kafka_partition", "kafka_offset", "kafka_topic", "kafka_topic_id", name=f"uq_{name}_topic_pos"
        ),
        Index(f"ix_{name}_event_time", "event_time"),
    )
    offsets = Table(
        OFFSETS_TABLE,
        metadata,
        Column("consumer", String(200), nullable=False),
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("next_offset", BigInteger, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        _target_table_column(),
        _topic_id_column(),
        PrimaryKeyConstraint(
            "consumer", "target_table", "kafka_topic", "kafka_partition", name="pk_sml_offsets_by_table"
        ),
    )
    dead_letters = Table(
        DEAD_LETTERS_TABLE,
        metadata,
        Column("kafka_topic", String(249), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("raw_value", UnicodeText, nullable=False),
        Column("reason", UnicodeText, nullable=False),
        Column("recorded_at", UtcDateTime, nullable=False),
        _target_table_column(),
        _topic_id_column(),
        UniqueConstraint(
            "target_table",
            "kafka_topic",
            "kafka_topic_id",
            "kafka_partition",
            "kafka_offset",
            name="uq_sml_dead_letters_table_pos",
        ),
        Index("ix_sml_dead_letters_recorded_at", "recorded_at"),
    )
    return MetricsSchema(metadata, metrics, offsets, dead_letters)


def _topic_id_column() -> Column[str]:
    """Kafka's topic id (22 characters of base64). The server default lets a writer that predates
    it still insert, as an unknown id."""
    return Column("kafka_topic_id", String(32), nullable=False, server_default=LEGACY_TOPIC_ID)


def _target_table_column() -> Column[str]:
    return Column("target_table", String(128), nullable=False, server_default="")
