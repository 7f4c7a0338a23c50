"""Where Spark keeps log_summary's checkpoints and rejects: SML_SPARK_STORAGE_URL, a local folder or HDFS.

On one machine a local folder will do (the default: SML_DATA_DIR itself, so the checkpoints are in
`spark-checkpoints/log_summary` and the rejects in `log_summary/rejects` there, as before the
setting existed). On a cluster every executor writes the checkpoint's state and the rejects, and a
run on another machine must resume from them: they go to a shared filesystem, `hdfs://namenode:9000/
folder`. Spark reads and writes them through its own Hadoop client; sml's bookkeeping around them
(the checkpoint's id and topic files, the committed offsets the lag observation reads, the rejects
the clock-skew check reads, moving a checkpoint aside) goes through WebHDFS at SML_HDFS_URL, which
must be the same cluster's NameNode.

The merged summary state (`log_summary/summary_state.json`) and the CSV stay in SML_DATA_DIR, on the
Dagster side: only the run's own process (the driver) writes them, once per batch, and the CSV is
what the HDFS copy and the UI read; executors never touch them.
"""

from __future__ import annotations

import posixpath
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from hdfs import InsecureClient

STORAGE_VARIABLE = "SML_SPARK_STORAGE_URL"
T = TypeVar("T")


class SparkStorageError(OSError):
    """The Spark storage URL is malformed, or its filesystem did not answer (an OSError, as a local
    folder's failures are, so code that tolerates an unreadable checkpoint tolerates both)."""


class HdfsPath:
    """A file or folder on HDFS with the part of `pathlib.Path` the stream's bookkeeping uses."""

    def __init__(self, url: str, client: Callable[[], InsecureClient], describe: str) -> None:
        parsed = urlparse(url)
        self.authority = parsed.netloc
        self.path = posixpath.normpath(unquote(parsed.path) or "/")
        self._client = client
        self._describe = describe

    def _with_path(self, path: str) -> HdfsPath:
        return HdfsPath(f"hdfs://{self.authority}{path}", self._client, self._describe)

    def __truediv__(self, name: str) -> HdfsPath:
        return self._with_path(posixpath.join(self.path, name))

    def __str__(self) -> str:
        return f"hdfs://{self.authority}{self.path}"

    def __repr__(self) -> str:
        return f"HdfsPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HdfsPath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> HdfsPath:
        return self._with_path(posixpath.dirname(self.path))

    def with_name(self, name: str) -> HdfsPath:
        return self.parent / name

    def _call(self, what: str, action: Callable[[InsecureClient], T]) -> T:
        import requests
        from hdfs import HdfsError

        try:
            return action(self._client())
        except (HdfsError, requests.exceptions.RequestException) as error:
            text = str(error).strip().splitlines()
            raise SparkStorageError(
                f"{STORAGE_VARIABLE}: could not {what} {self} through {self._describe} "
                f"({text[0] if text else type(error).__name__}): is HDFS up, and is that WebHDFS the "
                f"NameNode of {self.authority}?"
            ) from None

    def _type(self) -> str | None:
        status = self._call("look at", lambda client: client.status(self.path, strict=False))
        return status["type"] if status else None

    def exists(self) -> bool:
        return self._type() is not None

    def is_file(self) -> bool:
        return self._type() == "FILE"

    def is_dir(self) -> bool:
        return self._type() == "DIRECTORY"

    def iterdir(self) -> Iterator[HdfsPath]:
        names: list[Any] = self._call("list", lambda client: client.list(self.path))
        return iter([self / str(name) for name in names])

    def read_bytes(self) -> bytes:
        def read(client: InsecureClient) -> bytes:
            reader: Any
            with client.read(self.path) as reader:
                return bytes(reader.read())

        return self._call("read", read)

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_text(self, text: str) -> None:
        self._call("write", lambda client: client.write(self.path, data=text.encode(), overwrite=True))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """WebHDFS MKDIRS always makes the parents and accepts an existing folder."""
        self._call("create", lambda client: client.makedirs(self.path))

    def rename(self, target: HdfsPath) -> HdfsPath:
        self._call("move", lambda client: client.rename(self.path, target.path))
        return target

    def remove_tree(self) -> None:
        self._call("delete", lambda client: client.delete(self.path, recursive=True))


StoragePath = Path | HdfsPath
"""A local path or an HDFS one: both answer `/`, exists, is_dir, iterdir, read_text, mkdir, rename."""


def storage_root(url: str, data_dir: Path, client: Callable[[], InsecureClient], describe: str) -> StoragePath:
    """The folder SML_SPARK_STORAGE_URL names: empty means `data_dir`, a relative path is under it.

    `client` builds the WebHDFS client for `hdfs://` URLs; `describe` names it in errors.
    """
    parsed = urlparse(url)
    if parsed.scheme == "hdfs":
        if not parsed.netloc:
            raise SparkStorageError(
                f"{STORAGE_VARIABLE}={url}: an hdfs:// URL needs the NameNode, e.g. hdfs://namenode:9000/sml"
            )
        return HdfsPath(url, client, describe)
    if parsed.scheme not in ("", "file"):
        raise SparkStorageError(
            f"{STORAGE_VARIABLE}={url}: scheme {parsed.scheme!r} is not supported: give a local folder "
            "(shared by every Spark worker) or an hdfs://namenode:port/folder URL"
        )
    return data_dir / unquote(parsed.path if parsed.scheme else url)


def remove_tree(path: StoragePath) -> None:
    """Delete a folder and everything in it."""
    if isinstance(path, HdfsPath):
        path.remove_tree()
    else:
        shutil.rmtree(path)


def move(source: StoragePath, target: StoragePath) -> None:
    """Move a file or folder to `target` on the same filesystem (its parent is created)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, HdfsPath) and isinstance(target, HdfsPath):
        source.rename(target)
    elif isinstance(source, Path) and isinstance(target, Path):
        shutil.move(str(source), str(target))
    else:
        raise SparkStorageError(f"cannot move {source} to {target}: they are on different filesystems")


def located(like: StoragePath, url: str) -> StoragePath:
    """The path a URL that Spark wrote (e.g. in the file sink's log) names, on `like`'s filesystem."""
    if isinstance(like, HdfsPath):
        return HdfsPath(url, like._client, like._describe)
    return Path(unquote(urlparse(url).path))
