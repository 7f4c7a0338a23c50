"""The data in the UI: server_metrics' table previews, log_summary's newest windows and the
fleet_health check, on real SQLite and PostgreSQL tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, TableRecord
from sqlalchemy import insert, text

from sml_assets.assets.fleet import fleet_health
from sml_assets.assets.previews import LATEST_LOOKBACK, latest_per_server, metrics_previews, windows_table
from sml_assets.resources.database import MetricsDatabase
from sml_assets.windows import SummaryRow

NOW = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[MetricsDatabase]:
    """An empty metrics table on SQLite (a temp file) or PostgreSQL (a table of its own, dropped after)."""
    if request.param == "sqlite":
        db = MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}", table="server_matric")
    else:
        db = MetricsDatabase(url=request.getfixturevalue("postgres_url"), table=unique_name[:40])
    db.ensure_tables()
    yield db
    if request.param == "postgresql":
        with db.transaction() as connection:
            connection.execute(text(f'DROP TABLE IF EXISTS "{db.table}"'))
    db.engine().dispose()


def insert_readings(db: MetricsDatabase, readings: list[tuple[int, float, float, float, datetime]]) -> None:
    """Rows as ingest would write them: (server_id, cpu, mem, disk, event_time), offsets in order."""
    with db.transaction() as connection:
        connection.execute(
            insert(db.tables.metrics),
            [
                {
                    "server_id": server,
                    "cpu": cpu,
                    "mem": mem,
                    "disk": disk,
                    "event_time": at,
                    "kafka_topic": "t",
                    "kafka_partition": 0,
                    "kafka_offset": offset,
                    "ingested_at": NOW,
                }
                for offset, (server, cpu, mem, disk, at) in enumerate(readings)
            ],
        )


FLEET = [
    (1, 10.0, 20.0, 30.0, NOW - timedelta(minutes=5)),
    (1, 95.0, 20.0, 30.0, NOW - timedelta(minutes=1)),  # server 1's latest: hot cpu
    (2, 50.0, 97.5, 30.0, NOW - timedelta(minutes=2)),  # server 2's latest: hot mem
    (2, 40.0, 40.0, 40.0, NOW - timedelta(minutes=9)),
    (3, 99.0, 99.0, 99.0, NOW - timedelta(minutes=20)),
    (3, 12.0, 13.0, 14.0, NOW),  # server 3 cooled down: its latest reading is fine
    (4, 99.0, 99.0, 99.0, NOW - LATEST_LOOKBACK - timedelta(minutes=1)),  # silent for too long
]


@pytest.mark.integration
def test_previews_hold_the_newest_rows_and_each_servers_latest_reading(database: MetricsDatabase) -> None:
    insert_readings(database, FLEET)
    latest = latest_per_server(database)
    assert [(r.server_id, r.cpu, r.mem, r.disk) for r in latest] == [
        (1, 95.0, 20.0, 30.0),
        (2, 50.0, 97.5, 30.0),
        (3, 12.0, 13.0, 14.0),
    ]
    previews = metrics_previews(database)
    newest = previews["newest rows"].value
    assert [record.data["server_id"] for record in newest.records] == [3, 1, 2, 1, 2, 3, 4]
    assert newest.records[0].data["event_time"] == "2026-11-25T16:30:00.000000Z"
    assert [column.name for column in newest.schema.columns] == [
        "server_id",
        "cpu",
        "mem",
        "disk",
        "event_time",
        "kafka_partition",
        "kafka_offset",
    ]
    assert [record.data["server_id"] for record in previews["latest per server"].value.records] == [1, 2, 3]


@pytest.mark.integration
def test_fleet_health_warns_naming_the_servers_above_the_thresholds_from_settings(
    database: MetricsDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_readings(database, FLEET)
    result = fleet_health(metrics_db=database)
    assert not result.passed
    assert result.severity == AssetCheckSeverity.WARN
    assert result.description == "above thresholds: server 1: cpu 95 > 90; server 2: mem 97.5 > 90"
    assert result.metadata["hot servers"].value == "1, 2"

    monkeypatch.setenv("SML_FLEET_CPU_MAX", "96")
    monkeypatch.setenv("SML_FLEET_MEM_MAX", "98")
    monkeypatch.setenv("SML_FLEET_DISK_MAX", "13.5")
    result = fleet_health(metrics_db=database)
    assert result.description == (
        "above thresholds: server 1: disk 30 > 13.5; server 2: disk 30 > 13.5; server 3: disk 14 > 13.5"
    )

    monkeypatch.setenv("SML_FLEET_DISK_MAX", "99.5")
    result = fleet_health(metrics_db=database)
    assert result.passed, result.description
    assert result.description == "all 3 servers within thresholds"


@pytest.mark.integration
def test_fleet_health_passes_on_an_empty_table_and_says_so(database: MetricsDatabase) -> None:
    result = fleet_health(metrics_db=database)
    assert result.passed
    assert "no server reported" in (result.description or "")


@pytest.mark.parametrize("raw, problem", [("hot", "is not a number"), ("101", "is outside 0..100")])
def test_a_bad_fleet_threshold_is_refused_naming_the_variable(
    raw: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SML_FLEET_MEM_MAX", raw)
    db = MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}", table="server_matric")
    with pytest.raises(ValueError, match=f"SML_FLEET_MEM_MAX='{raw}' {problem}"):
        fleet_health(metrics_db=db)


def test_windows_table_shows_the_newest_windows_first() -> None:
    summary_rows = [
        SummaryRow(f"2026-11-25T16:{m:02d}:00Z", f"2026-11-25T16:{m + 5:02d}:00Z", m, 1, 2, 3, m + 6, m < 10)
        for m in (0, 5, 10)
    ]
    table = windows_table(summary_rows, limit=2).value
    assert [record.data["window_start"] for record in table.records] == [
        "2026-11-25T16:10:00Z",
        "2026-11-25T16:05:00Z",
    ]
    assert table.records[1] == TableRecord(
        {
            "window_start": "2026-11-25T16:05:00Z",
            "window_end": "2026-11-25T16:10:00Z",
            "GET_success": 5,
            "GET_failure": 1,
            "POST_success": 2,
            "POST_failure": 3,
            "total": 11,
            "final": True,
        }
    )
