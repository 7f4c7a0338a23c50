"""A whole sml deployment in a temporary folder: own topics, own data dir, own Dagster instance,
own HDFS user; driven only through the simulator and the `dagster` CLI, as a user would."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from sml_assets_tests.conftest import HDFS_URL, KAFKA_BOOTSTRAP, stack_data_dir
from sml_assets_tests.helpers import dagster_home, run_side_by_side

BIN = Path(sys.executable).parent


@dataclass
class Deployment:
    root: Path
    name: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, name: str, metrics_topic: str, logs_topic: str) -> Deployment:
        home = dagster_home(root / "dagster-home")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "SML_DATA_DIR": str(root / "data"),
            "SML_SPARK_JARS_DIR": str(stack_data_dir() / "jars" / "spark-kafka"),
            "SML_KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
            "SML_METRICS_TOPIC": metrics_topic,
            "SML_LOGS_TOPIC": logs_topic,
            "SML_METRICS_DB_URL": f"sqlite:///{root / 'data' / 'sml.db'}",
            "SML_HDFS_URL": HDFS_URL,
            "SML_HDFS_USER": name,
            "JAVA_HOME": os.environ.get("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"),
        }
        return cls(root=root, name=name, env=env)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (`dagster`, `python -m simulator`) in this deployment."""
        return self.run_together(args, timeout=timeout)[0]

    def run_together(self, *commands: Sequence[str], timeout: float = 600) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands of the venv side by side in this deployment, wait for all."""
        return run_side_by_side([[self.program(c[0]), *c[1:]] for c in commands], self.env, timeout)

    @staticmethod
    def program(name: str) -> str:
        """`python` is this interpreter; other names are scripts of the venv."""
        if name == "python":
            return sys.executable
        return name if Path(name).is_absolute() else str(BIN / name)

    def simulate(self, *args: str) -> dict:
        truth = self.root / f"truth-{len(list(self.root.glob('truth-*.json')))}.json"
        self.run("python", "-m", "simulator", "--truth", str(truth), *args, timeout=300)
        return json.loads(truth.read_text())

    @property
    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_config(self.env["DAGSTER_HOME"])

    def latest_metadata(self, key: str) -> dict:
        event = self.instance.get_latest_materialization_event(AssetKey(key.split("/")))
        assert event is not None, f"{key} was never materialized"
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    @property
    def summary_csv(self) -> Path:
        return self.root / "data" / "output_log_summary.csv"

    @property
    def hdfs_path(self) -> str:
        return f"/user/{self.name}/HDFS_Proj/output_log_summary.csv"


def csv_windows(data: bytes) -> dict[str, dict[str, str]]:
    """The summary CSV's rows by window start."""
    return {row["window_start"]: row for row in csv.DictReader(io.StringIO(data.decode()))}


def expected_windows(truths: list[dict]) -> dict[str, Counter]:
    """The simulator truths' window counts, added up."""
    expected: dict[str, Counter] = {}
    for truth in truths:
        for start, counts in truth["logs"]["windows"].items():
            expected.setdefault(start, Counter()).update(
                {k: counts[k] for k in ("GET_success", "GET_failure", "POST_success", "POST_failure", "total")}
            )
    return expected
