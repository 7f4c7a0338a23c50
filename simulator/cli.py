"""`sml-simulator` / `python -m simulator`: flags and environment in, exit status out."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from confluent_kafka import KafkaException

from simulator.clock import RealClock, SimulatedClock, now_ms, parse_start
from simulator.generator import SimulationOptions, generate, random_seed
from simulator.records import Stream
from simulator.runner import RunResult, run, stop_on_signals
from simulator.sender import BrokerUnreachable, KafkaSink, Sink, StdoutSink
from simulator.status import StatusLine
from simulator.topics import TopicNotReady, create_topics
from simulator.truth import DEFAULT_MAX_CLOCK_SKEW_S, Truth
from sml_assets.kafka_security import KafkaSecurity, KafkaSettingsError


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="sml-simulator",
        description="Play a server fleet and its load balancer into Kafka, with ground truth.",
        epilog=(
            "Kafka security comes from the environment, as for sml's runs: SML_KAFKA_SECURITY_PROTOCOL, "
            "SML_KAFKA_SASL_MECHANISM, SML_KAFKA_SASL_USERNAME, SML_KAFKA_SASL_PASSWORD, "
            "SML_KAFKA_SSL_CA_LOCATION, SML_KAFKA_SSL_CERTIFICATE_LOCATION, SML_KAFKA_SSL_KEY_LOCATION."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fleet = parser.add_argument_group("traffic")
    fleet.add_argument("--servers", type=int, default=10, help="servers in the fleet (ids 1..N)")
    fleet.add_argument(
        "--metrics-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="each server sends one metrics message this often",
    )
    fleet.add_argument(
        "--log-rate",
        type=float,
        default=20.0,
        metavar="PER_SECOND",
        help="load-balancer requests per second (Poisson arrivals)",
    )
    fleet.add_argument("--post-ratio", type=float, default=0.3, help="fraction of POST requests")
    fleet.add_argument(
        "--error-ratio", type=float, default=0.1, help="fraction of requests answered with a non-2xx status"
    )
    fleet.add_argument("--seed", type=int, help="make the stream reproducible (default: random)")
    fleet.add_argument("--count", type=int, help="stop after this many messages")
    fleet.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this much event time")
    fleet.add_argument(
        "--start", metavar="ISO8601", help="simulated clock from this time, as fast as possible (default: real time)"
    )
    fleet.add_argument(
        "--burst",
        action="store_true",
        help="no pacing and batching producer settings, for load tests (event time simulated from --start, or now)",
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0,
        help="fraction of messages truncated, mistyped, out of range, not UTF-8 or empty",
    )
    faults.add_argument(
        "--late-rate", type=float, default=0.0, help="fraction of valid events whose time is behind the clock"
    )
    faults.add_argument(
        "--max-lateness",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="late events are 1s..this behind; above 600 some pass the watermark",
    )
    faults.add_argument(
        "--skewed-clock-rate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="fraction of valid events from a server whose clock is ahead",
    )
    faults.add_argument(
        "--max-skew",
        type=float,
        default=31_536_000.0,
        metavar="SECONDS",
        help="skewed events are max-skew/2..max-skew ahead of the clock",
    )
    faults.add_argument(
        "--max-clock-skew",
        type=int,
        default=int(env("SML_MAX_CLOCK_SKEW", str(DEFAULT_MAX_CLOCK_SKEW_S))),
        metavar="SECONDS",
        help="sml's tolerance (env SML_MAX_CLOCK_SKEW): the truth counts events "
        "further ahead of their record timestamp as refused",
    )
    faults.add_argument(
        "--out-of-order",
        type=float,
        default=0.0,
        metavar="RATE",
        help="fraction of messages overtaken by up to 8 later ones",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--truth", type=Path, metavar="FILE", help="write the JSON ground truth of acknowledged messages here"
    )
    output.add_argument(
        "--stdout", action="store_true", help="write '<topic>\\t<value>' lines instead of sending to Kafka"
    )
    output.add_argument(
        "--bootstrap-servers",
        default=env("SML_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="brokers (env SML_KAFKA_BOOTSTRAP_SERVERS)",
    )
    output.add_argument(
        "--metrics-topic", default=env("SML_METRICS_TOPIC", "test-topic4"), help="metrics topic (env SML_METRICS_TOPIC)"
    )
    output.add_argument(
        "--logs-topic",
        default=env("SML_LOGS_TOPIC", "test-topic3"),
        help="load-balancer log topic (env SML_LOGS_TOPIC)",
    )
    output.add_argument(
        "--create-topics",
        type=int,
        metavar="PARTITIONS",
        help="first create the two topics where missing, with this many partitions, replicated as "
        "SML_KAFKA_REPLICATION_FACTOR / SML_KAFKA_MIN_INSYNC_REPLICAS say (default: 3 copies, 2 in sync, "
        "fewer on a smaller cluster)",
    )
    output.add_argument(
        "--broker-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up with an error if the brokers do not answer within this",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        start_ms = parse_start(args.start) if args.start else now_ms()
        options = SimulationOptions(
            start_ms=start_ms,
            seed=args.seed if args.seed is not None else random_seed(),
            servers=args.servers,
            metrics_interval_s=args.metrics_interval,
            log_rate=args.log_rate,
            post_ratio=args.post_ratio,
            error_ratio=args.error_ratio,
            count=args.count,
            duration_s=args.duration,
            malformed_rate=args.malformed_rate,
            late_rate=args.late_rate,
            max_lateness_s=args.max_lateness,
            out_of_order_rate=args.out_of_order,
            skewed_clock_rate=args.skewed_clock_rate,
            max_skew_s=args.max_skew,
        )
    except ValueError as error:
        parser.error(str(error))
    topics = {Stream.METRICS: args.metrics_topic, Stream.LOGS: args.logs_topic}
    truth = Truth(options.seed, topics, args.max_clock_skew)
    sink: Sink
    if args.stdout:
        sink = StdoutSink(topics, truth)
    else:
        try:
            security = KafkaSecurity.from_environment()
        except KafkaSettingsError as error:
            print(f"sml-simulator: {error}", file=sys.stderr)
            return 2
        if args.create_topics is not None:
            code = _create_topics(args, security)
            if code:
                return code
        sink = KafkaSink(args.bootstrap_servers, topics, truth, burst=args.burst, security=security)
        try:
            sink.check_broker(args.broker_timeout)
        except BrokerUnreachable as error:
            print(f"sml-simulator: {error}", file=sys.stderr)
            return 1
    clock = SimulatedClock() if args.start or args.burst else RealClock()
    # The send loop makes short-lived, acyclic objects by the million; collecting generation 0
    # every 700 allocations would cost a third of --burst throughput for nothing.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    with stop_on_signals() as stop:
        result = run(generate(options), sink, clock, StatusLine(sys.stderr), stop)
    if result.stopped_by == "broken pipe":
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.truth:
        truth.write(args.truth, {**asdict(options), "burst": args.burst})
    print(_summary(result, truth, options.seed, args.truth), file=sys.stderr)
    if result.failed or result.unflushed:
        print(
            f"sml-simulator: {result.failed + result.unflushed} message(s) were not acknowledged "
            f"by {args.bootstrap_servers}; they are not in the truth",
            file=sys.stderr,
        )
        return 1
    return 0


def _create_topics(args: argparse.Namespace, security: KafkaSecurity) -> int:
    """--create-topics: the exit code, 0 once both topics can be used."""
    config = {**security.client_config(), "bootstrap.servers": args.bootstrap_servers}
    names = {args.metrics_topic: args.create_topics, args.logs_topic: args.create_topics}
    try:
        replication = create_topics(config, names, timeout_s=args.broker_timeout)
    except ValueError as error:
        print(f"sml-simulator: {error}", file=sys.stderr)
        return 2
    except (KafkaException, TopicNotReady) as error:
        print(
            f"sml-simulator: creating {', '.join(names)} on {args.bootstrap_servers} failed: {error}", file=sys.stderr
        )
        return 1
    print(
        f"sml-simulator: topics {', '.join(names)} ready (missing ones created with {args.create_topics} "
        f"partition(s), replication {replication.factor}, min.insync.replicas {replication.min_insync})",
        file=sys.stderr,
    )
    return 0


def _summary(result: RunResult, truth: Truth, seed: int, truth_path: Path | None) -> str:
    counts = truth.to_dict()
    metrics, logs = counts["metrics"], counts["logs"]
    rate = result.sent / result.elapsed_s if result.elapsed_s > 0 else 0.0
    lines = [
        f"sml-simulator: sent {result.sent:,}, acked {result.acked:,}, failed {result.failed:,}, "
        f"unflushed {result.unflushed:,} in {result.elapsed_s:.2f}s ({rate:,.0f} msg/s), "
        f"seed {seed}",
        f"  metrics: {metrics['valid']:,} valid, {metrics['malformed_total']:,} malformed, "
        f"{metrics['late']:,} late, {metrics['out_of_order']:,} out of order, "
        f"{metrics['skewed']:,} refused for a clock ahead",
        f"  logs:    {logs['valid']:,} valid, {logs['malformed_total']:,} malformed, "
        f"{logs['late']:,} late ({logs['late_beyond_watermark']:,} beyond the watermark), "
        f"{logs['out_of_order']:,} out of order, {logs['skewed']:,} refused for a clock ahead, "
        f"{len(logs['windows']):,} windows",
    ]
    if result.stopped_by:
        lines.append(f"  stopped by {result.stopped_by}")
    if truth_path:
        lines.append(f"  truth: {truth_path}")
    return "\n".join(lines)
