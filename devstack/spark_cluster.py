"""A Spark standalone master and two workers from the pyspark wheel: the stack's cluster profile.

    python3 devstack/stack.py up --cluster      # then SML_SPARK_MASTER=spark://127.0.0.1:7077

Ports (loopback only): master 7077 (web UI 8080), worker 1 7078 (UI 8081), worker 2 7079 (UI 8082).
Each worker offers 2 cores and 1 GiB to executors, and the master gives an application at most 2
cores unless it sets `spark.cores.max` (`spark.deploy.defaultCores`): without that, one application
takes every core and the next one waits forever. Master and worker daemons run with a 256 MiB heap
(`SPARK_DAEMON_MEMORY`). Logs, pid files and the workers' `--work-dir` (executors' jars and logs)
are under SML_DATA_DIR/stack/spark-cluster/; without `--work-dir` workers write into the venv.
Standard library only, like the rest of devstack; the pyspark wheel is found in the running
interpreter or in the repository's .venv.
"""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT, Daemon, StackError, java_bin, port_open, say, stack_dir, wait_until

NAME = "spark-cluster"
START_TIMEOUT = 90.0
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """The pyspark package folder: its bin/spark-class and jars/ are a complete Spark."""
    spec = importlib.util.find_spec("pyspark")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent
    for candidate in sorted(REPO_ROOT.glob(".venv/lib/python3*/site-packages/pyspark")):
        return candidate
    raise StackError(NAME, "pyspark is not installed: run 'make venv' (or pip install pyspark) first")


@dataclass(frozen=True)
class SparkCluster:
    """One master and its workers on loopback; `service` names the folder under SML_DATA_DIR/stack."""

    service: str = NAME
    master_port: int = 7077
    master_ui_port: int = 8080
    worker_ports: tuple[tuple[int, int], ...] = ((7078, 8081), (7079, 8082))
    """(RPC port, web UI port) of each worker."""
    worker_cores: int = 2
    worker_memory: str = "1g"
    default_cores: int = 2
    daemon_memory: str = "256m"

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def master(self) -> Daemon:
        return Daemon(self.service, "master")

    @property
    def workers(self) -> list[Daemon]:
        return [Daemon(self.service, f"worker-{i + 1}") for i in range(len(self.worker_ports))]

    def up(self, workers: bool = True) -> None:
        """Start the master, then (with `workers`) the workers; return when all are registered."""
        if not self.master.running():
            self._check_free("master", self.master_port, self.master_ui_port)
            args = ["--host", "127.0.0.1", "--port", str(self.master_port), "--webui-port", str(self.master_ui_port)]
            self._start(
                self.master,
                MASTER_CLASS,
                args,
                f"-Dspark.deploy.defaultCores={self.default_cores} -Dspark.master.rest.enabled=false",
            )
        if not wait_until(lambda: self.master_state() is not None, START_TIMEOUT):
            raise StackError(self.service, f"the master did not answer on {self.ui_url}", self.master.logfile)
        for daemon, (port, ui_port) in zip(self.workers if workers else [], self.worker_ports):
            if daemon.running():
                continue
            self._check_free(daemon.name, port, ui_port)
            work_dir = stack_dir(self.service) / f"{daemon.name}-work"
            work_dir.mkdir(exist_ok=True)
            args = [
                *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)),
                *("--cores", str(self.worker_cores), "--memory", self.worker_memory),
                *("--work-dir", str(work_dir), self.master_url),
            ]
            self._start(daemon, WORKER_CLASS, args, "")
        wanted = len(self.worker_ports) if workers else 0
        if not wait_until(lambda: self.alive_workers() >= wanted, START_TIMEOUT):
            logs = self.workers[-1].logfile if wanted else self.master.logfile
            raise StackError(self.service, f"{wanted} workers did not register with {self.master_url}", logs)

    def down(self) -> None:
        """Workers first, then the master (each with its executors: they share its process group)."""
        for daemon in [*self.workers, self.master]:
            if daemon.running():
                daemon.stop()
                say(self.service, f"{daemon.name} stopped")

    def status(self) -> tuple[bool, str]:
        """Up means the master answers and every worker is registered ALIVE with it."""
        if not self.master.running():
            return False, "stopped"
        alive = self.alive_workers()
        up = alive >= len(self.worker_ports)
        return up, f"master {self.master_url} (UI {self.ui_url}), {alive} alive worker{'' if alive == 1 else 's'}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.master_ui_port}"

    def master_state(self) -> dict | None:
        """The master's own JSON status (workers, cores, applications), or None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    def alive_workers(self) -> int:
        state = self.master_state() or {}
        return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")

    def _check_free(self, role: str, *ports: int) -> None:
        taken = [port for port in ports if port_open(port)]
        if taken:
            raise StackError(self.service, f"{role}: port(s) {taken} already in use by another process")

    def _start(self, daemon: Daemon, main_class: str, args: list[str], options: str) -> None:
        home = spark_home()
        java_home = str(Path(java_bin()).resolve().parent.parent)
        env = {
            "SPARK_HOME": str(home),
            "JAVA_HOME": java_home,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            "SPARK_MASTER_OPTS": options,
            "SPARK_NO_DAEMONIZE": "1",
        }
        daemon.start([str(home / "bin" / "spark-class"), main_class, *args], env=env, cwd=stack_dir(self.service))
        say(self.service, f"{daemon.name} starting (log {daemon.logfile})")


CLUSTER = SparkCluster()


def up() -> None:
    CLUSTER.up()
    say(NAME, CLUSTER.status()[1])


def down() -> None:
    CLUSTER.down()


def status() -> tuple[bool, str]:
    return CLUSTER.status()
