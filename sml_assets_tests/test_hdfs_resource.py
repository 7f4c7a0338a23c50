"""HdfsResource: atomic verified replacement on the real HDFS, and bounded retries of transient failures.

Integration tests each use their own HDFS folder under /user/root/sml-tests/ and delete it afterwards.
The retry tests need no stack: they aim the real client at a closed loopback port or at a small HTTP
server on loopback that answers like a NameNode in trouble.
"""

from __future__ import annotations

import json
import posixpath
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from sml_assets.resources.hdfs import (
    TEMP_SUFFIX,
    FileDigest,
    HdfsReplaceError,
    HdfsResource,
    HdfsUnavailableError,
)

TARGET = "output_log_summary.csv"


def names_in(hdfs: HdfsResource) -> list[str]:
    return sorted(hdfs.client().list(hdfs.folder))


def read(hdfs: HdfsResource, path: str) -> bytes:
    with hdfs.client().read(path) as reader:
        return reader.read()


def webhdfs_put(hdfs: HdfsResource, path: str, **params: str) -> requests.Response:
    return requests.put(f"{hdfs.url}/webhdfs/v1{path}", params={**params, "user.name": hdfs.user}, timeout=30)


@pytest.mark.integration
def test_replace_creates_folders_and_uploads_exact_bytes(hdfs: HdfsResource) -> None:
    data = b"window_start,window_end,total\n2026-11-25T16:00:00Z,2026-11-25T16:05:00Z,3\n"

    upload = hdfs.replace(hdfs.path(TARGET), data)

    assert read(hdfs, hdfs.path(TARGET)) == data
    assert upload.digest == FileDigest.of(data)
    assert hdfs.digest(hdfs.path(TARGET)) == FileDigest.of(data)
    assert names_in(hdfs) == [TARGET]


@pytest.mark.integration
def test_replace_overwrites_previous_version_and_leaves_no_temp_files(hdfs: HdfsResource) -> None:
    hdfs.replace(hdfs.path(TARGET), b"a,b\n1,2\n" * 1000)

    hdfs.replace(hdfs.path(TARGET), b"a,b\n3,4\n")

    assert read(hdfs, hdfs.path(TARGET)) == b"a,b\n3,4\n"
    assert names_in(hdfs) == [TARGET]


@pytest.mark.integration
def test_stack_rename_refuses_existing_target_unless_overwrite_is_asked(hdfs: HdfsResource) -> None:
    """Pins the WebHDFS behaviour `replace` relies on, on the stack's Hadoop version."""
    client = hdfs.client()
    old, new = hdfs.path("old.csv"), hdfs.path("new.csv")
    client.write(old, data=b"old")
    client.write(new, data=b"new")

    plain = webhdfs_put(hdfs, new, op="RENAME", destination=old)
    assert plain.json() == {"boolean": False}
    assert read(hdfs, old) == b"old"

    overwrite = webhdfs_put(hdfs, new, op="RENAME", destination=old, renameoptions="OVERWRITE")
    assert overwrite.status_code == 200
    assert read(hdfs, old) == b"new"
    assert names_in(hdfs) == ["old.csv"]


@pytest.mark.integration
def test_upload_failing_half_way_keeps_previous_version_and_removes_temp(hdfs: HdfsResource) -> None:
    """A space quota lets the NameNode create the temp file, then refuses its first block:
    a real failure between 'file exists' and 'bytes written'."""
    previous = b"a,b\n1,2\n"
    hdfs.replace(hdfs.path(TARGET), previous)
    quota = webhdfs_put(hdfs, hdfs.folder, op="SETQUOTA", namespacequota="-1", storagespacequota="1")
    assert quota.status_code == 200, quota.text

    with pytest.raises(HdfsReplaceError) as raised:
        hdfs.replace(hdfs.path(TARGET), b"a,b\n3,4\n")

    assert hdfs.path(TARGET) in str(raised.value)
    assert hdfs.url in str(raised.value)
    assert "DSQuotaExceededException" in str(raised.value)
    assert read(hdfs, hdfs.path(TARGET)) == previous
    assert names_in(hdfs) == [TARGET]


