"""log_summary against the real broker and real Spark: counts equal an independent recount.

One Spark session serves the whole module (starting one costs seconds on two cores); each test has
its own topic and data dir. The recount below parses lines with plain Python and applies the
watermark rule per materialization (one micro-batch per run, as availableNow does with Kafka).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Producer
from dagster import AssetCheckSeverity, DagsterEventType, materialize
from pyspark.sql import functions as F

from benchmarks.quix_windows import KEY, count_windows
from sml_assets.assets import clock_skew, logs
from sml_assets.logs_stream import CHECKPOINT_DIR, TOPIC_FILE, parse_lines
from sml_assets.parsing import LogRecord, parse_log_line, skew_reason
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets.windows import CATEGORIES, Counts, parse_iso
from sml_assets_tests.faults import printed_command, recreate_topic, run_command, wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
FIVE_MIN = timedelta(minutes=5)
DELAY = timedelta(minutes=10)
COLUMNS = ["GET_success", "GET_failure", "POST_success", "POST_failure"]
ORACLE_LINE = re.compile(
    r"\S+ \S+ \S+ \[([A-Z][a-z]{2}), (\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}) (GMT|UTC|[+-]\d{4})\] "
    r"(GET|POST) \S+ (\d{3}) \d+"
)
ZONED_DATES = [
    "Wed, 25 Nov 2026 16:01:00 UTC",
    "Wed, 25 Nov 2026 16:01:00 +0000",
    "Wed, 25 Nov 2026 11:01:00 -0500",
    "Wed, 25 Nov 2026 21:31:00 +0530",
    "Thu, 26 Nov 2026 01:01:00 +0900",
    "Wed, 25 Nov 2026 23:59:59 -1500",
    "Wed, 26 Nov 2026 01:01:00 +0900",
    "Wed, 25 Nov 2026 16:01:00 +2400",
    "Wed, 25 Nov 2026 16:01:00 +0060",
    "Wed, 25 Nov 2026 16:01:00 +000",
    "Wed, 25 Nov 2026 16:01:00 Z",
    "Fri, 31 Dec 9999 23:59:59 -0100",
]
"""Accepted zones (UTC, numeric, crossing midnight), and rejected ones (weekday of the UTC date
rather than the written one, hour 24, minute 60, three digits, 'Z', past year 9999 in UTC)."""
MALFORMED: list[bytes] = [
    b"garbage",
    b"",
    b"\xff\xfe not utf-8",
    b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 GMT] PUT /x 200 10",
    b"10.0.0.1 - u [Thu, 25 Nov 2026 16:01:00 GMT] GET /x 200 10",
    b"10.0.0.1 - u [Wed, 31 Feb 2026 16:01:00 GMT] GET /x 200 10",
    b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 GMT] GET /x",
    b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 GMT] POST /x 2OO 10",
]


def log_line(moment: datetime, method: str, status: int) -> bytes:
    stamp = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    return f"10.0.0.{moment.second} - user{moment.minute} [{stamp}] {method} /p/{moment.minute} {status} 512".encode()


def events(rng: random.Random, first: datetime, last: datetime, count: int) -> list[bytes]:
    span = int((last - first).total_seconds())
    return [
        log_line(
            first + timedelta(seconds=rng.randint(0, span)),
            rng.choice(["GET", "POST"]),
            rng.choice([200, 201, 204, 301, 404, 500, 503]),
        )
        for _ in range(count)
    ]


def oracle_parse(raw: bytes) -> tuple[datetime, str] | None:
    """Independent of Spark and of parsing.py: a regex, strptime and a weekday check."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    match = ORACLE_LINE.fullmatch(text)
    if match is None:
        return None
    zone = "+0000" if match[3] in ("GMT", "UTC") else match[3]
    try:
        written = datetime.strptime(f"{match[2]} {zone}", "%d %b %Y %H:%M:%S %z")
        moment = written.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if written.strftime("%a") != match[1]:
        return None
    status = int(match[5])
    if not 100 <= status <= 599:
        return None
    return moment, f"{match[4]}_{'success' if 200 <= status <= 299 else 'failure'}"


@dataclass
class Expected:
    """The recount after the runs so far: the CSV frame, and late / rejected lines of the last run."""

    frame: pd.DataFrame
    late_last_run: int
    rejected_last_run: int


