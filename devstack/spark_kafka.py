"""Spark's Kafka connector for the pinned pyspark, copied into a local jar folder.

The Spark resource puts every jar of that folder on `spark.jars`, so no run downloads anything.
"""

from __future__ import annotations

from common import fetch_jars, jars_dir, say

NAME = "spark-kafka"


def up() -> None:
    folder = fetch_jars(NAME, "spark-kafka.xml")
    say(NAME, f"up: {len(list(folder.glob('*.jar')))} jars in {folder}")


def down() -> None:
    """Jars are files, not a process: nothing to stop."""


def status() -> tuple[bool, str]:
    folder = jars_dir(NAME)
    jars = sorted(p.name for p in folder.glob("*.jar")) if (folder / ".complete").exists() else []
    if not any(name.startswith("spark-sql-kafka-0-10_2.13") for name in jars):
        return False, f"connector jars missing in {folder}"
    return True, f"{len(jars)} jars in {folder}"
