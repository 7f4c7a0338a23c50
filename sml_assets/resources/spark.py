"""Spark on dagster-pyspark, with the Kafka connector jars that devstack fetched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JAVA_17_CANDIDATES = (
    "/usr/lib/jvm/java-17-openjdk-amd64",
    "/usr/lib/jvm/java-17-openjdk-arm64",
    "/usr/lib/jvm/java-17-openjdk",
    "/usr/lib/jvm/openjdk-17",
)


class SparkResource(ConfigurableResource):
    """A Spark session for Structured Streaming; `master` scales it out (local, standalone, YARN, k8s).

    The session is built by dagster-pyspark's `LazyPySparkResource`, so a run that never asks for
    it pays nothing; `getOrCreate` reuses a live session in the same process (tests, in-process runs).
    Connector jars come from `jars_dir` only: nothing is downloaded through Ivy at run time.
    """

    master: str = "local[2]"
    jars_dir: str
    ui_enabled: bool = False
    shuffle_partitions: int = 2
    log_level: str = "WARN"
    driver_memory: str = "1g"

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
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.legacy.timeParserPolicy": "CORRECTED",
            "spark.sql.streaming.numRecentProgressUpdates": "1000",
        }

    def session(self) -> SparkSession:
        """The (possibly shared) session, with Java 17 picked when JAVA_HOME is unset.

        dagster-pyspark and pyspark are imported here, not at module level: importing the code
        location stays cheap."""
        from dagster_pyspark import LazyPySparkResource

        ensure_java_home()
        spark = LazyPySparkResource(spark_config=self.spark_config()).spark_session
        spark.sparkContext.setLogLevel(self.log_level)
        spark.conf.set("spark.sql.shuffle.partitions", str(self.shuffle_partitions))
        return spark


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
