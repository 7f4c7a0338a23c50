"""A Spark Connect server from the pyspark wheel: one long-lived Spark for every log_summary run.

    python3 devstack/stack.py up spark-connect      # then SML_SPARK_REMOTE=sc://127.0.0.1:15002

Spark runs `local[2]` in the server's JVM, with the Kafka connector jars devstack fetched
(`spark_kafka` must be up first). Runs then connect in well under a second instead of starting a
JVM each (README, "Spark Connect"). log_summary's foreachBatch function runs in a Python worker of
the server: its interpreter (`PYSPARK_PYTHON`, the repository's .venv) must have pyspark[connect]'s
dependencies and import `sml_assets` (PYTHONPATH is the repository), and the server must see the
same SML_DATA_DIR and Spark storage paths as the runs. Log and pid file under
SML_DATA_DIR/stack/spark-connect/. Standard library only, like the rest of devstack.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT, Daemon, StackError, jars_dir, java_bin, port_open, say, stack_dir, wait_until
from spark_cluster import spark_home

NAME = "spark-connect"
START_TIMEOUT = 120.0
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002


def worker_python() -> str:
    """The interpreter of the server's Python workers: the repository's venv when there is one."""
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass(frozen=True)
class SparkConnect:
    """One Connect server on loopback; `service` names its folder (a test's own, under `folder`)."""

    service: str = NAME
    port: int = DEFAULT_PORT
    master: str = "local[2]"
    cores: int = 2
    driver_memory: str = "1g"
    folder: Path | None = None
    python: str | None = None
    pythonpath: Path = REPO_ROOT

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def daemon(self) -> Daemon:
        return Daemon(self.service, "server", self.folder)

    def up(self) -> None:
        """Start the server unless running; return once its gRPC port accepts connections."""
        if not self.daemon.running():
            if port_open(self.port):
                raise StackError(self.service, f"port {self.port} already in use by another process")
            jars = sorted(jars_dir("spark-kafka").glob("*.jar"))
            if not jars:
                raise StackError(self.service, "Spark's Kafka jars are missing: run 'stack.py up spark_kafka' first")
            home = spark_home()
            conf = {
                "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.connect.grpc.binding.port": str(self.port),
                "spark.ui.enabled": "false",
                "spark.log.level": "WARN",
                "spark.sql.shuffle.partitions": str(self.cores),
                "spark.sql.session.timeZone": "UTC",
                "spark.sql.legacy.timeParserPolicy": "CORRECTED",
                "spark.sql.streaming.numRecentProgressUpdates": "1000",
                # Spark 4.2.0 keeps a Python daemon (~47 MiB) per Connect session, forever (SPARK-54055):
                # one per log_summary run. Without the daemon each task's worker exits with its task.
                "spark.python.use.daemon": "false",
            }
            cmd = [
                str(home / "bin" / "spark-submit"),
                *("--class", SERVER_CLASS, "--name", "sml Spark Connect"),
                *("--master", self.master, "--driver-memory", self.driver_memory),
                *("--jars", ",".join(str(jar) for jar in jars)),
                *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
            ]
            env = {
                "SPARK_HOME": str(home),
                "JAVA_HOME": str(Path(java_bin()).resolve().parent.parent),
                "SPARK_LOCAL_IP": "127.0.0.1",
                "PYSPARK_PYTHON": self.python or worker_python(),
                "PYTHONPATH": str(self.pythonpath),
            }
            cwd = self.folder or stack_dir(self.service)
            self.daemon.start(cmd, env=env, cwd=cwd)
            say(self.service, f"starting (log {self.daemon.logfile})")
        if not wait_until(lambda: port_open(self.port) or not self.daemon.running(), START_TIMEOUT):
            raise StackError(self.service, f"no answer on {self.url}", self.daemon.logfile)
        if not self.daemon.running():
            raise StackError(self.service, "the server exited while starting", self.daemon.logfile)

    def down(self) -> None:
        if self.daemon.running():
            self.daemon.stop()
            say(self.service, "stopped")

    def status(self) -> tuple[bool, str]:
        if not self.daemon.running():
            return False, "stopped"
        return port_open(self.port), f"{self.url} (SML_SPARK_REMOTE)"


SERVER = SparkConnect()


def up() -> None:
    SERVER.up()
    say(NAME, SERVER.status()[1])


def down() -> None:
    SERVER.down()


def status() -> tuple[bool, str]:
    return SERVER.status()