def recount(runs: list[list[bytes]]) -> Expected:
    """Apply the watermark per run (window end at or before max-seen-before-this-run − 10 min is
    dropped), count with pandas, mark windows final from the overall max event time."""
    kept: list[tuple[datetime, str]] = []
    max_seen: datetime | None = None
    late = rejected = 0
    for lines in runs:
        parsed = [oracle_parse(line) for line in lines]
        rejected = sum(item is None for item in parsed)
        valid = [item for item in parsed if item is not None]
        watermark = None if max_seen is None else max_seen - DELAY
        late = 0
        for moment, category in valid:
            start = T0 + FIVE_MIN * ((moment - T0) // FIVE_MIN)
            if watermark is not None and start + FIVE_MIN <= watermark:
                late += 1
            else:
                kept.append((start, category))
        if valid:
            newest = max(moment for moment, _ in valid)
            max_seen = newest if max_seen is None else max(max_seen, newest)
    table = pd.DataFrame(kept, columns=["start", "category"])
    counts = table.groupby(["start", "category"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=COLUMNS, fill_value=0).sort_index()
    frame = pd.DataFrame(
        {
            "window_start": [s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in counts.index],
            "window_end": [(s + FIVE_MIN).strftime("%Y-%m-%dT%H:%M:%SZ") for s in counts.index],
            **{name: counts[name].to_numpy() for name in COLUMNS},
        }
    )
    frame["total"] = frame[COLUMNS].sum(axis=1)
    watermark = None if max_seen is None else max_seen - DELAY
    frame["final"] = [watermark is not None and s + FIVE_MIN <= watermark for s in counts.index]
    return Expected(frame=frame, late_last_run=late, rejected_last_run=rejected)


@dataclass
class Pipeline:
    """One test's topic, data dir and resources, plus what it produced so far (per run)."""

    topic: str
    storage: LocalStorage
    resources: dict[str, object]
    producer: Producer
    runs: list[list[bytes]]

    def send(self, lines: list[bytes], key: bytes | None = None) -> None:
        for line in lines:
            self.producer.produce(self.topic, line, key)
        assert self.producer.flush(30) == 0, "messages still unacknowledged after 30 s"
        self.runs[-1].extend(lines)

    def materialize(self) -> dict[str, object]:
        started = time.monotonic()
        result = materialize(
            [
                logs.log_summary,
                logs.log_summary_has_no_duplicate_windows,
                logs.log_summary_windows_are_aligned,
                logs.log_summary_counts_add_up,
            ],
            resources=self.resources,
        )
        print(f"materialization: {time.monotonic() - started:.1f} s")
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 3 and all(check.passed for check in checks), checks
        [event] = result.get_asset_materialization_events()
        self.runs.append([])
        return {key: value.value for key, value in event.materialization.metadata.items()}

    def csv(self) -> pd.DataFrame:
        return pd.read_csv(self.storage.summary_csv)

    def assert_matches_recount(self) -> Expected:
        expected = recount([run for run in self.runs if run] or [[]])
        pd.testing.assert_frame_equal(self.csv(), expected.frame, check_dtype=False)
        return expected


@pytest.fixture
def pipeline(
    new_topic: Callable[..., str], kafka_bootstrap: str, spark_resource: SparkResource, tmp_path: Path
) -> Pipeline:
    topic = new_topic(partitions=1)
    storage = LocalStorage(data_dir=str(tmp_path / "data"))
    return Pipeline(
        topic=topic,
        storage=storage,
        resources={
            "kafka": KafkaResource(bootstrap_servers=kafka_bootstrap, logs_topic=topic),
            "spark": spark_resource,
            "storage": storage,
        },
        producer=Producer({"bootstrap.servers": kafka_bootstrap}),
        runs=[[]],
    )


def test_spark_parsing_agrees_with_parse_log_line(spark_resource: SparkResource) -> None:
    """Same verdicts as `parse_log_line` then `skew_reason` (same skew reasons, word for word),
    against each line's record timestamp and a fixed clock."""
    now = T0 + timedelta(days=1)
    lines = [
        *MALFORMED,
        log_line(T0, "GET", 200),
        log_line(T0 + timedelta(minutes=7), "POST", 503),
        b"  " + log_line(T0, "POST", 201) + b" ",
        b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 EST] GET /x 200 1",
        b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 GMT] GET /x 099 1",
        b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 GMT] GET /x 200 1 extra",
        b"10.0.0.1 - u [Wed, 25 Nov 2026 16:01:00 GMT] get /x 200 1",
    ]
    records: list[datetime | None] = [T0 + timedelta(minutes=8)] * len(lines)
    skewed = [
        (log_line(T0 + timedelta(seconds=60), "GET", 200), T0),
        (log_line(T0 + timedelta(seconds=61), "GET", 200), T0),
        (log_line(T0 + timedelta(seconds=61), "GET", 200), T0 + timedelta(milliseconds=500)),
        (log_line(T0 + timedelta(seconds=62), "POST", 500), T0 + timedelta(milliseconds=999)),
        (log_line(T0 + timedelta(days=365), "POST", 200), T0),
        (log_line(now + timedelta(minutes=5), "GET", 200), now + timedelta(days=1)),
        (log_line(now + timedelta(seconds=61), "GET", 404), None),
        (log_line(now + timedelta(seconds=60), "GET", 404), None),
        (b"10.0.0.1 - u [Thu, 25 Nov 2027 16:01:00 GMT] PUT /x 200 10", T0),
    ]
    lines += [line for line, _ in skewed]
    records += [record for _, record in skewed]
    zoned = [f"10.0.0.1 - u [{date}] GET /x 200 1".encode() for date in ZONED_DATES]
    lines += zoned
    records += [now] * len(zoned)
    spark = spark_resource.session()
    frame = spark.createDataFrame(list(zip(lines, records)), "value binary, kafka_timestamp timestamp")
    got = parse_lines(frame, 60, now=F.lit(now)).select("reject_reason", "event_time", "method", "success").collect()
    for line, record_time, row in zip(lines, records, got):
        record = parse_log_line(line)
        skew = None if not isinstance(record, LogRecord) else skew_reason(record.time, record_time, now, 60)
        if isinstance(record, LogRecord) and skew is None:
            assert row["reject_reason"] is None, (line, row)
            assert row["event_time"].replace(tzinfo=None) == record.time.astimezone().replace(tzinfo=None)
            assert record.time == oracle_parse(line)[0], line
            assert f"{row['method']}_{'success' if row['success'] else 'failure'}" == record.category
        elif skew is not None:
            assert row["reject_reason"] == skew, line
        else:
            assert row["reject_reason"] is not None, (line, record)
            assert not row["reject_reason"].startswith("event time"), (line, row)
        if skew is None:
            assert (oracle_parse(line) is None) == (row["reject_reason"] is not None), line
    accepted = [line for line in zoned if oracle_parse(line) is not None]
    assert len(accepted) == 6, "every zone a load balancer may write is accepted"
    verdicts = [row["reject_reason"] for row in got[len(MALFORMED) + 7 : len(MALFORMED) + 7 + len(skewed)]]
    assert verdicts == [
        None,
        "event time 61 s ahead of the record timestamp",
        "event time 60 s ahead of the record timestamp",
        "event time 61 s ahead of the record timestamp",
        "event time 31536000 s ahead of the record timestamp",
        "event time 300 s ahead of the clock",
        "event time 61 s ahead of the clock",
        None,
        "method is not GET or POST",
    ]


