"""hdfs_log_summary and its check, materialized through Dagster against the real HDFS.

The upstream `log_summary` is a test double that writes a given CSV where the real one writes it
(`storage.summary_csv`), so these tests exercise only the HDFS half of the pipeline.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    ExecuteInProcessResult,
    asset,
    evaluate_automation_conditions,
    materialize,
)
from hypothesis import given
from hypothesis import strategies as st

from sml_assets.assets.hdfs import SUMMARY_FILE, count_rows, hdfs_log_summary, hdfs_summary_matches_local
from sml_assets.resources.hdfs import FileDigest, HdfsResource
from sml_assets.resources.storage import LocalStorage

HEADER = "window_start,window_end,GET_success,GET_failure,POST_success,POST_failure,total,final\n"
ROW = "2026-11-25T16:{m:02d}:00+00:00,2026-11-25T16:{n:02d}:00+00:00,3,1,2,0,6,true\n"
CHECK = AssetCheckKey(AssetKey("hdfs_log_summary"), "hdfs_summary_matches_local")


def summary_csv(windows: int) -> bytes:
    return (HEADER + "".join(ROW.format(m=5 * i, n=5 * i + 5) for i in range(windows))).encode()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(data_dir=str(tmp_path / "data"))


def run(
    storage: LocalStorage, hdfs: HdfsResource, csv_bytes: bytes | None, selection: AssetSelection | None = None
) -> ExecuteInProcessResult:
    """Materialize the upstream double (which writes `csv_bytes`, unless None) and the HDFS asset."""

    @asset(name="log_summary", group_name="logs")
    def log_summary_double(storage: LocalStorage) -> None:
        if csv_bytes is not None:
            storage.summary_csv.write_bytes(csv_bytes)

    return materialize(
        [log_summary_double, hdfs_log_summary, hdfs_summary_matches_local],
        resources={"hdfs": hdfs, "storage": storage},
        selection=selection,
        raise_on_error=False,
    )


def hdfs_bytes(hdfs: HdfsResource) -> bytes:
    with hdfs.client().read(hdfs.path(SUMMARY_FILE)) as reader:
        return reader.read()


def check_result(result: ExecuteInProcessResult):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == CHECK]
    return evaluation


@pytest.mark.integration
def test_materialize_puts_the_local_summary_on_hdfs_with_metadata(hdfs: HdfsResource, storage: LocalStorage) -> None:
    data = summary_csv(windows=4)

    result = run(storage, hdfs, data)

    assert result.success
    assert hdfs_bytes(hdfs) == data
    metadata = result.asset_materializations_for_node("hdfs_log_summary")[0].metadata
    assert metadata["bytes"].value == len(data)
    assert metadata["rows"].value == 4
    assert metadata["sha256"].value == FileDigest.of(data).sha256
    assert metadata["hdfs_url"].value == hdfs.open_url(hdfs.path(SUMMARY_FILE))
    assert metadata["hdfs_path"].value == f"{hdfs.folder}/{SUMMARY_FILE}"
    assert metadata["duration_seconds"].value >= 0
    assert check_result(result).passed


@pytest.mark.integration
def test_rematerializing_replaces_the_hdfs_copy_and_leaves_only_the_target(
    hdfs: HdfsResource, storage: LocalStorage
) -> None:
    assert run(storage, hdfs, summary_csv(windows=50)).success

    result = run(storage, hdfs, summary_csv(windows=2))

    assert result.success
    assert hdfs_bytes(hdfs) == summary_csv(windows=2)
    assert hdfs.client().list(hdfs.folder) == [SUMMARY_FILE]
    assert check_result(result).passed


@pytest.mark.integration
def test_check_fails_when_hdfs_copy_differs_from_local_summary(hdfs: HdfsResource, storage: LocalStorage) -> None:
    assert run(storage, hdfs, summary_csv(windows=3)).success
    hdfs.client().write(hdfs.path(SUMMARY_FILE), data=summary_csv(windows=3)[:-5], overwrite=True)

    result = run(storage, hdfs, None, selection=AssetSelection.checks(CHECK))

    evaluation = check_result(result)
    assert not evaluation.passed
    assert hdfs.path(SUMMARY_FILE) in evaluation.description
    assert evaluation.metadata["hdfs_bytes"].value == len(summary_csv(windows=3)) - 5


@pytest.mark.integration
def test_check_fails_when_hdfs_copy_is_missing(hdfs: HdfsResource, storage: LocalStorage) -> None:
    storage.summary_csv.write_bytes(summary_csv(windows=1))

    result = run(storage, hdfs, None, selection=AssetSelection.checks(CHECK))

    evaluation = check_result(result)
    assert not evaluation.passed
    assert "does not exist" in evaluation.description


def test_asset_fails_naming_the_local_file_when_log_summary_never_wrote_it(storage: LocalStorage) -> None:
    unreachable = HdfsResource(url="http://127.0.0.1:9", retry_seconds=0)

    result = run(storage, unreachable, None, selection=AssetSelection.assets("hdfs_log_summary"))

    assert not result.success
    failure = result.failure_data_for_node("hdfs_log_summary")
    assert str(storage.summary_csv) in failure.user_failure_data.description
    assert "materialize log_summary first" in failure.user_failure_data.description


def test_definitions_place_hdfs_log_summary_downstream_of_log_summary_and_automate_it() -> None:
    from sml_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    node = graph.get(AssetKey("hdfs_log_summary"))
    assert node.group_name == "logs"
    assert AssetKey("log_summary") in node.parent_keys
    assert node.automation_condition is not None
    assert CHECK in graph.asset_check_keys
    automation = [s for s in defs.sensors if s.name == "hdfs_log_summary_automation"]
    assert automation and automation[0].default_status == DefaultSensorStatus.RUNNING


def test_every_log_summary_materialization_and_only_that_requests_hdfs_log_summary(
    storage: LocalStorage,
) -> None:
    @asset(name="log_summary", group_name="logs")
    def log_summary_double() -> None:
        pass

    defs = Definitions(
        assets=[log_summary_double, hdfs_log_summary],
        resources={"hdfs": HdfsResource(url="http://127.0.0.1:9"), "storage": storage},
    )
    instance = DagsterInstance.ephemeral()
    tick = evaluate_automation_conditions(defs=defs, instance=instance)
    assert tick.total_requested == 0

    for _ in range(2):
        materialize([log_summary_double], instance=instance)
        tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.get_requested_partitions(AssetKey("hdfs_log_summary")) == {None}
        tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.total_requested == 0


field = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(st.lists(st.tuples(field, field, field), max_size=30))
def test_count_rows_counts_csv_records_without_header(rows: list[tuple[str, str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["window_start", "window_end", "total"])
    writer.writerows(rows)

    assert count_rows(buffer.getvalue().encode()) == len(rows)
