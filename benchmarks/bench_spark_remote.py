"""What a long-lived Spark (a Spark Connect server, SML_SPARK_REMOTE) saves per run against local[2].

Each figure is a new Python process, as each Dagster run is: (1) a session and a first tiny query;
(2) one log_summary materialization of `--lines` new lines on a topic of its own (the run's whole
wall time, process start included), local[2] and Connect alternating, each with its own SML_DATA_DIR;
(3) a backlog of `--backlog-lines` (what a run finds after an outage, or under a high load), one
run per mode in a new process each `--backlog-repeats` times: the query's events/s as the run
reports it (`rows_per_s`), which is where local[2] pays its JIT warm-up in every run (`make run`
uses the Connect server, whose JIT stays warm). Each repeat also runs a backlog of
`--small-backlog-lines` first: the steady rate is the extra lines per extra second of query between
the two (`steady_events_per_s`), what a line costs once a run has started, and the rest of the
small run's query is what a run pays whatever it reads (`query_fixed_s`: its Python workers,
the session, the batch's tasks). For each Connect run of (2) and (3), the CPU seconds
the server's process tree spent on it (its JVM, and its Python workers: the foreachBatch worker and
the parse), read with psutil before and after the run: what a run costs the server whatever it reads,
and what a line costs.
A run with nothing new starts no Spark session at all (`logs_stream.caught_up`), so Connect
saves nothing there. The Connect server (devstack/spark_connect.py, free port, its own folder) is
started once before the repeats (its start is reported, not counted) and stopped at the end.

    python benchmarks/bench_spark_remote.py [--repeats 3] [--lines 20000] [--backlog-lines 1000000]
        [--small-backlog-lines 100000] [--backlog-repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BOOTSTRAP, Stat, log_values, own_topics, produce, report
from sml_assets.settings import data_dir

REPO = Path(__file__).resolve().parent.parent
SESSION = """
import sys, time
started = time.monotonic()
from sml_assets.resources import resources_now
spark = resources_now()["spark"].session()
opened = time.monotonic()
spark.range(1000).count()
print(f"{opened - started:.3f} {time.monotonic() - opened:.3f}")
"""
RUN = """
from dagster import materialize
from sml_assets.assets import logs
from sml_assets.resources import resources_now
resources = resources_now()
keys = ("kafka", "spark", "storage")
result = materialize([logs.log_summary], resources={key: resources[key] for key in keys})
assert result.success
[event] = result.get_asset_materialization_events()
metadata = event.materialization.metadata
print(metadata["rows_per_s"].value, metadata["input_rows"].value)
"""


def connect_server_class() -> Any:
    """devstack/spark_connect.py's SparkConnect; devstack/ goes first on the path, since its
    `from common import ...` must not find benchmarks/common.py."""
    sys.path.insert(0, str(REPO / "devstack"))
    sys.modules.pop("common", None)
    import spark_connect  # pyright: ignore[reportMissingImports]

    return spark_connect.SparkConnect


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child(
    code: str,
    env: dict[str, str],
    figures: dict[str, list[float]] | None = None,
    server_pid: int | None = None,
    what: str = "",
) -> tuple[float, str]:
    """Run `code` in a new process: its wall time and last output line. With `server_pid`, the CPU
    the Connect server spent meanwhile goes into `figures` (`server_<what>_jvm_cpu_s`, `..._python_cpu_s`)."""
    before = server_cpu(server_pid) if server_pid else {}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    elapsed = time.monotonic() - started
    if server_pid and figures is not None:
        after = server_cpu(server_pid)
        for kind in ("jvm", "python"):
            figures.setdefault(f"server_{what}_{kind}_cpu_s", []).append(after[kind] - before.get(kind, 0.0))
    return elapsed, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def server_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the Connect server's JVM and of the Python processes under it (living,
    and reaped: a reaped process's CPU is its parent's `children_*`, and only Python workers exit)."""
    import psutil

    server = psutil.Process(pid)
    spent = {"jvm": 0.0, "python": 0.0}
    for process in [server, *server.children(recursive=True)]:
        try:
            times = process.cpu_times()
            spent["jvm" if process.name() == "java" else "python"] += times.user + times.system
            spent["python"] += times.children_user + times.children_system  # reaped workers
        except psutil.Error:
            continue
    return spent


