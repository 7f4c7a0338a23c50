"""Local files sml writes: the summary CSV, Spark checkpoints, rejects; all under SML_DATA_DIR."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class LocalStorage(ConfigurableResource):
    """Where local outputs live, so tests point a whole run at a temporary folder."""

    data_dir: str
    summary_file: str = "output_log_summary.csv"

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
