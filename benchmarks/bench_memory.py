"""Peak RSS of one `server_metrics` ingest run at growing message counts: it should be flat,
since a run holds one chunk and a bounded prefetch queue whatever the backlog.

One topic holds the largest count; each size runs in a fresh subprocess (its own peak, read with
getrusage) that ingests the first N messages into a fresh SQLite file.

    python benchmarks/bench_memory.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BOOTSTRAP, QUIET, metrics_values, own_topics, produce, unique

CHILD_TIMEOUT_S = 900


def child(topic: str, messages: int, db_url: str) -> dict[str, float]:
    """Runs in the subprocess: one ingest run, then this process's peak RSS."""
    from sml_assets.ingest import ingest_metrics
    from sml_assets.resources.database import MetricsDatabase
    from sml_assets.resources.kafka import KafkaResource

    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = ingest_metrics(
        KafkaResource(bootstrap_servers=BOOTSTRAP, metrics_topic=topic),
        MetricsDatabase(url=db_url, table=unique("mem")),
        QUIET,
        consumer_name=unique("c"),
        max_messages=messages,
    )
    elapsed = time.perf_counter() - started
    if report.rows != messages:
        raise RuntimeError(f"ingested {report.rows:,} rows, expected {messages:,}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "messages": messages,
        "peak_rss_mib": peak_kib / 1024,
        "rss_before_mib": before_kib / 1024,
        "rows_per_s": messages / elapsed,
    }


def run(sizes: list[int]) -> list[dict[str, float]]:
    results = []
    with own_topics(1, "memory") as (topic,), tempfile.TemporaryDirectory(prefix="sml-bench-") as tmp:
        produce(topic, metrics_values(max(sizes)))
        for size in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", topic, str(size), f"sqlite:///{tmp}/mem-{size}.db"],
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_S,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            results.append(result)
            print(
                f"  memory {size:>9,} messages: peak RSS {result['peak_rss_mib']:.0f} MiB "
                f"({result['rows_per_s']:,.0f} rows/s)",
                file=sys.stderr,
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--child", nargs=3, metavar=("TOPIC", "MESSAGES", "DB_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        topic, messages, db_url = args.child
        print(json.dumps(child(topic, int(messages), db_url)))
        return 0
    results = run(args.sizes)
    if args.json:
        args.json.write_text(json.dumps(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