def steady(small_lines: int, small_rate: float, lines: int, rate: float) -> tuple[float, float]:
    """Events/s once a run has started, and the query seconds a run pays whatever it reads, from
    the query rates of a small and a large backlog: (extra lines / extra seconds, small run's rest)."""
    extra_s = lines / rate - small_lines / small_rate
    if lines <= small_lines or extra_s <= 0:
        raise RuntimeError(
            f"{lines:,} lines took no longer than {small_lines:,} ({extra_s:+.2f} s): "
            "the backlogs are too close for a steady rate; use a larger --backlog-lines"
        )
    per_s = (lines - small_lines) / extra_s
    return per_s, small_lines / small_rate - small_lines / per_s


def measure(repeats: int, lines: int, backlog_lines: int, backlog_repeats: int, small_lines: int) -> dict[str, Stat]:
    folder = Path(tempfile.mkdtemp(prefix="sml-bench-connect-"))
    server = connect_server_class()(
        service="bench-spark-connect", port=free_port(), folder=folder, python=sys.executable, pythonpath=REPO
    )
    figures: dict[str, list[float]] = {}
    try:
        started = time.monotonic()
        server.up()
        print(f"Connect server up in {time.monotonic() - started:.1f} s", flush=True)
        with own_topics(1, "connect", partitions=2) as (topic,):
            base = {**os.environ, "PYTHONPATH": str(REPO), "SML_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP}
            base["SML_LOGS_TOPIC"] = topic
            base["SML_SPARK_JARS_DIR"] = str(data_dir() / "jars" / "spark-kafka")
            envs = {
                "local": {**base, "SML_DATA_DIR": str(folder / "local")},
                "connect": {**base, "SML_DATA_DIR": str(folder / "connect"), "SML_SPARK_REMOTE": server.url},
            }
            for mode in envs:  # warm-up: the server's first query loads the Kafka source and a Python worker
                produce(topic, log_values(100))
                child(RUN, envs[mode])
            server_pid = server.daemon.pid()
            small, backlog, small_backlog = log_values(lines), log_values(backlog_lines), log_values(small_lines)
            for repeat in range(repeats):
                for mode, env in envs.items():
                    _, out = child(SESSION, env)
                    session_s, query_s = map(float, (out or "").split())
                    figures.setdefault(f"{mode}_session_s", []).append(session_s)
                    figures.setdefault(f"{mode}_first_query_s", []).append(query_s)
                produce(topic, small)
                for mode, env in envs.items():
                    wall, _ = child(RUN, env, figures, server_pid if mode == "connect" else None, "run")
                    figures.setdefault(f"{mode}_run_s", []).append(wall)
                print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in figures.items()), flush=True)
            for repeat in range(backlog_repeats):
                rates: dict[tuple[str, str], float] = {}
                for what, values in (("small_backlog", small_backlog), ("backlog", backlog)):
                    produce(topic, values)
                    for mode, env in envs.items():
                        wall, out = child(RUN, env, figures, server_pid if mode == "connect" else None, what)
                        rate, read = out.split()
                        if int(read) != len(values):
                            raise RuntimeError(f"the {mode} run read {read} lines of a backlog of {len(values):,}")
                        rates[mode, what] = float(rate)
                        figures.setdefault(f"{mode}_{what}_events_per_s", []).append(float(rate))
                        figures.setdefault(f"{mode}_{what}_run_s", []).append(wall)
                for mode in envs:
                    per_s, fixed_s = steady(
                        small_lines, rates[mode, "small_backlog"], backlog_lines, rates[mode, "backlog"]
                    )
                    figures.setdefault(f"{mode}_steady_events_per_s", []).append(per_s)
                    figures.setdefault(f"{mode}_query_fixed_s", []).append(fixed_s)
                print(
                    f"backlog {repeat + 1}: "
                    + ", ".join(f"{k} {v[-1]:,.1f}" for k, v in figures.items() if "backlog" in k),
                    flush=True,
                )
    finally:
        server.down()
        shutil.rmtree(folder, ignore_errors=True)
    return {name: Stat(tuple(values)) for name, values in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--backlog-lines", type=int, default=1_000_000)
    parser.add_argument("--small-backlog-lines", type=int, default=100_000)
    parser.add_argument("--backlog-repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = measure(args.repeats, args.lines, args.backlog_lines, args.backlog_repeats, args.small_backlog_lines)
    return report(figures, args.json, digits=2)


if __name__ == "__main__":
    sys.exit(main())
