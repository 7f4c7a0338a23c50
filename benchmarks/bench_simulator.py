"""Messages per second of `sml-simulator --burst` next to a bare confluent-kafka producer loop.

Both run in this process against the same broker, alternating, with the same producer settings
(`simulator.sender.producer_config(burst=True)`) and fresh topics of the same shape; the bare loop
sends the very bytes the simulator generates, pre-built, with a counting delivery callback. Every
run is bounded by --messages and by the producer's delivery timeout. Target: ratio >= 0.5.

    python benchmarks/bench_simulator.py [--messages 200000] [--repeats 5] [--partitions 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import statistics
import sys
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from simulator.cli import main as simulator_main
from simulator.generator import SimulationOptions, generate
from simulator.records import Stream
from simulator.runner import FLUSH_TIMEOUT_S
from simulator.sender import producer_config
from simulator.topics import wait_for_topics

START = "2026-11-25T16:00:00Z"
START_MS = 1_795_622_400_000
SEED = 1


def create_topics(admin: AdminClient, bootstrap: str, names: list[str], partitions: int) -> None:
    """Create topics and return once a new client sees a leader for every partition."""
    futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    for future in futures.values():
        future.result(timeout=30)
    wait_for_topics(bootstrap, dict.fromkeys(names, partitions), 30)


def run_simulator(bootstrap: str, metrics: str, logs: str, messages: int) -> float:
    argv = [
        "--bootstrap-servers",
        bootstrap,
        "--metrics-topic",
        metrics,
        "--logs-topic",
        logs,
        "--burst",
        "--start",
        START,
        "--seed",
        str(SEED),
        "--count",
        str(messages),
    ]
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as log:
        status = simulator_main(argv)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"simulator run failed:\n{log.getvalue()}")
    return messages / elapsed


def run_bare(bootstrap: str, metrics: str, logs: str, prebuilt: list[tuple[Stream, bytes, bytes]]) -> float:
    delivered = failed = 0

    def report(error: object, _message: object) -> None:
        nonlocal delivered, failed
        if error is None:
            delivered += 1
        else:
            failed += 1

    started = time.perf_counter()
    producer = Producer(producer_config(bootstrap, burst=True))
    produce, poll = producer.produce, producer.poll
    for index, (stream, key, value) in enumerate(prebuilt):
        topic = metrics if stream is Stream.METRICS else logs
        while True:
            try:
                produce(topic, value, key, on_delivery=report)
                break
            except BufferError:
                poll(0.05)
        if index % 1000 == 0:
            poll(0)
    left = producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if left or failed or delivered != len(prebuilt):
        raise SystemExit(f"bare run lost messages: {left} unflushed, {failed} failed")
    return len(prebuilt) / elapsed


def alternate(bootstrap: str, messages: int, repeats: int, partitions: int, label: str = "") -> dict[str, list[float]]:
    """The bare loop and the simulator, alternating `repeats` times on fresh topics (deleted after):
    messages per second of each run, by mode. Shared with run_all.py, so both measure alike."""
    prebuilt = [
        (m.stream, m.key, m.value) for m in generate(SimulationOptions(start_ms=START_MS, seed=SEED, count=messages))
    ]
    gc.freeze()  # the pre-built messages are scaffolding: keep them out of both runs' collections
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.list_topics(timeout=10)
    prefix = f"bench-sim-{uuid.uuid4().hex[:8]}"
    created: list[str] = []
    rates: dict[str, list[float]] = {"bare": [], "simulator": []}
    try:
        for repeat in range(repeats):
            for mode in ("bare", "simulator"):
                stem = f"{prefix}-{mode}-{repeat}"
                metrics, logs = f"{stem}-metrics", f"{stem}-logs"
                create_topics(admin, bootstrap, [metrics, logs], partitions)
                created += [metrics, logs]
                rate = (
                    run_bare(bootstrap, metrics, logs, prebuilt)
                    if mode == "bare"
                    else run_simulator(bootstrap, metrics, logs, messages)
                )
                rates[mode].append(rate)
                print(f"  {label}repeat {repeat + 1}/{repeats} {mode:<9} {rate:>10,.0f} msg/s", file=sys.stderr)
    finally:
        if created:
            for future in admin.delete_topics(created, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default=os.environ.get("SML_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    rates = alternate(args.bootstrap_servers, args.messages, args.repeats, args.partitions)

    print(
        f"\n{args.messages:,} messages per run, {args.repeats} repeats, "
        f"{args.partitions} partitions, broker {args.bootstrap_servers}\n"
    )
    print(f"{'producer':<22}{'median msg/s':>14}{'min':>11}{'max':>11}{'spread':>9}")
    for mode, label in (("bare", "bare confluent-kafka"), ("simulator", "sml-simulator --burst")):
        values = rates[mode]
        median = statistics.median(values)
        print(
            f"{label:<22}{median:>14,.0f}{min(values):>11,.0f}{max(values):>11,.0f}"
            f"{(max(values) - min(values)) / median:>8.0%}"
        )
    ratio = statistics.median(rates["simulator"]) / statistics.median(rates["bare"])
    print(f"\nratio simulator / bare (medians): {ratio:.2f}  (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
