"""Spark on dagster-pyspark, with the Kafka connector jars that devstack fetched."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from dagster import ConfigurableResource

from sml_assets.resources.spark_master_status import DEFAULT_UI_PORT, executor_shortage, master_state, ui_url

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JAVA_17_CANDIDATES = (
    "/usr/lib/jvm/java-17-openjdk-amd64",
    "/usr/lib/jvm/java-17-openjdk-arm64",
    "/usr/lib/jvm/java-17-openjdk",
    "/usr/lib/jvm/openjdk-17",
)
MASTER_VARIABLE = "SML_SPARK_MASTER"
REMOTE_VARIABLE = "SML_SPARK_REMOTE"
PROBE_TIMEOUT_S = 3.0
"""A master that does not accept a TCP connection in this time is down: Spark itself would retry
its registration three times 20 s apart, then stop the context amid Java stack traces."""
CLUSTER_HINT = (
    "start it (python3 devstack/stack.py up --cluster starts one at spark://127.0.0.1:7077), "
    f"set {MASTER_VARIABLE} to a running master, or unset it for local[2]"
)

REMOTE_HINT = (
    "check that a Spark Connect server is running there and listens on that address "
    "(README, 'Spark Connect', says how to start one from the pyspark wheel), "
    f"or unset {REMOTE_VARIABLE} to run Spark in the run's process"
)


class SparkUnavailableError(RuntimeError):
    """The Spark master or Connect server did not answer, or the master gave no executor in time."""


class SparkResource(ConfigurableResource):
    """A Spark session for Structured Streaming; `master` scales it out (local, standalone, YARN, k8s).

    The session is built by dagster-pyspark's `LazyPySparkResource`, so a run that never asks for
    it pays nothing; `getOrCreate` reuses a live session in the same process (tests, in-process runs).
    Connector jars come from `jars_dir` only: nothing is downloaded through Ivy at run time.
    """

    master: str = "local[2]"
    jars_dir: str
    ui_enabled: bool = False
    shuffle_partitions: int | None = None
    """None: as many as the cores Spark has (its default parallelism); the per-batch aggregation
    is small, so more partitions than cores only add tasks."""
    log_level: str = "WARN"
    driver_memory: str = "1g"
    executor_memory: str = "1g"
    executor_wait_s: float = 20.0
    """On a cluster master, how long to wait for the first executor before failing the run: a master
    whose workers are all busy or gone would otherwise leave the query waiting forever."""
    master_ui_port: int = DEFAULT_UI_PORT
    """The standalone master's web UI port, asked before the session is built whether a worker has room
    for an executor; when nothing answers there with the master's status, only `executor_wait_s` applies."""

    remote: str | None = None
    """A Spark Connect URL (`sc://host:15002`, SML_SPARK_REMOTE): the run's process then talks to a
    long-lived Spark server instead of starting one (seconds of start-up saved per run); `master`,
    `jars_dir`, the memory settings and `log_level` are then the server's business (log4j is per
    JVM: the stack starts its server with `spark.log.level=WARN`). None or "": in-process Spark."""

    def jars(self) -> list[Path]:
        """Every jar in `jars_dir`, or an error saying how to fetch them."""
        folder = Path(self.jars_dir)
        jars = sorted(folder.glob("*.jar")) if folder.is_dir() else []
        if not any(jar.name.startswith("spark-sql-kafka") for jar in jars):
            raise FileNotFoundError(
                f"Spark's Kafka connector jars are missing from {folder} "
                "(expected spark-sql-kafka-0-10_2.13-*.jar and its dependencies): "
                "run 'make stack-up' (python3 devstack/stack.py up) to fetch them"
            )
        return jars

    def spark_config(self) -> dict[str, Any]:
        """The Spark configuration this resource stands for (static settings apply at session start)."""
        return {
            "spark.master": self.master,
            "spark.app.name": "sml",
            "spark.jars": ",".join(str(jar) for jar in self.jars()),
            "spark.ui.enabled": str(self.ui_enabled).lower(),
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.memory": self.driver_memory,
            "spark.executor.memory": self.executor_memory,
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions or 2),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.legacy.timeParserPolicy": "CORRECTED",
            "spark.sql.streaming.numRecentProgressUpdates": "1000",
        }

    def session(self) -> SparkSession:
        """The (possibly shared) session, with Java 17 picked when JAVA_HOME is unset.

        dagster-pyspark and pyspark are imported here, not at module level: importing the code
        location stays cheap."""
        if self.remote:
            return self.remote_session(self.remote)
        from dagster_pyspark import LazyPySparkResource

        ensure_java_home()
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        standalone = self.master.startswith("spark://")
        if standalone:
            check_master_answers(self.master)
            check_master_has_room(self.master, self.master_ui_port, self.executor_memory)
        spark = LazyPySparkResource(spark_config=self.spark_config()).spark_session
        spark.sparkContext.setLogLevel(self.log_level)
        partitions = self.shuffle_partitions or spark.sparkContext.defaultParallelism
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
        if standalone:
            wait_for_executors(spark, self.master, self.executor_wait_s)
        return spark

    def remote_session(self, url: str) -> SparkSession:
        """A Spark Connect session on `url`, after checking that its address accepts a connection:
        the gRPC client would otherwise retry for minutes before failing with a transport error."""
        from pyspark.sql import SparkSession

        check_remote_answers(url)
        spark = SparkSession.builder.remote(url).getOrCreate()
        if self.shuffle_partitions:
            spark.conf.set("spark.sql.shuffle.partitions", str(self.shuffle_partitions))
        return spark