def test_a_clock_a_year_ahead_erases_nothing_and_is_named(pipeline: Pipeline) -> None:
    """Issue 14's reproduction: lines dated a year ahead, then ordinary traffic, a run after each
    part. The ordinary lines are all counted, no window a year ahead appears, the refused lines are
    rejects counted by reason, and the clock-skew check names the source address."""
    ahead = [
        log_line(T0 + timedelta(days=365, seconds=n), "GET", 200).replace(b"10.0.0.", b"10.9.9.", 1) for n in range(4)
    ]
    for line in ahead:
        pipeline.producer.produce(pipeline.topic, line)
    rng = random.Random(14)
    pipeline.send(events(rng, T0, T0 + timedelta(minutes=9), 100))
    first = pipeline.materialize()
    pipeline.assert_matches_recount()
    assert first["rejects"] == 4 and first["rejects_by_reason"] == {"event time s ahead of the record timestamp": 4}
    assert first["watermark"] < "2026-11-26", first["watermark"]

    pipeline.send(events(rng, T0 + timedelta(minutes=9), T0 + timedelta(minutes=24), 150))
    resources = {**pipeline.resources}
    result = materialize([logs.log_summary, clock_skew.log_clocks_are_right], resources=resources)
    assert result.success
    pipeline.runs.append([])
    expected = pipeline.assert_matches_recount()
    assert int(expected.frame["total"].sum()) == 250, "an ordinary line was dropped"
    assert pipeline.csv()["window_start"].max() < "2026-11-26"
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert "10.9.9.0 (1)" in check.description and "10.0.0." not in check.description
    assert check.metadata["refused for clock skew"].value == 4
    assert check.metadata["events"].value == 254


