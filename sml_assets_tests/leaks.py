"""What this pytest session's tests left behind: topics, PostgreSQL tables and rows, HDFS folders
and processes. Only names with the session's prefix and processes carrying its mark are looked at,
so other sessions sharing the stack (and the stack's own topics) are never reported."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SESSION_VARIABLE = "SML_TEST_SESSION"
PROCESS_GRACE_S = 15.0
"""Processes told to stop in a teardown may take this long to go."""


@dataclass
class Leaks:
    found: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.found.values())

    def report(self) -> str:
        return "\n".join(f"{what}: {', '.join(items)}" for what, items in self.found.items() if items)


def find_leaks(
    session: str,
    prefix: str,
    services: bool,
    kafka_bootstrap: str,
    postgres_url: str,
    hdfs_url: str,
    hdfs_roots: list[str],
) -> Leaks:
    """Everything still there; `services` False (no test used the stack) checks processes only."""
    leaks = Leaks()
    checks: dict[str, Callable[[], list[str]]] = {"processes": lambda: surviving_processes(session)}
    if services:
        checks |= {
            f"Kafka topics on {kafka_bootstrap}": lambda: kafka_topics(kafka_bootstrap, prefix),
            "PostgreSQL": lambda: postgres_leftovers(postgres_url, prefix),
            f"HDFS {hdfs_url}": lambda: hdfs_paths(hdfs_url, hdfs_roots, prefix),
        }
    for what, check in checks.items():
        try:
            leaks.found[what] = check()
        except Exception as error:  # the check itself must say why it could not look
            leaks.found[what] = [f"could not check ({type(error).__name__}: {error})"]
    return leaks


def kafka_topics(bootstrap: str, prefix: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    return sorted(name for name in metadata.topics if name.startswith(prefix))


def postgres_leftovers(url: str, prefix: str) -> list[str]:
    """Tables named with the prefix, and rows of sml's shared tables for topics named with it."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            names = inspect(connection).get_table_names()
            found = [f"table {name}" for name in sorted(names) if name.startswith(prefix)]
            for shared in ("sml_offsets", "sml_dead_letters"):
                if shared not in names:
                    continue
                topics = connection.execute(
                    text(f"SELECT DISTINCT kafka_topic FROM {shared} WHERE left(kafka_topic, :n) = :prefix"),
                    {"n": len(prefix), "prefix": prefix},
                ).scalars()
                found += [f"{shared} rows of topic {topic}" for topic in sorted(topics)]
            return found
    finally:
        engine.dispose()


def hdfs_paths(url: str, roots: list[str], prefix: str) -> list[str]:
    from hdfs import InsecureClient

    client = InsecureClient(url, user="root", timeout=15)
    found: list[str] = []
    for root in roots:
        names = client.list(root) if client.status(root, strict=False) else []
        found += [f"{root}/{name}" for name in sorted(names) if name.startswith(prefix)]
    return found


def surviving_processes(session: str) -> list[str]:
    """Processes started by this session's tests still alive after a grace period, found by the
    mark they inherit; pytest itself and Spark's JVM (it exits with this process) do not count."""
    deadline = time.monotonic() + PROCESS_GRACE_S
    while True:
        alive = _marked_processes(session)
        if not alive or time.monotonic() >= deadline:
            return [f"pid {pid} ({command})" for pid, command in sorted(alive.items())]
        time.sleep(0.2)


def _marked_processes(session: str) -> dict[int, str]:
    mark = f"{SESSION_VARIABLE}={session}".encode()
    spared = _spared_pids()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            if mark not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().split(") ", 1)[1].startswith("Z"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = command.strip()[:160]
    return found


def _spared_pids() -> set[int]:
    """This process, and PySpark's gateway JVM with its children: they end when pytest ends."""
    spared = {os.getpid()}
    pyspark = sys.modules.get("pyspark")
    gateway = getattr(getattr(pyspark, "SparkContext", None), "_gateway", None) if pyspark else None
    process = getattr(gateway, "proc", None)
    if process is not None:
        spared |= {process.pid, *_descendants(process.pid)}
    return spared


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
