"""`make bench`: every benchmark against the running local stack, one table, one JSON file.

Each part runs in a subprocess of its own (a Spark JVM or a daemon never lingers into the next
part), on the same simulator data (seed 1, start 2026-11-25T16:00Z); ratios are taken between
medians of the same run. The JSON lands in benchmarks/results/ (git-ignored).

    python benchmarks/run_all.py [--quick] [--only ingest connect logs spark_remote sensor memory simulator run_cost]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_simulator
from benchmarks.common import BOOTSTRAP

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTS = ("ingest", "connect", "logs", "spark_remote", "sensor", "memory", "simulator", "run_cost")
PART_TIMEOUT_S = 1800
PROGRESS = re.compile(r"  (ingest|connect|memory|logs|sensor|simulator|run-cost) ")
"""The parts' own progress lines on stderr; the rest (Dagster, Spark) is dropped, its tail shown on failure."""


@dataclass(frozen=True)
class Sizes:
    ingest_messages: int
    ingest_repeats: int
    log_lines: int
    log_repeats: int
    sensor_repeats: int
    memory_sizes: tuple[int, int]
    simulator_messages: int
    simulator_repeats: int
    run_cost_repeats: int
    connect_messages: int
    connect_repeats: int
    spark_remote_lines: int = 20_000
    spark_remote_repeats: int = 3
    spark_remote_backlog_lines: int = 1_000_000
    spark_remote_backlog_repeats: int = 2
    spark_remote_small_backlog_lines: int = 100_000


FULL = Sizes(
    ingest_messages=200_000,
    ingest_repeats=5,
    log_lines=500_000,
    log_repeats=3,
    sensor_repeats=4,
    memory_sizes=(100_000, 1_000_000),
    simulator_messages=200_000,
    simulator_repeats=3,
    run_cost_repeats=3,
    connect_messages=200_000,
    connect_repeats=2,
)
"""Five ingest repeats: the six contenders that read Kafka take turns in the first place
(`bench_ingest.run` rotates all eight, the two write-alone ones included), and the median of five
steadies the plain loop, the most variable figure (290,000 to 459,000 rows/s over two runs of three
repeats)."""
QUICK = Sizes(
    ingest_messages=50_000,
    ingest_repeats=2,
    log_lines=100_000,
    log_repeats=2,
    sensor_repeats=2,
    memory_sizes=(20_000, 200_000),
    simulator_messages=50_000,
    simulator_repeats=2,
    run_cost_repeats=1,
    connect_messages=50_000,
    connect_repeats=1,
    spark_remote_repeats=1,
    spark_remote_backlog_lines=200_000,
    spark_remote_backlog_repeats=1,
    spark_remote_small_backlog_lines=20_000,
)


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, and optionally its ratio to another and the target."""

    section: str
    label: str
    unit: str
    figure: dict[str, Any]
    ratio: str = ""
    target: str = ""
    met: bool | None = None


def load_verdict(start: Sequence[float], end: Sequence[float], cores: int) -> str:
    """What the 1-minute load averages around the run say of its absolute figures."""
    if max(start[0], end[0]) > cores:
        return " (above the core count: measured under load, compare the ratios)"
    return " (at most the core count: nothing else competed much)"


def part(script: str, *args: str) -> Any:
    """Run benchmarks/<script> with --json, echo its progress lines, return its figures."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    command = [sys.executable, str(HERE / script), *args, "--json", str(out)]
    started = time.monotonic()
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as process:
        assert process.stderr is not None
        tail: list[str] = []
        for line in process.stderr:
            if PROGRESS.match(line):
                print(line, end="", file=sys.stderr, flush=True)
            tail = [*tail[-30:], line]
            if time.monotonic() - started > PART_TIMEOUT_S:
                process.kill()
        if process.wait() != 0:
            raise SystemExit(f"{script} failed:\n{''.join(tail)}")
    figures = json.loads(out.read_text())
    out.unlink()
    return figures


def simulator(messages: int, repeats: int) -> dict[str, Any]:
    """bench_simulator's own loop: the bare loop and the simulator, alternating, fresh topics."""
    rates = bench_simulator.alternate(BOOTSTRAP, messages, repeats, partitions=3, label="simulator ")
    return {mode: _stat(values) for mode, values in rates.items()}


def _stat(values: list[float]) -> dict[str, Any]:
    median = statistics.median(values)
    return {
        "median": median,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / median if median else 0.0,
        "values": values,
    }


def _single(value: float) -> dict[str, Any]:
    return _stat([value])


