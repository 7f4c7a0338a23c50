"""What a run costs when there is nothing to do: the fixed price every scheduled run pays.

Three materializations through the same `dagster asset materialize` CLI, from its start to its
exit, alternating in each repeat: a trivial one-asset project (`benchmarks/trivial_project.py`,
Dagster's own floor), `server_metrics` with its checks, and `log_summary` + `hdfs_log_summary` with
theirs; each on own empty topics, table, data dir, DAGSTER_HOME and HDFS folder (a warm-up run
first, so the measured runs find their checkpoint and nothing new). Also the import time of the
code location against `import dagster` alone, and whether importing it pulls in pyspark or pandas.

    python benchmarks/bench_run_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BOOTSTRAP, Stat, own_topics, report
from sml_assets.resources.hdfs import HdfsResource

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HDFS_URL = os.environ.get("SML_BENCH_HDFS_URL", "http://127.0.0.1:9870")
HDFS_USER = "root"
RUN_TIMEOUT_S = 600
TARGETS = {
    "trivial_s": ("benchmarks.trivial_project", "one"),
    "server_metrics_s": ("benchmarks.run_cost_definitions", "server_metrics"),
    "log_summary_s": ("benchmarks.run_cost_definitions", "log_summary,hdfs_log_summary"),
}
HEAVY = ("pyspark", "pandas", "numpy", "pyarrow", "sqlalchemy")


def _seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return elapsed


def import_times(repeats: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Wall time of a fresh interpreter importing dagster alone, then the code location."""
    times: dict[str, list[float]] = {"import_dagster_s": [], "import_definitions_s": []}
    for _ in range(repeats):
        times["import_dagster_s"].append(_seconds([sys.executable, "-c", "import dagster"], env))
        times["import_definitions_s"].append(
            _seconds([sys.executable, "-W", "ignore", "-c", "import sml_assets.definitions"], env)
        )
    check = (
        "import sys, sml_assets.definitions; "
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
        "sys.exit(f'importing sml_assets.definitions imported {heavy}' if heavy else 0)"
    )
    _seconds([sys.executable, "-W", "ignore", "-c", check], env)
    return times


def run(repeats: int) -> dict[str, Stat]:
    tmp = Path(tempfile.mkdtemp(prefix="sml-bench-run-cost-"))
    home, data = tmp / "dagster_home", tmp / "data"
    home.mkdir()
    data.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    hdfs_dir = f"/user/{HDFS_USER}/sml-bench/run-cost-{uuid.uuid4().hex[:8]}"
    hdfs = HdfsResource(url=HDFS_URL, user=HDFS_USER, base_dir=f"{hdfs_dir}/HDFS_Proj", retry_seconds=20)
    figures: dict[str, list[float]] = {name: [] for name in TARGETS}
    try:
        with own_topics(2, "runcost") as (metrics, logs):
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "DAGSTER_HOME": str(home),
                "SML_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                "SML_METRICS_TOPIC": metrics,
                "SML_LOGS_TOPIC": logs,
                "SML_METRICS_DB_URL": f"sqlite:///{data / 'sml.db'}",
                "SML_DATA_DIR": str(data),
                "SML_SPARK_JARS_DIR": str(
                    Path(os.environ.get("SML_DATA_DIR", REPO / ".sml-data")) / "jars" / "spark-kafka"
                ),
                "SML_HDFS_URL": HDFS_URL,
                "SML_HDFS_USER": HDFS_USER,
                "SML_BENCH_HDFS_DIR": hdfs.folder,
            }
            imports = import_times(max(repeats, 3), env)
            for index in range(repeats + 1):
                for name, (module, selection) in TARGETS.items():
                    command = [str(BIN / "dagster"), "asset", "materialize", "-m", module, "--select", selection]
                    seconds = _seconds(command, env)
                    if index:
                        figures[name].append(seconds)
                    print(
                        f"  run-cost {'warm-up' if not index else f'repeat {index}/{repeats}'} "
                        f"{name:<17} {seconds:6.1f}s",
                        file=sys.stderr,
                    )
    finally:
        try:
            hdfs.client().delete(hdfs_dir, recursive=True)
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the benchmark's own error
            print(f"  run-cost: could not delete {hdfs_dir} on HDFS: {error}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    return {name: Stat(tuple(values)) for name, values in {**figures, **imports}.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    return report(run(args.repeats), args.json, digits=2)


if __name__ == "__main__":
    sys.exit(main())