def test_aborted_transactions_are_not_counted_and_their_markers_end_no_run_early(
    pipeline: Pipeline, kafka_bootstrap: str
) -> None:
    """Lines of a transaction its producer aborted never happened: the summary reads committed
    lines only, as `server_metrics` does, across the offsets the commit and abort markers take."""
    rng = random.Random(17)
    committed = events(rng, T0, T0 + timedelta(minutes=9), 120)
    aborted = events(rng, T0, T0 + timedelta(minutes=9), 80)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{pipeline.topic}-tx"})
    producer.init_transactions(30)
    for lines, commit in ((committed[:60], True), (aborted, False), (committed[60:], True)):
        producer.begin_transaction()
        for line in lines:
            producer.produce(pipeline.topic, line)
        assert producer.flush(30) == 0  # in the log: an abort drops what was not sent yet
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap)
    end = 60 + 1 + 80 + 1 + 60 + 1
    wait_until(lambda: kafka.watermarks(pipeline.topic)[0].high == end, 30, f"the last marker, end offset {end}")
    pipeline.runs[-1].extend(committed)
    found = pipeline.materialize()
    expected = pipeline.assert_matches_recount()
    assert int(expected.frame["total"].sum()) == 120 and found["rejects"] == 0


def test_summary_matches_recount_across_runs_final_late_rejects_and_idle_run(pipeline: Pipeline) -> None:
    rng = random.Random(5)
    pipeline.send(events(rng, T0, T0 + timedelta(minutes=13, seconds=59), 150) + MALFORMED)
    first = pipeline.materialize()
    expected = pipeline.assert_matches_recount()
    assert not pipeline.csv()["final"].any(), "watermark 16:03:59 passes no window end yet"
    assert first["rejects"] == len(MALFORMED) == expected.rejected_last_run
    assert first["late_dropped"] == 0 and first["input_rows"] == 150 + len(MALFORMED)
    rejects = pd.read_parquet(pipeline.storage.root / "log_summary" / "rejects")
    assert len(rejects) == len(MALFORMED) and rejects["reject_reason"].notna().all()
    window_0505 = pipeline.csv().iloc[1].copy()

    inside_watermark = [log_line(T0 + timedelta(minutes=6, seconds=s), "POST", 500) for s in range(3)]
    pipeline.send(events(rng, T0 + timedelta(minutes=14), T0 + timedelta(minutes=22), 60) + inside_watermark)
    second = pipeline.materialize()
    pipeline.assert_matches_recount()
    table = pipeline.csv()
    assert table.iloc[0]["final"] and table.iloc[1]["final"], "16:00 and 16:05 turn final"
    assert table.iloc[1]["POST_failure"] >= window_0505["POST_failure"] + 3
    assert second["windows_newly_final"] >= 2 and second["late_dropped"] == 0

    beyond_watermark = [log_line(T0 + timedelta(minutes=1, seconds=s), "GET", 200) for s in range(4)]
    pipeline.send(beyond_watermark + [log_line(T0 + timedelta(minutes=13), "GET", 404)])
    final_before = pipeline.csv().iloc[0].copy()
    third = pipeline.materialize()
    expected = pipeline.assert_matches_recount()
    assert third["late_dropped"] == 4 == expected.late_last_run
    assert third["late_rows_dropped_spark"] == 4, "merge_increments counts every late event"
    pd.testing.assert_series_equal(pipeline.csv().iloc[0], final_before)

    before_idle = pipeline.storage.summary_csv.read_bytes()
    idle = pipeline.materialize()
    assert pipeline.storage.summary_csv.read_bytes() == before_idle
    assert (idle["input_rows"], idle["windows_updated"], idle["late_dropped"]) == (0, 0, 0)


