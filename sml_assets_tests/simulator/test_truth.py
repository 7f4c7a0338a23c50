"""The ground truth equals an independent recount of the lines and counts only acknowledged ones."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from simulator.generator import SimulationOptions, generate
from simulator.records import Message, Stream
from simulator.truth import Truth
from sml_assets_tests.simulator.grammar import LogLine, Metrics, parse_log_line, parse_metrics

START_MS = 1_795_622_400_000
TOPICS = {Stream.METRICS: "m", Stream.LOGS: "l"}
FAULTY = SimulationOptions(
    start_ms=START_MS,
    seed=7,
    count=20_000,
    servers=5,
    metrics_interval_s=1.0,
    malformed_rate=0.05,
    late_rate=0.05,
    max_lateness_s=1_200,
    out_of_order_rate=0.05,
)


def recount(values: list[tuple[str, bytes]], clock_ms: dict[bytes, int] | None = None) -> dict:
    """What sml should find in these raw values: per-server rows, dead letters, windows."""
    per_server: Counter[str] = Counter()
    malformed: dict[str, Counter[str]] = {"metrics": Counter(), "logs": Counter()}
    windows: dict[str, Counter[str]] = {}
    for stream, value in values:
        parsed = parse_metrics(value) if stream == "metrics" else parse_log_line(value)
        if isinstance(parsed, str):
            malformed[stream][parsed] += 1
        elif isinstance(parsed, Metrics):
            per_server[str(parsed.server_id)] += 1
        else:
            assert isinstance(parsed, LogLine)
            start = parsed.time.astimezone(UTC).replace(second=0)
            start -= timedelta(minutes=start.minute % 5)
            outcome = "success" if 200 <= parsed.status < 300 else "failure"
            windows.setdefault(start.strftime("%Y-%m-%dT%H:%M:%SZ"), Counter())[f"{parsed.method}_{outcome}"] += 1
    return {"valid_per_server": per_server, "malformed": malformed, "windows": windows}


def as_counters(truth: dict) -> dict:
    return {
        "valid_per_server": Counter(truth["metrics"]["valid_per_server"]),
        "malformed": {stream: +Counter(truth[stream]["malformed"]) for stream in ("metrics", "logs")},
        "windows": {
            start: +Counter({k: v for k, v in row.items() if k.endswith(("success", "failure"))})
            for start, row in truth["logs"]["windows"].items()
        },
    }


def test_truth_equals_an_independent_recount_of_the_lines() -> None:
    truth = Truth(FAULTY.seed, TOPICS)
    values = []
    for message in generate(FAULTY):
        truth.delivered(message)
        values.append((message.stream.value, message.value))
    document = truth.to_dict()
    assert as_counters(document) == recount(values)
    assert document["acked"] == len(values) == 20_000
    for start, row in document["logs"]["windows"].items():
        assert row["total"] == sum(v for k, v in row.items() if k.endswith(("success", "failure")))
        assert datetime.fromisoformat(row["window_end"]) - datetime.fromisoformat(start) == (timedelta(minutes=5))


def test_windows_within_watermark_leave_out_exactly_the_events_more_than_ten_minutes_late() -> None:
    truth = Truth(FAULTY.seed, TOPICS)
    kept = []
    for message in generate(FAULTY):
        truth.delivered(message)
        if message.clock_ms - message.event_ms <= 600_000:
            kept.append((message.stream.value, message.value))
    document = truth.to_dict()
    within = {
        start: +Counter({k: v for k, v in row.items() if k.endswith(("success", "failure"))})
        for start, row in document["logs"]["windows_within_watermark"].items()
    }
    assert within == recount(kept)["windows"]
    late = document["late_events"]
    assert late and any(e["beyond_watermark"] for e in late)
    assert not all(e["beyond_watermark"] for e in late)
    assert (
        sum(e["stream"] == "logs" and e["beyond_watermark"] for e in late)
        == (document["logs"]["late_beyond_watermark"])
    )


def test_only_acknowledged_messages_are_counted() -> None:
    truth = Truth(FAULTY.seed, TOPICS)
    acked: list[Message] = []
    for index, message in enumerate(generate(replace(FAULTY, count=4_000))):
        if index % 3 == 0:
            truth.failed_delivery(message)
        else:
            truth.delivered(message)
            acked.append(message)
    document = truth.to_dict()
    assert document["acked"] == len(acked) and document["failed"] == 4_000 - len(acked)
    assert as_counters(document) == recount([(m.stream.value, m.value) for m in acked])


def test_truth_file_is_json_with_every_malformed_kind_listed(tmp_path: Path) -> None:
    truth = Truth(1, TOPICS)
    path = tmp_path / "deep" / "truth.json"
    truth.write(path, {"seed": 1})
    document = json.loads(path.read_text())
    assert document["acked"] == 0 and document["options"] == {"seed": 1}
    assert set(document["metrics"]["malformed"]) == {"truncated", "wrong_types", "out_of_range", "not_utf8", "empty"}
    assert list(tmp_path.joinpath("deep").iterdir()) == [path]


def test_events_from_a_clock_ahead_are_refused_exactly_when_ahead_of_their_record_by_more_than_the_tolerance() -> None:
    """Recount from the bytes: an event dated more than 60 s after its record timestamp is refused
    (not valid, in no window); a skewed event recorded later than its time (a backfill) is valid."""
    options = replace(FAULTY, skewed_clock_rate=0.05, max_skew_s=7200, count=6_000)
    truth = Truth(options.seed, TOPICS, max_clock_skew_s=60)
    kept: list[tuple[str, bytes]] = []
    refused: Counter[str] = Counter()
    for index, message in enumerate(generate(options)):
        record_ms = message.clock_ms + (3_600_000 if index % 4 == 0 else 0)
        truth.delivered(message, record_ms)
        parsed = parse_metrics(message.value) if message.stream is Stream.METRICS else parse_log_line(message.value)
        event_ms = (
            parsed.ts_ms
            if isinstance(parsed, Metrics)
            else int(parsed.time.timestamp() * 1000)
            if isinstance(parsed, LogLine)
            else None
        )
        if event_ms is not None and event_ms - record_ms > 60_000:
            refused[message.stream.value] += 1
        else:
            kept.append((message.stream.value, message.value))
    document = truth.to_dict()
    assert as_counters(document) == recount(kept)
    assert (document["metrics"]["skewed"], document["logs"]["skewed"]) == (refused["metrics"], refused["logs"])
    assert refused["metrics"] > 0 and refused["logs"] > 0
    assert document["logs"]["skewed_accepted"] > 0, "no backfilled skewed event: the other branch is untested"
    assert sum(document["logs"]["skewed_servers"].values()) == refused["logs"]
    assert document["acked"] == 6_000
