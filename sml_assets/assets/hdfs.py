"""hdfs_log_summary: log_summary's CSV on HDFS at the seed's path, replaced atomically, and its check."""

import csv
import io
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from sml_assets.cadence import HDFS_SUMMARY_POOL, LOGS_PERIOD, freshness_for
from sml_assets.resources.hdfs import FileDigest, HdfsResource
from sml_assets.resources.storage import LocalStorage

SUMMARY_FILE = "output_log_summary.csv"
"""The file name on HDFS (DESIGN.md section 3), whatever the local summary file is called."""


@asset(
    deps=[AssetKey("log_summary")],
    group_name="logs",
    kinds={"hdfs", "csv"},
    automation_condition=AutomationCondition.eager(),
    pool=HDFS_SUMMARY_POOL,
    freshness_policy=freshness_for(LOGS_PERIOD),
    description=(
        "output_log_summary.csv on HDFS under /user/<user>/HDFS_Proj: the same bytes as log_summary's "
        "local CSV, written beside the target, verified, then renamed over it so readers never see "
        "a partial file. Eager, so the HDFS copy follows every log_summary materialization."
    ),
)
def hdfs_log_summary(context: AssetExecutionContext, hdfs: HdfsResource, storage: LocalStorage) -> MaterializeResult:
    """Upload the local summary; a failure leaves the previous HDFS version in place."""
    local = storage.summary_csv
    data = _read_summary(local)
    target = hdfs.path(SUMMARY_FILE)
    upload = hdfs.replace(target, data)
    context.log.info(
        f"replaced {target} on {hdfs.url} with {upload.digest.size} bytes from {local} "
        f"in {upload.seconds:.2f}s ({upload.attempts} attempt(s))"
    )
    return MaterializeResult(
        metadata={
            "hdfs_url": MetadataValue.url(hdfs.open_url(target)),
            "hdfs_path": MetadataValue.text(target),
            "local_path": MetadataValue.path(str(local)),
            "bytes": MetadataValue.int(upload.digest.size),
            "rows": MetadataValue.int(count_rows(data)),
            "sha256": MetadataValue.text(upload.digest.sha256),
            "duration_seconds": MetadataValue.float(round(upload.seconds, 3)),
            "attempts": MetadataValue.int(upload.attempts),
        }
    )


@asset_check(
    asset=hdfs_log_summary,
    description="The HDFS file has the local summary's size and sha256 (read back from HDFS).",
)
def hdfs_summary_matches_local(hdfs: HdfsResource, storage: LocalStorage) -> AssetCheckResult:
    """Catches a copy replaced or truncated behind sml's back, or an upload that silently lagged."""
    local = storage.summary_csv
    target = hdfs.path(SUMMARY_FILE)
    if not local.exists():
        return _failed(f"local summary {local} does not exist: materialize log_summary first")
    expected = FileDigest.of(local.read_bytes())
    found = hdfs.digest(target)
    if found is None:
        return _failed(f"{target} does not exist on {hdfs.url}: materialize hdfs_log_summary")
    metadata = {
        "hdfs_url": MetadataValue.url(hdfs.open_url(target)),
        "local_bytes": MetadataValue.int(expected.size),
        "hdfs_bytes": MetadataValue.int(found.size),
        "local_sha256": MetadataValue.text(expected.sha256),
        "hdfs_sha256": MetadataValue.text(found.sha256),
    }
    if found != expected:
        return _failed(f"{target} on {hdfs.url} differs from {local}: rematerialize hdfs_log_summary", metadata)
    return AssetCheckResult(passed=True, metadata=metadata)


def count_rows(data: bytes) -> int:
    """Data rows of the CSV (header excluded, quoted newlines respected)."""
    records = [row for row in csv.reader(io.StringIO(data.decode("utf-8"))) if row]
    return max(0, len(records) - 1)


def _read_summary(local: Path) -> bytes:
    """Read once, so size, hash and rows describe exactly the bytes uploaded."""
    try:
        return local.read_bytes()
    except FileNotFoundError:
        raise Failure(
            description=(
                f"local summary {local} does not exist: materialize log_summary first "
                "(summarize_logs_job), or check SML_DATA_DIR"
            )
        ) from None


def _failed(description: str, metadata: dict[str, MetadataValue] | None = None) -> AssetCheckResult:
    return AssetCheckResult(
        passed=False, severity=AssetCheckSeverity.ERROR, description=description, metadata=metadata or {}
    )
