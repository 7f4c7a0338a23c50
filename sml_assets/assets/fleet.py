"""fleet_health: which servers run hot, from each server's latest reading in server_matric.

A WARN check: a hot server is news for the people running the fleet, not a fault in the data.
Thresholds are settings (SML_FLEET_CPU_MAX, SML_FLEET_MEM_MAX, SML_FLEET_DISK_MAX), read when the
check runs.
"""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, MetadataValue, asset_check

from sml_assets.assets.previews import LATEST_LOOKBACK, METRIC_FIELDS, Reading, latest_per_server, readings_table
from sml_assets.resources.database import MetricsDatabase
from sml_assets.settings import fleet_thresholds


def over_thresholds(reading: Reading, thresholds: dict[str, float]) -> list[str]:
    """What is too high on this reading, e.g. ['cpu 95.2 > 90']."""
    return [
        f"{field} {getattr(reading, field):g} > {thresholds[field]:g}"
        for field in METRIC_FIELDS
        if getattr(reading, field) > thresholds[field]
    ]


@asset_check(
    asset=AssetKey("server_metrics"),
    description="Names the servers whose latest cpu, mem or disk is above SML_FLEET_CPU_MAX, "
    "SML_FLEET_MEM_MAX or SML_FLEET_DISK_MAX (percent).",
)
def fleet_health(metrics_db: MetricsDatabase) -> AssetCheckResult:
    thresholds = fleet_thresholds()
    latest = latest_per_server(metrics_db)
    hot = [(reading, over) for reading in latest if (over := over_thresholds(reading, thresholds))]
    if not latest:
        description = f"no server reported in the {LATEST_LOOKBACK} before the newest row (or no rows yet)"
    elif hot:
        description = "above thresholds: " + "; ".join(
            f"server {reading.server_id}: {', '.join(over)}" for reading, over in hot
        )
    else:
        description = f"all {len(latest)} servers within thresholds"
    return AssetCheckResult(
        passed=not hot,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "servers": MetadataValue.int(len(latest)),
            "servers above thresholds": MetadataValue.int(len(hot)),
            "hot servers": MetadataValue.text(", ".join(str(reading.server_id) for reading, _ in hot) or "none"),
            **{f"{field} max (%)": MetadataValue.float(limit) for field, limit in thresholds.items()},
            "latest of hot servers": readings_table([reading for reading, _ in hot]),
        },
    )
