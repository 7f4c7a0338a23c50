"""WebHDFS over HTTPS: HdfsResource verifies the server with the CA in SML_HDFS_CA_LOCATION.

The server is the shared NameNode behind a TLS-terminating front (`TlsProxy`) whose certificate
comes from a CA made by devstack/tls.py: the NameNode leg of every call (status, create, rename,
the redirects it hands out) is HTTPS. The shared DataNode's redirects stay http:// here; a cluster
with dfs.http.policy=HTTPS_ONLY hands out https:// ones, verified by the same session and CA.
A client that does not trust the CA fails at once (no retrying), naming the setting to fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from sml_assets.resources.hdfs import FileDigest, HdfsResource, HdfsUnavailableError
from sml_assets_tests.conftest import HDFS_USER
from sml_assets_tests.secured import TlsProxy, devstack_tls

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return devstack_tls().ensure_ca(tmp_path_factory.mktemp("hdfs-ca"))


@pytest.fixture
def https_webhdfs(hdfs_url: str, ca: Any, tmp_path: Path) -> Iterator[TlsProxy]:
    proxy = TlsProxy(urlparse(hdfs_url).port or 9870, devstack_tls().issue(ca, tmp_path / "tls", "namenode"))
    yield proxy
    proxy.close()


def test_replace_and_digest_over_https_trusting_the_stack_ca(
    https_webhdfs: TlsProxy, ca: Any, hdfs: HdfsResource
) -> None:
    secured = HdfsResource(
        url=https_webhdfs.url,
        user=HDFS_USER,
        base_dir=hdfs.folder,
        ca_location=str(ca.certificate),
        retry_seconds=10,
    )
    data = b"window_start,total\n2026-11-25T16:00:00Z,42\n"
    upload = secured.replace(secured.path("summary.csv"), data)
    assert upload.digest == FileDigest.of(data)
    assert secured.digest(secured.path("summary.csv")) == FileDigest.of(data)
    assert hdfs.digest(hdfs.path("summary.csv")) == FileDigest.of(data), "not on the real HDFS"
    assert https_webhdfs.tls_sessions >= 1


@pytest.mark.parametrize("trusted", ["another CA", "the system CAs"])
def test_a_server_certificate_from_an_untrusted_ca_fails_at_once_naming_the_ca_setting(
    https_webhdfs: TlsProxy, tmp_path: Path, trusted: str
) -> None:
    other = devstack_tls().ensure_ca(tmp_path / "other-ca", subject="/CN=somebody else's CA")
    location = str(other.certificate) if trusted == "another CA" else None
    secured = HdfsResource(url=https_webhdfs.url, user=HDFS_USER, ca_location=location, retry_seconds=30)
    with pytest.raises(HdfsUnavailableError) as raised:
        secured.digest("/user/root/sml-tests/never-there.csv")
    message = str(raised.value)
    assert f"SML_HDFS_URL={https_webhdfs.url}: the TLS handshake failed while reading" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "set SML_HDFS_CA_LOCATION to the PEM file of the CA" in message
    assert f"(now {location or 'unset: the system CAs'})" in message
    assert https_webhdfs.connections == 1, "retried although a certificate does not heal"
    assert https_webhdfs.tls_sessions == 0
