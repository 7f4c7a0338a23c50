"""Files sml writes: the summary CSV and state under SML_DATA_DIR; Spark's checkpoints and rejects
under SML_SPARK_STORAGE_URL (by default SML_DATA_DIR too, see `sml_assets.spark_storage`)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from sml_assets.resources.hdfs import HdfsResource
from sml_assets.settings import setting_value
from sml_assets.spark_storage import StoragePath, storage_root


class LocalStorage(ConfigurableResource):
    """Where local outputs live, so tests point a whole run at a temporary folder."""

    data_dir: str
    summary_file: str = "output_log_summary.csv"
    spark_storage_url: str = ""
    """SML_SPARK_STORAGE_URL: empty means `data_dir`."""

    @property
    def root(self) -> Path:
        path = Path(self.data_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def summary_csv(self) -> Path:
        return self.root / self.summary_file

    def subdir(self, name: str) -> Path:
        """A folder under the data dir (e.g. 'spark-checkpoints/log_summary'), created on demand."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def spark_root(self) -> StoragePath:
        """Spark's storage folder; an hdfs:// one is read through WebHDFS at SML_HDFS_URL (same cluster)."""
        hdfs = HdfsResource(
            url=setting_value("SML_HDFS_URL"),
            user=setting_value("SML_HDFS_USER"),
            ca_location=setting_value("SML_HDFS_CA_LOCATION"),
        )
        return storage_root(self.spark_storage_url, self.root, hdfs.client, f"WebHDFS SML_HDFS_URL={hdfs.url}")
