"""hdfs_log_summary on an HDFS with two DataNodes and replication 2: a DataNode SIGKILLed during an
upload leaves the file on HDFS as the old or the new version, never a partial one, and the next run
uploads with the DataNode still dead.

The HDFS is the stack's cluster profile (`devstack/hdfs.py`'s `ReplicatedCluster`: a NameNode and two
DataNodes) on free ports in a temporary folder, with a short heartbeat so the NameNode declares the
killed DataNode dead within ~15 s instead of Hadoop's 10.5 min; the shared HDFS is not touched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import ExecuteInProcessResult, materialize
from hdfs import InsecureClient

from sml_assets.assets.hdfs import SUMMARY_FILE, hdfs_log_summary
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.storage import LocalStorage
from sml_assets_tests.faults import devstack_module, free_port, running, wait_until
from sml_assets_tests.helpers import failure_message

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

ROWS = 600_000
"""Rows of the new summary (~20 MB): an upload long enough to kill a DataNode in the middle of it."""


@pytest.fixture(scope="module")
def hdfs_cluster(tmp_path_factory: pytest.TempPathFactory, stack: None) -> Iterator[Any]:
    """A NameNode and two DataNodes of the module's own (the stack fixture fetched their jars)."""
    nodes = devstack_module("hdfs").ReplicatedCluster.on(
        tmp_path_factory.mktemp("hdfs-cluster"),
        rpc_port=free_port(),
        http_port=free_port(),
        datanode_ports=tuple((free_port(), free_port(), free_port()) for _ in range(2)),
        replication=2,
        heartbeat_s=1,
        recheck_ms=2_000,
    )
    with running(nodes, f"NameNode and two DataNodes on {nodes.url}"):
        yield nodes


def summary(rows: int, total: int) -> bytes:
    lines = ["window_start,total"] + [f"2026-11-25T{i // 60 % 24:02d}:{i % 60:02d}:00Z,{total}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_hdfs_log_summary_with_a_datanode_killed_mid_upload_keeps_old_or_new_and_the_next_run_uploads(
    hdfs_cluster: Any, tmp_path: Path
) -> None:
    resource = HdfsResource(url=hdfs_cluster.url, user="root", retry_seconds=60, request_timeout_seconds=10)
    client = InsecureClient(hdfs_cluster.url, user="root")
    storage = LocalStorage(data_dir=str(tmp_path / "data"))
    target = resource.path(SUMMARY_FILE)
    old, new = summary(3, 1), summary(ROWS, 2)

    def upload() -> ExecuteInProcessResult:
        return materialize([hdfs_log_summary], resources={"hdfs": resource, "storage": storage}, raise_on_error=False)

    def on_hdfs() -> bytes:
        with client.read(target) as reader:
            return reader.read()

    storage.summary_csv.write_bytes(old)
    assert upload().success
    assert client.status(target)["replication"] == 2

    storage.summary_csv.write_bytes(new)
    results: list[ExecuteInProcessResult] = []
    uploading = threading.Thread(target=lambda: results.append(upload()), daemon=True)
    uploading.start()
    wait_until(
        lambda: len(client.list(resource.folder)) > 1 or not uploading.is_alive(), 60, "the upload's temporary file"
    )
    assert uploading.is_alive(), "the upload ended before a DataNode could be killed during it"
    hdfs_cluster.kill_datanode(1)
    uploading.join(timeout=240)
    assert not uploading.is_alive(), "the upload did not end within 240s of the DataNode's death"
    [during] = results
    found = on_hdfs()
    assert found in (old, new), f"{target} holds {len(found):,} bytes, neither the old nor the new version"
    print(
        f"the run during the kill {'succeeded' if during.success else 'failed'}"
        f"{'' if during.success else ': ' + failure_message(during).splitlines()[0]}; "
        f"HDFS then held the {'new' if found == new else 'old'} version"
    )

    after = upload()
    assert after.success, failure_message(after)
    assert on_hdfs() == new
    assert client.list(resource.folder) == [SUMMARY_FILE], "a temporary file was left on HDFS"
