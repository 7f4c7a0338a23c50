"""WebHDFS over HTTPS against a real HTTPS-only HDFS: HdfsResource verifies the NameNode and the
DataNodes it is redirected to with the CA in SML_HDFS_CA_LOCATION.

The server is a NameNode and a DataNode of this module's own (`SecuredHdfs`: devstack/hdfs.py's
`start` on free ports, dfs.http.policy=HTTPS_ONLY, PKCS12 keystore and truststore made from a CA of
devstack/tls.py), started once for the module and stopped even when a test fails. Its plain HTTP
ports are closed, so every byte, the DataNode's leg included, goes over verified TLS.
A client that does not trust the CA, or speaks plain HTTP to it, fails at once naming the setting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster import materialize

from sml_assets.assets.hdfs import SUMMARY_FILE, hdfs_log_summary, hdfs_summary_matches_local
from sml_assets.resources.hdfs import FileDigest, HdfsResource, HdfsUnavailableError
from sml_assets.resources.storage import LocalStorage
from sml_assets_tests.conftest import HDFS_USER
from sml_assets_tests.faults import TcpProxy, devstack_module
from sml_assets_tests.secured import SecuredHdfs, devstack_tls

pytestmark = pytest.mark.integration

HEADER = "window_start,window_end,GET_success,GET_failure,POST_success,POST_failure,total,final\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return devstack_tls().ensure_ca(tmp_path_factory.mktemp("hdfs-ca"))


@pytest.fixture(scope="module")
def https_hdfs(tmp_path_factory: pytest.TempPathFactory, ca: Any, stack: None) -> Iterator[SecuredHdfs]:
    """The module's one HTTPS-only HDFS (the stack fixture has fetched the Hadoop jars)."""
    secured = SecuredHdfs(tmp_path_factory.mktemp("https-hdfs"), ca)
    started = time.monotonic()
    try:
        secured.start()
        print(f"\nHTTPS-only HDFS (NameNode + DataNode) start: {time.monotonic() - started:.1f} s")
        yield secured
    finally:
        secured.stop()


def resource(url: str, unique_name: str, ca_location: str | None, retry_seconds: float = 20) -> HdfsResource:
    return HdfsResource(
        url=url,
        user=HDFS_USER,
        base_dir=f"/user/{HDFS_USER}/{unique_name}/HDFS_Proj",
        ca_location=ca_location,
        retry_seconds=retry_seconds,
    )


def test_hdfs_log_summary_replaces_its_file_through_https_namenode_and_datanode(
    https_hdfs: SecuredHdfs, ca: Any, unique_name: str, tmp_path: Path
) -> None:
    hdfs = resource(https_hdfs.url, unique_name, str(ca.certificate))
    target = hdfs.path(SUMMARY_FILE)
    old = (HEADER + "2026-11-25T16:00:00+00:00,2026-11-25T16:05:00+00:00,1,0,0,0,1,true\n").encode()
    assert hdfs.replace(target, old).digest == FileDigest.of(old)
    storage = LocalStorage(data_dir=str(tmp_path / "data"))
    new = (HEADER + "2026-11-25T16:00:00+00:00,2026-11-25T16:05:00+00:00,3,1,2,0,6,true\n" * 3).encode()
    storage.summary_csv.parent.mkdir(parents=True, exist_ok=True)
    storage.summary_csv.write_bytes(new)

    result = materialize([hdfs_log_summary, hdfs_summary_matches_local], resources={"hdfs": hdfs, "storage": storage})

    assert result.success
    assert hdfs.digest(target) == FileDigest.of(new)
    assert hdfs.client().list(hdfs.folder) == [SUMMARY_FILE], "a temporary file was left beside the target"
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    link = result.asset_materializations_for_node("hdfs_log_summary")[0].metadata["hdfs_url"].value
    assert str(link).startswith(f"{https_hdfs.url}/webhdfs/v1/")
    redirect = requests.get(hdfs.open_url(target), allow_redirects=False, verify=str(ca.certificate), timeout=30)
    assert redirect.status_code == 307
    assert redirect.headers["Location"].startswith(f"https://127.0.0.1:{https_hdfs.cluster.https.dn_port}/webhdfs/v1")
    assert requests.get(redirect.headers["Location"], verify=str(ca.certificate), timeout=30).content == new
    port_open = devstack_module("hdfs").port_open
    closed = [https_hdfs.cluster.http_port, https_hdfs.cluster.dn_http_port]
    assert not any(port_open(port) for port in closed), "HTTPS_ONLY left a plain HTTP port open"