@pytest.mark.integration
def test_failed_rename_keeps_previous_version_and_removes_temp(
    hdfs: HdfsResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename is sent to the real NameNode with a destination whose folder does not exist."""
    previous = b"a,b\n1,2\n"
    hdfs.replace(hdfs.path(TARGET), previous)
    real_rename = HdfsResource._rename_overwrite

    def rename_into_missing_folder(client, source: str, target: str) -> None:
        real_rename(client, source, posixpath.join(posixpath.dirname(target), "missing", TARGET))

    monkeypatch.setattr(HdfsResource, "_rename_overwrite", staticmethod(rename_into_missing_folder))

    with pytest.raises(HdfsReplaceError, match="FileNotFoundException"):
        hdfs.replace(hdfs.path(TARGET), b"a,b\n3,4\n")

    assert read(hdfs, hdfs.path(TARGET)) == previous
    assert names_in(hdfs) == [TARGET]


@pytest.mark.integration
def test_replace_sweeps_temp_files_left_by_an_old_failed_run_but_not_recent_ones(
    hdfs: HdfsResource,
) -> None:
    client = hdfs.client()
    stale = hdfs.path(f".{TARGET}.0000deadbeef{TEMP_SUFFIX}")
    recent = hdfs.path(f".{TARGET}.00000000cafe{TEMP_SUFFIX}")
    client.write(stale, data=b"partial")
    client.write(recent, data=b"partial")
    client.set_times(stale, modification_time=int((time.time() - 2 * 3600) * 1000))

    hdfs.replace(hdfs.path(TARGET), b"a,b\n")

    assert names_in(hdfs) == sorted([TARGET, posixpath.basename(recent)])


@pytest.mark.integration
def test_digest_of_missing_file_is_none(hdfs: HdfsResource) -> None:
    assert hdfs.digest(hdfs.path("never-written.csv")) is None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_namenode_fails_after_bounded_retries_naming_url_and_fix() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    hdfs = HdfsResource(url=url, retry_seconds=1.5, request_timeout_seconds=2)
    started = time.monotonic()

    with pytest.raises(HdfsUnavailableError) as raised:
        hdfs.replace("/user/root/HDFS_Proj/output_log_summary.csv", b"a,b\n")

    message = str(raised.value)
    assert f"SML_HDFS_URL={url}" in message
    assert "connection refused" in message
    assert "make stack-up" in message
    assert "gave up after 1 attempts" not in message
    assert time.monotonic() - started < 1.5 + 2 * 2


class TroubledNameNode(BaseHTTPRequestHandler):
    """Answers GETFILESTATUS with `failures` scripted errors first, then like a healthy NameNode."""

    failures: list[tuple[int, dict]] = []
    calls: list[str] = []

    def do_GET(self) -> None:
        op = parse_qs(urlparse(self.path).query)["op"][0]
        self.calls.append(op)
        if op == "GETFILESTATUS" and self.failures:
            status, body = self.failures.pop(0)
            self._answer(status, json.dumps(body).encode())
        elif op == "GETFILESTATUS":
            self._answer(200, json.dumps({"FileStatus": {"length": 3, "type": "FILE"}}).encode())
        else:
            self._answer(200, b"abc")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def troubled_namenode() -> Iterator[tuple[str, type[TroubledNameNode]]]:
    handler = type("Handler", (TroubledNameNode,), {"failures": [], "calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


SAFE_MODE = {
    "RemoteException": {
        "exception": "SafeModeException",
        "javaClassName": "org.apache.hadoop.hdfs.server.namenode.SafeModeException",
        "message": "Cannot create file. Name node is in safe mode.",
    }
}

NO_DATANODE = {
    "RemoteException": {
        "exception": "IOException",
        "javaClassName": "java.io.IOException",
        "message": "Failed to find datanode, suggest to check cluster health. excludeDatanodes=null",
    }
}


def test_server_errors_safe_mode_and_missing_datanode_are_retried_until_they_clear(
    troubled_namenode,
) -> None:
    url, handler = troubled_namenode
    handler.failures.extend([(503, {}), (403, SAFE_MODE), (500, {}), (403, NO_DATANODE)])
    hdfs = HdfsResource(url=url, retry_seconds=30)

    assert hdfs.digest("/user/root/HDFS_Proj/x.csv") == FileDigest.of(b"abc")
    assert handler.calls.count("GETFILESTATUS") == 5


def test_lasting_safe_mode_fails_after_bounded_retries_saying_so(troubled_namenode) -> None:
    url, handler = troubled_namenode
    handler.failures.extend([(403, SAFE_MODE)] * 1000)
    hdfs = HdfsResource(url=url, retry_seconds=1.0)

    with pytest.raises(HdfsUnavailableError) as raised:
        hdfs.digest("/user/root/HDFS_Proj/x.csv")

    assert f"SML_HDFS_URL={url} is in safe mode" in str(raised.value)
    assert "wait for the NameNode to leave safe mode" in str(raised.value)


def test_permanent_errors_are_not_retried(troubled_namenode) -> None:
    url, handler = troubled_namenode
    denied = {"RemoteException": {"exception": "AccessControlException", "message": "Permission denied"}}
    handler.failures.append((403, denied))
    hdfs = HdfsResource(url=url, retry_seconds=30)

    with pytest.raises(Exception, match="Permission denied"):
        hdfs.digest("/user/root/HDFS_Proj/x.csv")
    assert handler.calls == ["GETFILESTATUS"]


def test_default_folder_is_the_seeds_hdfs_proj_under_the_users_home() -> None:
    hdfs = HdfsResource(url="http://namenode:9870", user="etl")

    assert hdfs.path(TARGET) == "/user/etl/HDFS_Proj/output_log_summary.csv"
    assert hdfs.open_url(hdfs.path(TARGET)) == (
        "http://namenode:9870/webhdfs/v1/user/etl/HDFS_Proj/output_log_summary.csv?op=OPEN&user.name=etl"
    )