def rows(results: dict[str, Any], sizes: Sizes) -> list[Row]:
    """The table: every figure with the ratio and target the issue asks for."""
    table: list[Row] = []
    if "ingest" in results:
        r = results["ingest"]
        section = f"1 metrics ingestion, {sizes.ingest_messages:,} msgs"
        plain = r["plain"]["median"]
        table.append(
            Row(section, "plain Python loop: batched consume, regex, tuple per row, no writes", "rows/s", r["plain"])
        )
        frozen = r.get("plain_frozen")
        if frozen:
            sml_to_frozen = ", ".join(
                f"{name} {r[f'sml_{db}']['median'] / frozen['median']:.2f}x"
                for db, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL"))
            )
            table.append(
                Row(
                    section,
                    "  same loop, garbage collector frozen (as sml's drain runs)",
                    "rows/s",
                    frozen,
                    f"{frozen['median'] / plain:.2f}x plain loop; sml {sml_to_frozen} it",
                )
            )
        for db, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
            sml, original = r[f"sml_{db}"], r[f"original_{db}"]
            to_plain = sml["median"] / plain
            to_original = sml["median"] / original["median"]
            table.append(
                Row(
                    section,
                    f"sml server_metrics -> {name}",
                    "rows/s",
                    sml,
                    f"{to_plain:.2f}x plain loop",
                    ">= 1.0x",
                    to_plain >= 1.0,
                )
            )
            table.append(
                Row(
                    section,
                    f"  same, vs original -> {name}",
                    "rows/s",
                    sml,
                    f"{to_original:.1f}x original",
                    ">= 8x",
                    to_original >= 8,
                )
            )
            table.append(Row(section, f"original (kafka-python+pandas.to_sql) -> {name}", "rows/s", original))
            alone = r.get(f"write_{db}")
            if alone:
                table.append(
                    Row(
                        section,
                        f"  the write alone: parsed rows, sml's chunk transactions, no Kafka -> {name}",
                        "rows/s",
                        alone,
                        f"sml {sml['median'] / alone['median']:.2f}x it",
                    )
                )
    if "connect" in results:
        r = results["connect"]
        section = f"1b vs Kafka Connect, {sizes.connect_messages:,} JSON msgs -> PostgreSQL"
        connect, sml = r["connect_postgres"], r["sml_postgres_json"]
        ratio = sml["median"] / connect["median"]
        table.append(Row(section, "Kafka Connect + Debezium JDBC sink (first to last row)", "rows/s", connect))
        table.append(
            Row(
                section,
                "sml server_metrics, same topic (whole run)",
                "rows/s",
                sml,
                f"{ratio:.2f}x Connect",
                ">= 3x",
                ratio >= 3,
            )
        )
    if "logs" in results:
        r = results["logs"]
        section = f"2 log summary, {sizes.log_lines:,} lines/run"
        steady = r["spark_events_per_s_steady"]["median"]
        to_pandas = steady / r["pandas_events_per_s"]["median"]
        table.append(
            Row(
                section,
                "sml log_summary (Spark) steady state",
                "events/s",
                r["spark_events_per_s_steady"],
                f"{to_pandas:.2f}x pandas",
                ">= 200,000/s and >= 0.9x pandas",
                steady >= 200_000 and to_pandas >= 0.9,
            )
        )
        table.append(
            Row(section, "sml log_summary whole materialization", "events/s", r["spark_events_per_s_whole_run"])
        )
        table.append(Row(section, "pandas single-process group-by", "events/s", r["pandas_events_per_s"]))
        if "quix_events_per_s" in r:
            quix = r["quix_events_per_s"]
            table.append(
                Row(
                    section,
                    "Quix Streams app from Kafka (5-min windows, 10-min grace, exactly-once)",
                    "events/s",
                    quix,
                    f"sml {steady / quix['median']:.2f}x Quix",
                )
            )
            table.append(
                Row(section, "fixed: Quix Streams start-up (topics, group join, state)", "s", r["quix_startup_s"])
            )
        table.append(Row(section, "fixed: Spark session start (once per process)", "s", r["spark_session_start_s"]))
        table.append(Row(section, "fixed: first materialization (fresh checkpoint)", "s", r["first_materialization_s"]))
        if "warm_up_events_per_s" in r:
            table.append(
                Row(
                    section,
                    "first busy run of a process (JIT warm-up, not in steady)",
                    "events/s",
                    r["warm_up_events_per_s"],
                )
            )
        table.append(Row(section, "fixed: materialization with nothing new", "s", r["materialization_fixed_s"]))
    if "sensor" in results:
        r = results["sensor"]
        section = "3 backlog sensor -> rows in table"
        latency = r["latency_s"]
        table.append(
            Row(
                section,
                "latency from the 1,000th message (daemon)",
                "s",
                latency,
                "",
                "<= 10 s (median)",
                latency["median"] <= 10,
            )
        )
        table.append(Row(section, "  of which: wait for sensor tick + request", "s", r["tick_wait_s"]))
        table.append(Row(section, "  of which: run queued + launched", "s", r["launch_s"]))
        table.append(Row(section, "  of which: run start -> rows committed", "s", r["run_s"]))
    if "spark_remote" in results:
        r = results["spark_remote"]
        section = (
            f"2b Spark start-up per run, Connect (SML_SPARK_REMOTE) vs local[2], {sizes.spark_remote_lines:,} lines"
        )
        for what, key in (
            ("session, new process", "session_s"),
            ("first query", "first_query_s"),
            ("log_summary run, new process", "run_s"),
        ):
            local, connect = r[f"local_{key}"], r[f"connect_{key}"]
            table.append(Row(section, f"{what}: local[2]", "s", local))
            table.append(
                Row(
                    section,
                    f"{what}: Spark Connect",
                    "s",
                    connect,
                    f"{connect['median'] / local['median']:.2f}x local[2]",
                )
            )
        if "connect_backlog_events_per_s" in r:
            small, big = sizes.spark_remote_small_backlog_lines, sizes.spark_remote_backlog_lines
            section = f"2c a backlog of {small:,} and of {big:,} lines, one log_summary run in a new process each"
            pandas = results.get("logs", {}).get("pandas_events_per_s")
            for mode, label in (
                ("local", "local[2] (a new JVM each run)"),
                ("connect", "Spark Connect (make run's default)"),
            ):
                rate = r[f"{mode}_steady_events_per_s"]
                to_pandas = rate["median"] / pandas["median"] if pandas else None
                table.append(
                    Row(
                        section,
                        f"steady: extra lines / extra query s, {small:,} to {big:,} lines: {label}",
                        "events/s",
                        rate,
                        f"{to_pandas:.2f}x pandas" if to_pandas is not None else "",
                        ">= 200,000/s and >= 0.9x pandas" if mode == "connect" else "",
                        rate["median"] >= 200_000 and (to_pandas is None or to_pandas >= 0.9)
                        if mode == "connect"
                        else None,
                    )
                )
            for mode, label in (("local", "local[2]"), ("connect", "Spark Connect")):
                table.append(
                    Row(
                        section,
                        f"fixed: query time a run pays whatever it reads: {label}",
                        "s",
                        r[f"{mode}_query_fixed_s"],
                    )
                )
            local, connect = r["local_backlog_events_per_s"], r["connect_backlog_events_per_s"]
            table.append(Row(section, f"query events/s, {big:,} lines: local[2]", "events/s", local))
            table.append(
                Row(
                    section,
                    f"query events/s, {big:,} lines: Spark Connect",
                    "events/s",
                    connect,
                    f"{connect['median'] / local['median']:.2f}x local[2]",
                )
            )
            for mode, label in (("local", "local[2]"), ("connect", "Spark Connect")):
                table.append(
                    Row(
                        section,
                        f"whole run of {big:,} lines, process start included: {label}",
                        "s",
                        r[f"{mode}_backlog_run_s"],
                    )
                )
        for what, size in (("run", sizes.spark_remote_lines), ("backlog", sizes.spark_remote_backlog_lines)):
            if f"server_{what}_jvm_cpu_s" in r:
                section = "2d what a run over Connect costs the server, whatever it reads (CPU)"
                for kind, label in (("jvm", "JVM"), ("python", "Python workers")):
                    table.append(
                        Row(section, f"{label}, a {size:,}-line run", "CPU s", r[f"server_{what}_{kind}_cpu_s"])
                    )
    if "memory" in results:
        small, large = results["memory"]
        section = "4 ingest peak RSS"
        growth = large["peak_rss_mib"] / small["peak_rss_mib"]
        table.append(Row(section, f"one run, {small['messages']:,} messages", "MiB", _single(small["peak_rss_mib"])))
        table.append(
            Row(
                section,
                f"one run, {large['messages']:,} messages",
                "MiB",
                _single(large["peak_rss_mib"]),
                f"{growth:.2f}x the small run",
                "flat (<= 1.2x)",
                growth <= 1.2,
            )
        )
    if "simulator" in results:
        r = results["simulator"]
        section = f"5 producer, {sizes.simulator_messages:,} msgs"
        ratio = r["simulator"]["median"] / r["bare"]["median"]
        table.append(Row(section, "bare confluent-kafka producer loop", "msg/s", r["bare"]))
        table.append(
            Row(
                section, "sml-simulator --burst", "msg/s", r["simulator"], f"{ratio:.2f}x bare", ">= 0.5x", ratio >= 0.5
            )
        )
    if "run_cost" in results:
        r = results["run_cost"]
        section = "6 what a run costs: CLI start to exit, nothing new, checks included"
        trivial = r["trivial_s"]
        table.append(Row(section, "trivial one-asset project (default executor)", "s", trivial))
        for label, key, target in (
            ("server_metrics", "server_metrics_s", 1.5),
            ("log_summary + hdfs_log_summary", "log_summary_s", 2.5),
        ):
            ratio = r[key]["median"] / trivial["median"]
            table.append(Row(section, label, "s", r[key], f"{ratio:.2f}x trivial", f"<= {target:g}x", ratio <= target))
        table.append(Row(section, "import dagster", "s", r["import_dagster_s"]))
        definitions = r["import_definitions_s"]
        met = definitions["median"] <= 1.5
        table.append(Row(section, "import sml_assets.definitions", "s", definitions, target="<= 1.5 s", met=met))
    return table


