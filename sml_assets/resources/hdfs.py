"""HDFS through WebHDFS with the `hdfs` package: atomic, verified file replacement with bounded retries.

A file is replaced by writing a temporary file beside the target, reading it back to compare size and
sha256, then one WebHDFS RENAME with `renameoptions=OVERWRITE`. Readers see the old file or the new
one, never a partial one. On Hadoop 3.4.2 a plain RENAME onto an existing file answers
`{"boolean": false}` and changes nothing, while the OVERWRITE form replaces the target in one
NameNode operation and answers 200 with an empty body; `hdfs.Client.rename` only sends the plain
form, so the overwrite is sent through the client's own request handler.

Why read back instead of WebHDFS GETFILECHECKSUM: that checksum is an MD5 of per-block MD5s of
per-chunk CRC32Cs, and its value depends on the cluster's block size, bytes-per-checksum and
checksum type; reproducing it locally ties sml to cluster settings. The summary CSV is small (about
30 KB per day of 5-minute windows), so reading it back is cheap and checks the bytes end to end
along the path every reader uses.
"""

from __future__ import annotations

import hashlib
import http.client
import posixpath
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

from sml_assets.errors import STACK_HINT, first_line

if TYPE_CHECKING:
    from hdfs import InsecureClient

T = TypeVar("T")

TEMP_SUFFIX = ".sml-tmp"
STALE_TEMP_SECONDS = 3600.0
"""Temp files older than this are left over from a run that could not clean up (HDFS went away)."""

TRANSIENT_REMOTE_EXCEPTIONS = frozenset({"SafeModeException", "RetriableException", "StandbyException"})
TRANSIENT_REMOTE_MESSAGES = (
    "Failed to find datanode",
    "could only be written to 0 of the",
)
"""No live DataNode yet (starting, restarting, not registered): plain IOExceptions that heal."""
CA_VARIABLE = "SML_HDFS_CA_LOCATION"


class HdfsUnavailableError(RuntimeError):
    """HDFS did not answer, or stayed in safe mode, for the whole retry window."""


class HdfsReplaceError(RuntimeError):
    """A replacement failed for a reason retrying will not fix; the previous file is untouched."""