@pytest.mark.parametrize("trusted", ["another CA", "the system CAs"])
def test_a_certificate_from_an_untrusted_ca_fails_at_once_naming_the_ca_setting(
    https_hdfs: SecuredHdfs, tmp_path: Path, unique_name: str, trusted: str
) -> None:
    other = devstack_tls().ensure_ca(tmp_path / "other-ca", subject="/CN=somebody else's CA")
    location = str(other.certificate) if trusted == "another CA" else None
    counting = TcpProxy(https_hdfs.cluster.https.port)
    url = f"https://localhost:{counting.port}"
    try:
        with pytest.raises(HdfsUnavailableError) as raised:
            resource(url, unique_name, location, retry_seconds=30).digest(f"/user/{HDFS_USER}/never-there.csv")
    finally:
        counting.close()
    message = str(raised.value)
    assert f"SML_HDFS_URL={url}: the TLS handshake failed while reading" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "set SML_HDFS_CA_LOCATION to the PEM file of the CA" in message
    assert f"(now {location or 'unset: the system CAs'})" in message
    assert counting.connections == 1, "retried although a certificate does not heal"


def test_plain_http_against_the_https_only_namenode_fails_clearly(
    https_hdfs: SecuredHdfs, ca: Any, unique_name: str
) -> None:
    counting = TcpProxy(https_hdfs.cluster.https.port)
    try:
        with pytest.raises(HdfsUnavailableError) as on_tls_port:
            resource(f"http://127.0.0.1:{counting.port}", unique_name, None, retry_seconds=30).digest("/x")
    finally:
        counting.close()
    assert str(on_tls_port.value) == (
        f"SML_HDFS_URL=http://127.0.0.1:{counting.port} answered with TLS while reading /x: the NameNode serves "
        f"HTTPS (dfs.http.policy=HTTPS_ONLY); set SML_HDFS_URL to https://127.0.0.1:{counting.port} and "
        "SML_HDFS_CA_LOCATION to the PEM file of the CA that signed its certificates"
    )
    assert counting.connections == 1, "retried although a TLS server never answers plain HTTP"

    http_url = f"http://127.0.0.1:{https_hdfs.cluster.http_port}"
    with pytest.raises(HdfsUnavailableError) as on_http_port:
        resource(http_url, unique_name, str(ca.certificate), retry_seconds=1).digest("/x")
    assert f"SML_HDFS_URL={http_url} did not answer (connection refused" in str(on_http_port.value)


def test_the_stack_serves_https_beside_http_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SML_STACK_HDFS_HTTPS=1 renders the configuration proven above, with HTTP_AND_HTTPS on the
    stack's ports and a keystore from the stack's CA (rendered only: the shared HDFS is not restarted)."""
    stack = devstack_module("hdfs")
    monkeypatch.setenv("SML_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SML_STACK_HDFS_HTTPS", "1")

    cluster = stack.shared()
    conf = stack._write_conf(cluster)

    assert cluster.url == "http://127.0.0.1:9870"
    assert cluster.namenode_ports() == (9000, 9870, 9871)
    assert cluster.datanode_ports() == (9866, 9867, 9864, 9865)
    site = (conf / "hdfs-site.xml").read_text()
    for value in ("HTTP_AND_HTTPS", "127.0.0.1:9871", "127.0.0.1:9865"):
        assert f"<value>{value}</value>" in site
    assert cluster.https.ca == tmp_path / "stack" / "tls" / "ca.pem"
    assert f"<value>{cluster.https.keystore}</value>" in (conf / "ssl-server.xml").read_text()
    assert cluster.https.keystore.stat().st_size > 0 and cluster.https.truststore.stat().st_size > 0
    monkeypatch.delenv("SML_STACK_HDFS_HTTPS")
    assert stack.shared().https is None
