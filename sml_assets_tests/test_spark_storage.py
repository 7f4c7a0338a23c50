"""SML_SPARK_STORAGE_URL: which folder it names, and the HDFS path sml's checkpoint bookkeeping uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from hdfs import InsecureClient

from sml_assets.logs_stream import CHECKPOINT_DIR, MARKER_FILE, open_checkpoint, stream_paths
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.spark_storage import HdfsPath, SparkStorageError, move, remove_tree, storage_root

HDFS_RPC = "hdfs://127.0.0.1:9000"


def no_client() -> InsecureClient:
    raise AssertionError("a local path needs no WebHDFS client")


@pytest.mark.parametrize(
    ("url", "expected"),
    [("", "data"), ("spark", "data/spark"), ("/srv/sml", "/srv/sml"), ("file:///srv/sml", "/srv/sml")],
)
def test_a_local_storage_url_is_a_folder_relative_to_the_data_dir(url: str, expected: str, tmp_path: Path) -> None:
    assert storage_root(url, tmp_path / "data", no_client, "WebHDFS") == tmp_path / expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3a://bucket/sml", "scheme 's3a' is not supported"),
        ("hdfs:///sml", "an hdfs:// URL needs the NameNode, e.g. hdfs://namenode:9000/sml"),
    ],
)
def test_a_storage_url_sml_cannot_use_is_refused_naming_the_setting(url: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(SparkStorageError, match=f"^SML_SPARK_STORAGE_URL={url}: .*{says}"):
        storage_root(url, tmp_path, no_client, "WebHDFS")


@pytest.mark.integration
def test_checkpoint_bookkeeping_on_hdfs(hdfs: HdfsResource, tmp_path: Path) -> None:
    """A fresh checkpoint, its marker, moving it aside and removing it, all on HDFS through WebHDFS."""
    folder = hdfs.folder.rsplit("/", 1)[0]
    url = f"{HDFS_RPC}{folder}/spark"
    storage = LocalStorage(data_dir=str(tmp_path), spark_storage_url=url)
    paths = stream_paths(storage)
    assert isinstance(paths.checkpoint_root, HdfsPath)
    assert str(paths.checkpoint_root) == f"{url}/{CHECKPOINT_DIR}"

    checkpoint = open_checkpoint(paths, expected_id=None)
    marker = paths.checkpoint_root / MARKER_FILE
    assert checkpoint.fresh and marker.read_text() == checkpoint.checkpoint_id + "\n"
    assert paths.rejects_dir.is_dir() and not marker.is_dir()
    assert [p.name for p in paths.checkpoint_root.iterdir()] == [MARKER_FILE]

    aside = paths.checkpoint_root.with_name("aside")
    move(paths.checkpoint_root, aside)
    assert not paths.checkpoint_root.exists() and (aside / MARKER_FILE).is_file()
    remove_tree(aside)
    assert not aside.exists()
    assert not list(tmp_path.iterdir()), "nothing of Spark's storage may land in SML_DATA_DIR"
