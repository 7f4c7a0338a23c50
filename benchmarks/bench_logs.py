"""Log summary events/s through the `log_summary` asset (Spark, availableNow) in steady state, its
fixed cost per materialization, next to a single-process pandas group-by over the same lines and
a Quix Streams application windowing them from Kafka (`benchmarks/quix_windows.py`).

Steady state: each repeat sends `--lines` new lines (continuing the simulated time, so none is
late) and materializes the asset; the rate is lines / (run time - the median time of a
materialization that finds nothing new), i.e. with the fixed cost taken out. The fixed cost is
reported as Spark session start (once per process) and the no-new-data materialization. Before the
repeats, one run of `--lines` lines warms the process up and is reported apart: its JVM compiles
the Kafka source and the Arrow transfer then (HotSpot's C2, about a second of CPU), so the first
busy run of a process, which every `local[2]` materialization from a new process is, runs at about
half the steady rate, while a long-lived Spark (a Connect server) pays it once.

Quix Streams reads the first `--lines` lines from a topic of its own (written with one key, see
`quix_windows`), once per repeat with a fresh consumer group and state: its rate is lines / (first
to last processed message), its start-up (topics, group join, state) reported apart.

    python benchmarks/bench_logs.py [--lines 500000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
from dagster import materialize

from benchmarks.common import BOOTSTRAP, Stat, log_values, own_topics, produce, report
from benchmarks.quix_windows import count_windows, produce_keyed
from sml_assets.assets.logs import log_summary
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.settings import data_dir

LINE = (
    r"^(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<date>[^\]]*)\] "
    r"(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<size>\d+)$"
)


def pandas_summary(lines: list[bytes]) -> float:
    """Events/s of the obvious single-process alternative: regex split, parse dates, group by."""
    started = time.perf_counter()
    text = pd.Series(lines).str.decode("utf-8")
    parts = text.str.extract(LINE)
    when = pd.to_datetime(parts["date"], format="%a, %d %b %Y %H:%M:%S GMT", utc=True, errors="coerce")
    status = pd.to_numeric(parts["status"], errors="coerce")
    valid = parts["method"].isin(("GET", "POST")) & when.notna() & status.between(100, 599)
    category = parts["method"] + status.between(200, 299).map({True: "_success", False: "_failure"})
    frame = pd.DataFrame({"window": when.dt.floor("5min"), "category": category})[valid]
    summary = frame.groupby(["window", "category"]).size().unstack(fill_value=0)
    elapsed = time.perf_counter() - started
    if int(summary.to_numpy().sum()) != int(valid.sum()):
        raise RuntimeError("pandas summary lost lines")
    return len(lines) / elapsed


def quix_summary(lines: list[bytes], repeats: int) -> dict[str, Stat]:
    """Events/s and start-up of the Quix Streams peer, each repeat a full pass from earliest."""
    rates: list[float] = []
    startups: list[float] = []
    with own_topics(1, "quix") as (topic,):
        produce_keyed(BOOTSTRAP, topic, lines)
        for index in range(repeats):
            run = count_windows(BOOTSTRAP, topic)
            if run.lines != len(lines) or run.late:
                raise RuntimeError(
                    f"Quix Streams read {run.lines:,} lines ({run.late:,} late), expected {len(lines):,}"
                )
            rates.append(run.lines / max(run.processing_s, 1e-3))
            startups.append(run.startup_s)
            print(
                f"  logs quix {index + 1}/{repeats}: {run.lines:,} lines in {run.processing_s:.1f}s "
                f"after {run.startup_s:.1f}s of start-up",
                file=sys.stderr,
            )
    return {"quix_events_per_s": Stat(tuple(rates)), "quix_startup_s": Stat(tuple(startups))}


def run(lines: int, repeats: int) -> dict[str, Stat]:
    everything = log_values(lines * (repeats + 1))
    with own_topics(1, "logs") as (topic,), tempfile.TemporaryDirectory(prefix="sml-bench-") as tmp:
        resources = {
            "kafka": KafkaResource(bootstrap_servers=BOOTSTRAP, logs_topic=topic),
            "spark": SparkResource(jars_dir=str(data_dir() / "jars" / "spark-kafka")),
            "storage": LocalStorage(data_dir=tmp),
        }
        started = time.perf_counter()
        resources["spark"].session()
        session_s = time.perf_counter() - started

        def materialized() -> tuple[float, int]:
            started = time.perf_counter()
            result = materialize([log_summary], resources=resources, raise_on_error=True)
            elapsed = time.perf_counter() - started
            event = result.asset_materializations_for_node("log_summary")[0]
            return elapsed, int(event.metadata["input_rows"].value)

        empty: list[float] = []
        busy: list[float] = []
        first_s, _ = materialized()
        produce(topic, everything[:lines])
        warm_up_s, read = materialized()
        if read != lines:
            raise RuntimeError(f"log_summary's warm-up run read {read:,} lines, expected {lines:,}")
        print(f"  logs warm-up: {lines:,} lines in {warm_up_s:.1f}s (first busy run of the process)", file=sys.stderr)
        for index in range(repeats):
            produce(topic, everything[(index + 1) * lines : (index + 2) * lines])
            elapsed, read = materialized()
            if read != lines:
                raise RuntimeError(f"log_summary read {read:,} lines, expected {lines:,}")
            busy.append(elapsed)
            empty.append(materialized()[0])
            print(
                f"  logs repeat {index + 1}/{repeats}: {lines:,} lines in {elapsed:.1f}s, "
                f"nothing new in {empty[-1]:.1f}s",
                file=sys.stderr,
            )
    fixed = statistics.median(empty)
    return {
        "spark_session_start_s": Stat((session_s,)),
        "first_materialization_s": Stat((first_s,)),
        "warm_up_events_per_s": Stat((lines / warm_up_s,)),
        "materialization_fixed_s": Stat(tuple(empty)),
        "materialization_busy_s": Stat(tuple(busy)),
        "spark_events_per_s_steady": Stat(tuple(lines / max(b - fixed, 1e-3) for b in busy)),
        "spark_events_per_s_whole_run": Stat(tuple(lines / b for b in busy)),
        "pandas_events_per_s": Stat(tuple(pandas_summary(everything[:lines]) for _ in range(repeats))),
        **quix_summary(everything[:lines], repeats),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    return report(run(args.lines, args.repeats), args.json, digits=2)


if __name__ == "__main__":
    sys.exit(main())