NOTHING_NEW_SCRIPT = """
import json, sys
from dagster import materialize
from sml_assets.assets import logs
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
bootstrap, topic, jars, data_dir = sys.argv[1:5]
result = materialize(
    [logs.log_summary, logs.log_summary_counts_add_up],
    resources={"kafka": KafkaResource(bootstrap_servers=bootstrap, logs_topic=topic),
               "spark": SparkResource(jars_dir=jars), "storage": LocalStorage(data_dir=data_dir)},
)
[event] = result.get_asset_materialization_events()
shown = {key: value.value for key, value in event.materialization.metadata.items()}
checks = [check.passed for check in result.get_asset_check_evaluations()]
print(json.dumps({"success": result.success, "checks": checks, "pyspark_loaded": "pyspark" in sys.modules,
                  **{key: shown[key] for key in ("input_rows", "spark_batches", "end_offsets", "windows_total")}}))
"""


def test_a_run_with_nothing_new_starts_no_spark_and_the_next_run_resumes(
    pipeline: Pipeline, kafka_bootstrap: str, spark_resource: SparkResource
) -> None:
    """A run in a process of its own, after everything was committed: pyspark is never imported,
    the CSV is rewritten unchanged, the metadata reports the checkpoint's end offsets; a line sent
    afterwards is counted by the next run."""
    rng = random.Random(15)
    pipeline.send(events(rng, T0, T0 + timedelta(minutes=12), 40) + MALFORMED[:1])
    pipeline.materialize()
    before = pipeline.storage.summary_csv.read_bytes()
    ran = run_command(
        [
            sys.executable,
            "-c",
            NOTHING_NEW_SCRIPT,
            kafka_bootstrap,
            pipeline.topic,
            spark_resource.jars_dir,
            str(pipeline.storage.root),
        ],
        {},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    shown = json.loads(ran.stdout.strip().splitlines()[-1])
    assert shown == {
        "success": True,
        "checks": [True],
        "pyspark_loaded": False,
        "input_rows": 0,
        "spark_batches": 0,
        "end_offsets": {pipeline.topic: {"0": 41}},
        "windows_total": len(pipeline.csv()),
    }
    assert pipeline.storage.summary_csv.read_bytes() == before
    pipeline.runs.append([])

    pipeline.send([log_line(T0 + timedelta(minutes=11), "POST", 201)])
    after = pipeline.materialize()
    assert (after["input_rows"], after["spark_batches"], after["checkpoint_rebuilt"]) == (1, 1, False)
    pipeline.assert_matches_recount()


def test_deleted_checkpoint_is_rebuilt_without_double_counting(pipeline: Pipeline) -> None:
    rng = random.Random(7)
    pipeline.send(events(rng, T0, T0 + timedelta(minutes=20), 120) + MALFORMED[:2])
    pipeline.materialize()
    pipeline.assert_matches_recount()
    shutil.rmtree(pipeline.storage.root / CHECKPOINT_DIR)

    late = [log_line(T0 + timedelta(minutes=2), "GET", 200)]
    pipeline.send(late + events(rng, T0 + timedelta(minutes=16), T0 + timedelta(minutes=21), 20))
    rebuilt = pipeline.materialize()
    assert rebuilt["checkpoint_rebuilt"] is True
    pipeline.assert_matches_recount()
    assert rebuilt["rejects"] == 2, "the replay re-reads every line, rejects included"
    assert len(pd.read_parquet(pipeline.storage.root / "log_summary" / "rejects")) == 2

    pipeline.send(events(rng, T0 + timedelta(minutes=19), T0 + timedelta(minutes=24), 20))
    after = pipeline.materialize()
    assert after["checkpoint_rebuilt"] is False
    pipeline.assert_matches_recount()


def failed_materialization(pipeline: Pipeline) -> str:
    """Materialize expecting a failure; the line of the error that names SML_LOGS_TOPIC."""
    result = materialize([logs.log_summary], resources=pipeline.resources, raise_on_error=False)
    assert not result.success
    failures = [event for event in result.all_events if event.event_type == DagsterEventType.STEP_FAILURE]
    text = "\n".join(event.step_failure_data.error.to_string() for event in failures)
    lines = [line for line in text.splitlines() if "SML_LOGS_TOPIC=" in line]
    assert lines, text
    return lines[0]


def test_a_recreated_logs_topic_is_refused_in_one_line_and_the_printed_fix_runs_as_printed(
    pipeline: Pipeline, kafka_bootstrap: str
) -> None:
    rng = random.Random(11)
    pipeline.send(events(rng, T0, T0 + timedelta(minutes=20), 60))
    pipeline.materialize()
    windows_before = set(pipeline.csv()["window_start"])
    checkpoint = pipeline.storage.root / CHECKPOINT_DIR

    new_id = recreate_topic(kafka_bootstrap, pipeline.topic, partitions=1)
    later = events(rng, T0 + timedelta(minutes=40), T0 + timedelta(minutes=44), 10)
    pipeline.send(later)
    line = failed_materialization(pipeline)
    assert f"SML_LOGS_TOPIC={pipeline.topic} (topic id {new_id!r}) was deleted and created again" in line
    assert "nothing was read" in line
    env = {
        "SML_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SML_LOGS_TOPIC": pipeline.topic,
        "SML_DATA_DIR": str(pipeline.storage.root),
    }
    adopted = run_command(printed_command(line, "adopt-logs"), env)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert not checkpoint.exists() and list(checkpoint.parent.glob("log_summary.replaced-*"))

    metadata = pipeline.materialize()
    assert metadata["input_rows"] == 10 and metadata["checkpoint_rebuilt"] is True
    windows_after = set(pipeline.csv()["window_start"])
    assert windows_before < windows_after, "stored windows kept, the new topic's windows added"

    # A checkpoint that does not record its topic (written by an older sml): Spark itself finds the
    # offsets went backwards, and its error becomes the same kind of line.
    (checkpoint / TOPIC_FILE).unlink()
    recreate_topic(kafka_bootstrap, pipeline.topic, partitions=1)
    pipeline.send(later[:2])
    line = failed_materialization(pipeline)
    assert f"SML_LOGS_TOPIC={pipeline.topic}: Spark found offsets in log_summary's checkpoint" in line
    assert "python -m sml_assets.replay adopt-logs --topic-id" in line


def by_event_time(lines: list[bytes]) -> list[bytes]:
    return sorted(lines, key=lambda line: oracle_parse(line)[0])


def test_final_windows_equal_quix_streams_on_the_same_topic(pipeline: Pipeline, kafka_bootstrap: str) -> None:
    """Quix Streams (`benchmarks/quix_windows.py`, its own parser, a 5-minute tumbling window with a
    10-minute grace) reads the topic sml summarized; the windows sml marks final and the windows
    Quix closed have the same counts, and both dropped the same late lines.

    They agree because both apply one event-time rule: a window is closed, and a line for it late,
    once the newest event time seen reaches its end + 10 minutes. Quix applies it per message (per
    key: the lines carry one key, on one partition), sml per micro-batch (one per run), so each run's
    lines are sent in event-time order, its late ones first: then no line is late within its own run,
    and the newest time Quix has seen at a late line is the one sml's watermark was set from. Every
    line is dated days before its record timestamp, so sml's clock-skew rule rejects none and the
    Quix side needs no such rule. Malformed lines are rejected by both parsers.
    """
    rng = random.Random(15)
    anchor = log_line(T0 + timedelta(minutes=24, seconds=30), "POST", 201)
    first = by_event_time([*events(rng, T0, T0 + timedelta(minutes=24, seconds=29), 1500), anchor])
    pipeline.send(first + MALFORMED, KEY)
    pipeline.materialize()
    pipeline.assert_matches_recount()

    # The watermark is now 16:14:30: windows up to 16:05-16:10 are closed, 16:10-16:15 is not.
    late = [log_line(T0 + timedelta(minutes=1, seconds=40 * n), ("GET", "POST")[n % 2], 200) for n in range(12)]
    in_grace = events(rng, T0 + timedelta(minutes=10), T0 + timedelta(minutes=24), 30)
    second = by_event_time(events(rng, T0 + timedelta(minutes=25), T0 + timedelta(minutes=49), 1500))
    pipeline.send(late + in_grace + second, KEY)
    metadata = pipeline.materialize()
    expected = pipeline.assert_matches_recount()
    assert metadata["late_dropped"] == expected.late_last_run == len(late)

    quix = count_windows(kafka_bootstrap, pipeline.topic)
    print(f"Quix Streams: start-up {quix.startup_s:.1f} s, {quix.lines} lines in {quix.processing_s:.1f} s")
    summary = pipeline.csv()
    sml_final = {
        parse_iso(row["window_start"]): Counts(*(int(row[name]) for name in CATEGORIES))
        for _, row in summary[summary["final"]].iterrows()
    }
    assert quix.lines == len(first) + len(MALFORMED) + len(late) + len(in_grace) + len(second)
    assert len(sml_final) >= 7, "16:00 to 16:30 are final once the newest event passes 16:45"
    assert quix.final == sml_final
    assert quix.late == len(late)