@dataclass(frozen=True)
class FileDigest:
    """Size and sha256 of a file's bytes: what the local and the HDFS copy must share."""

    size: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> FileDigest:
        return cls(size=len(data), sha256=hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Upload:
    """What a successful replacement wrote, for the asset's metadata."""

    path: str
    digest: FileDigest
    attempts: int
    seconds: float


class HdfsResource(ConfigurableResource):
    """The NameNode's WebHDFS URL and the user whose home holds HDFS_Proj/.

    Every public method retries transient failures (refused connection, timeout, 5xx, safe mode)
    with exponential backoff for at most `retry_seconds`, then raises `HdfsUnavailableError`
    naming the URL.
    """

    url: str
    user: str = "root"
    base_dir: str | None = Field(
        default=None,
        description="HDFS folder of sml's outputs; unset means /user/<user>/HDFS_Proj (the seed's path).",
    )
    retry_seconds: float = Field(default=60.0, description="How long transient failures are retried.")
    request_timeout_seconds: float = Field(default=30.0, description="Per-request connect/read timeout.")
    ca_location: str | None = Field(
        default=None,
        description="PEM file of the CA that signed an https:// WebHDFS URL's certificates (SML_HDFS_CA_LOCATION); "
        "unset means the system's CAs.",
    )

    @property
    def folder(self) -> str:
        return self.base_dir or f"/user/{self.user}/HDFS_Proj"

    def path(self, name: str) -> str:
        """Absolute HDFS path of `name` inside `folder`."""
        return posixpath.join(self.folder, name)

    def open_url(self, hdfs_path: str) -> str:
        """WebHDFS URL that downloads the file (what the UI links to)."""
        return f"{self.url.rstrip('/')}/webhdfs/v1{quote(hdfs_path)}?op=OPEN&user.name={quote(self.user)}"

    def client(self) -> InsecureClient:
        """A WebHDFS client as this resource's user; building it opens no connection."""
        from sml_assets.resources.webhdfs import WebHdfsClient  # requests loads with the first client, not the code

        return WebHdfsClient(
            self.url, verify=self.ca_location or True, user=self.user, timeout=self.request_timeout_seconds
        )

    def replace(self, hdfs_path: str, data: bytes) -> Upload:
        """Make `hdfs_path` hold exactly `data`, atomically, creating parent folders.

        On failure the previous file stays as it was and the temporary file is removed.
        """
        expected = FileDigest.of(data)
        started = time.monotonic()
        _, attempts = self._retrying(f"replacing {hdfs_path}", lambda: self._replace_once(hdfs_path, data, expected))
        return Upload(path=hdfs_path, digest=expected, attempts=attempts, seconds=time.monotonic() - started)

    def digest(self, hdfs_path: str) -> FileDigest | None:
        """Size and sha256 of the file's bytes as readers get them, or None when it does not exist."""
        found, _ = self._retrying(f"reading {hdfs_path}", lambda: self._digest_once(self.client(), hdfs_path))
        return found

    def _replace_once(self, target: str, data: bytes, expected: FileDigest) -> None:
        """One attempt; errors retrying will not fix become `HdfsReplaceError` naming the target."""
        from hdfs import HdfsError

        try:
            self._write_verify_rename(self.client(), target, data, expected)
        except HdfsError as error:
            if _is_transient(error):
                raise
            raise HdfsReplaceError(
                f"could not replace {target} on {self.url} ({error.exception or 'HdfsError'}: "
                f"{first_line(error)}); the previous version is untouched"
            ) from error

    def _write_verify_rename(self, client: InsecureClient, target: str, data: bytes, expected: FileDigest) -> None:
        folder, name = posixpath.split(target)
        client.makedirs(folder)
        self._sweep_stale_temps(client, folder, name)
        temp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
        try:
            client.write(temp, data=data, overwrite=False)
            written = self._digest_once(client, temp)
            if written != expected:
                raise HdfsReplaceError(
                    f"{temp} on {self.url} read back as {written} but {expected} was written: "
                    f"{target} was not replaced; check the DataNode log and rerun"
                )
            self._rename_overwrite(client, temp, target)
        except BaseException:
            self._remove_temp(client, temp)
            raise

    @staticmethod
    def _digest_once(client: InsecureClient, hdfs_path: str) -> FileDigest | None:
        from hdfs import HdfsError

        try:
            client.status(hdfs_path)
        except HdfsError as error:
            if error.exception == "FileNotFoundException":
                return None
            raise
        with client.read(hdfs_path) as reader:
            return FileDigest.of(reader.read())  # pyright: ignore[reportAttributeAccessIssue, reportArgumentType]

    @staticmethod
    def _rename_overwrite(client: InsecureClient, source: str, target: str) -> None:
        """RENAME with renameoptions=OVERWRITE: one NameNode operation, so readers never see a gap.

        Hadoop answers 200 with an empty body on success and an error status otherwise; a JSON
        `false` would mean the server ignored the option and did not replace the file.
        """
        from hdfs import HdfsError

        response = client._rename(source, destination=target, renameoptions="OVERWRITE")  # pyright: ignore[reportCallIssue]
        if response.content and response.json().get("boolean") is False:
            raise HdfsError(f"RENAME {source} -> {target} with OVERWRITE answered false", exception="RenameRefused")

    def _remove_temp(self, client: InsecureClient, temp: str) -> None:
        try:
            client.delete(temp)
        except Exception as error:
            get_dagster_logger().warning(
                f"could not remove temporary file {temp} on {self.url} ({first_line(error)}); "
                "the next replacement of the same file removes it"
            )

    def _sweep_stale_temps(self, client: InsecureClient, folder: str, name: str) -> None:
        """Remove temp files of `name` that a run could not delete because HDFS was unreachable."""
        cutoff_ms = (time.time() - STALE_TEMP_SECONDS) * 1000
        for child, status in client.list(folder, status=True):
            if child.startswith(f".{name}.") and child.endswith(TEMP_SUFFIX) and status["modificationTime"] < cutoff_ms:
                self._remove_temp(client, posixpath.join(folder, child))

    def _retrying(self, what: str, action: Callable[[], T]) -> tuple[T, int]:
        """Run `action` until it succeeds or the retry window closes; return its result and attempts."""
        import requests

        started = time.monotonic()
        deadline = started + self.retry_seconds
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                return action(), attempt
            except requests.exceptions.SSLError as error:
                raise HdfsUnavailableError(
                    f"SML_HDFS_URL={self.url}: the TLS handshake failed while {what} ({first_line(error)}): "
                    f"set {CA_VARIABLE} to the PEM file of the CA that signed the NameNode's and DataNodes' "
                    f"certificates (now {self.ca_location or 'unset: the system CAs'})"
                ) from None
            except Exception as error:
                if _answered_with_tls(error):
                    raise HdfsUnavailableError(
                        f"SML_HDFS_URL={self.url} answered with TLS while {what}: the NameNode serves HTTPS "
                        f"(dfs.http.policy=HTTPS_ONLY); set SML_HDFS_URL to https://{self.url.split('://', 1)[-1]} "
                        f"and {CA_VARIABLE} to the PEM file of the CA that signed its certificates"
                    ) from None
                if not _is_transient(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HdfsUnavailableError(
                        f"SML_HDFS_URL={self.url} {_describe(error)} while {what}; gave up after "
                        f"{attempt} attempts in {time.monotonic() - started:.0f}s: {STACK_HINT}"
                        + (" and wait for the NameNode to leave safe mode" if _in_safe_mode(error) else "")
                    ) from error
                get_dagster_logger().warning(
                    f"{what} on {self.url}: {_describe(error)}; retrying in {min(delay, remaining):.1f}s"
                )
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 8.0)


def _is_transient(error: BaseException) -> bool:
    import requests
    from hdfs import HdfsError

    from sml_assets.resources.webhdfs import ServerError

    transient = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
        ServerError,
    )
    if isinstance(error, transient):
        return True
    return isinstance(error, HdfsError) and (
        error.exception in TRANSIENT_REMOTE_EXCEPTIONS or any(text in str(error) for text in TRANSIENT_REMOTE_MESSAGES)
    )