def render(table: list[Row]) -> str:
    """A markdown table, readable in a terminal and pasteable into the README."""
    lines = [
        "| measure | unit | median | min | max | spread | ratio | target | met |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    section = None
    for row in table:
        if row.section != section:
            section = row.section
            lines.append(f"| **{section}** | | | | | | | | |")
        f = row.figure
        fmt = (lambda v: f"{v:,.1f}") if row.unit in ("s", "MiB") else (lambda v: f"{v:,.0f}")
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.label} | {row.unit} | {fmt(f['median'])} | {fmt(f['min'])} | {fmt(f['max'])} "
            f"| {f['spread']:.0%} | {row.ratio} | {row.target} | {met} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")),
        platform.processor(),
    )
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_1_5_15": [round(load, 1) for load in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (~4 minutes)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    load_at_start = [round(load, 1) for load in os.getloadavg()]
    results: dict[str, Any] = {}
    if "ingest" in args.only:
        results["ingest"] = part(
            "bench_ingest.py", "--messages", str(sizes.ingest_messages), "--repeats", str(sizes.ingest_repeats)
        )
    if "connect" in args.only:
        results["connect"] = part(
            "bench_connect.py", "--messages", str(sizes.connect_messages), "--repeats", str(sizes.connect_repeats)
        )
    if "memory" in args.only:
        results["memory"] = part("bench_memory.py", "--sizes", *map(str, sizes.memory_sizes))
    if "simulator" in args.only:
        results["simulator"] = simulator(sizes.simulator_messages, sizes.simulator_repeats)
    if "logs" in args.only:
        results["logs"] = part("bench_logs.py", "--lines", str(sizes.log_lines), "--repeats", str(sizes.log_repeats))
    if "spark_remote" in args.only:
        results["spark_remote"] = part(
            "bench_spark_remote.py",
            "--lines",
            str(sizes.spark_remote_lines),
            "--repeats",
            str(sizes.spark_remote_repeats),
            "--backlog-lines",
            str(sizes.spark_remote_backlog_lines),
            "--backlog-repeats",
            str(sizes.spark_remote_backlog_repeats),
            "--small-backlog-lines",
            str(sizes.spark_remote_small_backlog_lines),
        )
    if "sensor" in args.only:
        results["sensor"] = part("bench_sensor.py", "--repeats", str(sizes.sensor_repeats))
    if "run_cost" in args.only:
        results["run_cost"] = part("bench_run_cost.py", "--repeats", str(sizes.run_cost_repeats))
    table = rows(results, sizes)
    text = render(table)
    host = machine()
    elapsed = time.monotonic() - started
    print(
        f"\nsml benchmarks{' (--quick)' if args.quick else ''}: {host['cores']} cores, {host['cpu']}, "
        f"{host['memory_gib']} GiB; broker {BOOTSTRAP}; {elapsed / 60:.1f} min; load average (1/5/15 min) "
        f"{load_at_start} at the start, {host['load_1_5_15']} at the end"
        f"{load_verdict(load_at_start, host['load_1_5_15'], host['cores'])}\n"
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "when": stamp,
        "quick": args.quick,
        "load_at_start": load_at_start,
        "sizes": sizes.__dict__,
        "machine": host,
        "duration_s": elapsed,
        "results": results,
        "table": [row.__dict__ for row in table],
        "markdown": text,
    }
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps(document, indent=2, default=str))
    (RESULTS / "latest.json").write_text(path.read_text())
    print(f"\nwritten {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