DAEMON_SETTING = "spark.python.use.daemon"


def daemon_warning(url: str, use_daemon: str | None) -> str | None:
    """What to tell the user when the Connect server at `url` starts its Python workers through a
    daemon (`use_daemon` is its `spark.python.use.daemon`, "true" when unset), else None.

    Spark 4.2.0 keys its Python worker factories by session, and a Connect session's factory, with
    its daemon process, lives until the server stops (SPARK-54055): every log_summary run is a new
    session, so the server grows by one daemon (about 47 MiB) per run, 288 a day under the schedule."""
    if (use_daemon or "true").strip().lower() == "false":
        return None
    return (
        f"the Spark Connect server at {url} starts its Python workers through a daemon "
        f"({DAEMON_SETTING}={use_daemon or 'true'}): Spark 4.2.0 keeps one daemon process (about 47 MiB) "
        "per Connect session until the server stops (SPARK-54055), so each log_summary run leaves one "
        f"behind; start the server with --conf {DAEMON_SETTING}=false (devstack/spark_connect.py does), "
        "or restart it daily"
    )


def is_remote(spark: SparkSession) -> bool:
    """True for a Spark Connect session, which has no SparkContext (and no JVM in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def parallelism(spark: SparkSession) -> int:
    """The cores Spark has: the context's default parallelism in process, the session's shuffle
    partitions over Connect (the server's setting, sized to its cores: see devstack)."""
    if is_remote(spark):
        return int(spark.conf.get("spark.sql.shuffle.partitions") or 2)
    return spark.sparkContext.defaultParallelism


def remote_address(url: str) -> tuple[str, int]:
    """Host and port of a Spark Connect URL (`sc://host:port/;param=value`, port 15002 by default)."""
    parsed = urlparse(url.split(";", 1)[0])
    if parsed.scheme != "sc" or not parsed.hostname:
        raise SparkUnavailableError(
            f"{REMOTE_VARIABLE}={url}: not a Spark Connect URL: write it as sc://host:port "
            f"(e.g. sc://127.0.0.1:15002), or unset {REMOTE_VARIABLE} to run Spark in the run's process"
        )
    return parsed.hostname, parsed.port or 15002


def check_remote_answers(url: str) -> None:
    """Fail in seconds, with the setting named, when the Connect server's address refuses a connection."""
    host, port = remote_address(url)
    reason = refusal(host, port)
    if reason is None:
        return
    raise SparkUnavailableError(
        f"{REMOTE_VARIABLE}={url}: no Spark Connect server answers at {host}:{port} ({reason}): {REMOTE_HINT}"
    )


def refusal(host: str, port: int) -> str | None:
    """Why `host:port` refused a TCP connection within PROBE_TIMEOUT_S, or None when it accepted one."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__


def master_addresses(master: str) -> list[tuple[str, int]]:
    """Host and port of each master in a standalone URL (`spark://h1:7077,h2:7077` for HA)."""
    addresses = []
    for part in master.removeprefix("spark://").split(","):
        parsed = urlparse(f"spark://{part}")
        addresses.append((parsed.hostname or "", parsed.port or 7077))
    return addresses


def check_master_answers(master: str) -> None:
    """Fail in seconds, with the setting named, when no master of the URL accepts a connection."""
    reasons = []
    for host, port in master_addresses(master):
        reason = refusal(host, port)
        if reason is None:
            return
        reasons.append(f"{host}:{port}: {reason}")
    raise SparkUnavailableError(
        f"{MASTER_VARIABLE}={master}: no Spark master answers ({'; '.join(reasons)}): {CLUSTER_HINT}"
    )


def check_master_has_room(master: str, ui_port: int, executor_memory: str) -> None:
    """Fail at once when the master's own status says no worker can take an executor now.

    The first master of the URL whose status is ALIVE is judged (a standby lists no workers); when
    no web UI answers with a status, the run goes on and `wait_for_executors` is the judge. Cores
    can still be taken between this look and the application's request: that wait stays.
    """
    for host, _ in master_addresses(master):
        state = master_state(host, ui_port, PROBE_TIMEOUT_S)
        if state is None or state.get("status") != "ALIVE":
            continue
        shortage = executor_shortage(state, executor_memory)
        if shortage is None:
            return
        raise SparkUnavailableError(
            f"{MASTER_VARIABLE}={master}: the master reports {shortage.found} ({ui_url(host, ui_port)}), "
            f"so this application would get no executor: {shortage.check}"
        )


def registered_executors(spark: SparkSession) -> int:
    """Executors registered with the driver now (the driver itself is listed too, so it is left out)."""
    jsc: Any = spark.sparkContext._jsc  # pyright: ignore[reportAttributeAccessIssue]
    return max(0, int(jsc.sc().getExecutorMemoryStatus().size()) - 1)


def wait_for_executors(spark: SparkSession, master: str, timeout_s: float) -> None:
    """Return once an executor registered; else stop the session (freeing its place at the master) and fail.

    A standalone master queues an application it has no free cores or memory for, and its jobs
    then wait forever ("Initial job has not accepted any resources").
    """
    deadline = time.monotonic() + timeout_s
    while registered_executors(spark) == 0:
        if time.monotonic() >= deadline:
            spark.stop()
            raise SparkUnavailableError(
                f"{MASTER_VARIABLE}={master}: the master gave this application no executor within "
                f"{timeout_s:g} s: check on the master's web UI (port 8080 by default) that workers are "
                "ALIVE with free cores and memory (another application may hold every core: give it "
                "spark.cores.max, or the master spark.deploy.defaultCores), and that the workers can "
                "reach this driver (spark.driver.host)"
            )
        time.sleep(0.2)


def ensure_java_home() -> None:
    """Point JAVA_HOME at a Java 17 when unset: Spark 4.2 must not pick up a newer default JDK."""
    if os.environ.get("JAVA_HOME"):
        return
    for candidate in JAVA_17_CANDIDATES:
        if Path(candidate, "bin", "java").exists():
            os.environ["JAVA_HOME"] = candidate
            return
    raise RuntimeError(
        "JAVA_HOME is unset and no Java 17 was found under /usr/lib/jvm "
        f"(looked at {', '.join(JAVA_17_CANDIDATES)}): install openjdk-17 or set JAVA_HOME"
    )