def _answered_with_tls(error: BaseException) -> bool:
    """A plain-HTTP request met a TLS server: the status line it got back is a TLS record (an alert
    0x15 or a handshake 0x16, version 3.x), which no retry turns into HTTP."""
    pending, visited = [error], set()
    while pending:
        current = pending.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, http.client.BadStatusLine):
            return str(current.args[0] if current.args else "")[:2] in ("\x15\x03", "\x16\x03")
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [link for link in (current.__cause__, current.__context__) if link is not None]
    return False


def _in_safe_mode(error: BaseException) -> bool:
    from hdfs import HdfsError

    return isinstance(error, HdfsError) and "safe mode" in str(error).lower()


def _describe(error: BaseException) -> str:
    import requests

    from sml_assets.resources.webhdfs import ServerError

    if isinstance(error, requests.exceptions.Timeout):
        return "did not answer in time"
    if isinstance(error, requests.exceptions.ConnectionError):
        reason = "connection refused" if "refused" in str(error).lower() else first_line(error)
        request = error.request
        url = str(request.url) if request is not None and request.url else ""
        where = f" at {url.split('?')[0]}" if url else ""
        return f"did not answer ({reason}{where})"
    if isinstance(error, ServerError):
        return f"failed ({error})"
    if _in_safe_mode(error):
        return "is in safe mode"
    return f"failed ({first_line(error)})"
