"""log_summary over Spark Connect (SML_SPARK_REMOTE): a long-lived Spark server instead of one in the run.

An unreachable server fails the run in seconds with one line naming the setting. The module's own
server (devstack/spark_connect.py, a free port, this module's folder) is stopped even when a test
fails. Runs over Connect are subprocesses, as Dagster runs are: pyspark allows no Connect session in a
process that has a classic one, and the rest of the suite shares a local[2] session, which gives the
reference CSV on the same lines, split into the same runs.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from sml_assets.assets import logs
from sml_assets.logs_stream import CHECKPOINT_DIR, QUERY_PREFIX, SUMMARY_DIR
from sml_assets.resources.spark import SparkResource, daemon_warning
from sml_assets_tests.conftest import REPO_ROOT, TEST_PREFIX
from sml_assets_tests.faults import devstack_module, free_port, wait_until
from sml_assets_tests.helpers import produce
from sml_assets_tests.test_crash_safety import LOG_MILESTONES, linger
from sml_assets_tests.test_spark_cluster import (
    T0,
    failed_log_summary,
    finish,
    lines,
    local_reference,
    outcome,
    run_env,
    start_run,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def connect_server(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Spark Connect server of this module's own, its workers on this interpreter and checkout."""
    folder = tmp_path_factory.mktemp("spark-connect")
    module = devstack_module("spark_connect")
    server = module.SparkConnect(
        service=f"{TEST_PREFIX}connect_{uuid.uuid4().hex[:8]}",
        port=free_port(),
        folder=folder,
        python=sys.executable,
        pythonpath=REPO_ROOT,
    )
    try:
        started = time.monotonic()
        server.up()
        print(f"\nSpark Connect server up in {time.monotonic() - started:.1f} s")
        yield server
    finally:
        server.down()
        shutil.rmtree(folder, ignore_errors=True)


def server_python(server: Any) -> list[str]:
    """The command lines of the Python processes under the Connect server's JVM: its workers.

    Each run is a new Connect session; the server must not keep a process per session after its run
    (idle task workers are stopped after a minute, a session's daemon never: SPARK-54055)."""
    import psutil

    found = []
    for process in psutil.Process(server.daemon.pid()).children(recursive=True):
        try:
            if "python" in process.name():
                found.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return found


@dataclass(frozen=True)
class ConnectCase:
    """One test's topic, its run environment over the module's Connect server and folder, and the
    local[2] reference resources on the same topic."""

    topic: str
    env: dict[str, str]
    data: Path
    local: dict[str, Any]


@pytest.fixture
def connect_case(
    connect_server: Any,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    spark_jars_dir: Path,
    spark_resource: SparkResource,
    tmp_path: Path,
) -> ConnectCase:
    topic, data = new_topic(partitions=2), tmp_path / "connect"
    env = run_env(
        topic, data, kafka_bootstrap, SML_SPARK_REMOTE=connect_server.url, SML_SPARK_JARS_DIR=str(spark_jars_dir)
    )
    return ConnectCase(topic, env, data, local_reference(kafka_bootstrap, topic, spark_resource, tmp_path / "local"))


def test_an_unreachable_connect_server_fails_the_run_within_seconds_naming_the_setting(
    new_topic: Callable[..., str], kafka_bootstrap: str, spark_jars_dir: Path, tmp_path: Path
) -> None:
    remote = f"sc://127.0.0.1:{free_port()}"
    spark = SparkResource(jars_dir=str(spark_jars_dir), remote=remote)
    message = failed_log_summary(spark, kafka_bootstrap, new_topic(partitions=1), tmp_path)
    address = remote.removeprefix("sc://")
    assert (
        f"SparkUnavailableError: SML_SPARK_REMOTE={remote}: no Spark Connect server answers at {address} "
        "(Connection refused): check that a Spark Connect server is running there"
    ) in message


def test_a_connect_server_that_keeps_a_python_daemon_per_session_is_named_with_the_fix() -> None:
    """Checked by hand against a server started without the setting: the run logs this warning."""
    for unset_or_on in (None, "true"):
        warning = daemon_warning("sc://h:15002", unset_or_on)
        assert warning is not None
        assert warning.startswith("the Spark Connect server at sc://h:15002 starts its Python workers through a daemon")
        assert "(spark.python.use.daemon=true)" in warning and "--conf spark.python.use.daemon=false" in warning
    assert daemon_warning("sc://h:15002", "false") is None
    assert daemon_warning("sc://h:15002", " False") is None


@pytest.mark.cluster
def test_log_summary_over_spark_connect_equals_local_across_two_runs(
    connect_server: Any, connect_case: ConnectCase, kafka_bootstrap: str
) -> None:
    topic, env, local_resources = connect_case.topic, connect_case.env, connect_case.local
    local = local_resources["storage"]
    connect_csv = connect_case.data / local.summary_file
    rng = random.Random(15)
    for first in (T0, T0 + timedelta(minutes=30)):
        produce(kafka_bootstrap, topic, lines(rng, first, 400))
        assert materialize([logs.log_summary], resources=local_resources).success
        started = time.monotonic()
        assert finish(start_run(env)) == (0, "")
        print(f"run over Spark Connect (new process): {time.monotonic() - started:.1f} s")
        assert connect_csv.read_text() == local.summary_csv.read_text()
        deadline = time.monotonic() + 90
        while (kept := server_python(connect_server)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not kept, (
            f"the Connect server still has {len(kept)} Python process(es) 90 s after the run "
            f"(a daemon per session is kept: spark.python.use.daemon): {kept}"
        )
    server_log = connect_server.daemon.logfile.read_text()
    assert "INFO MicroBatchExecution" not in server_log, (
        "the server logs each batch at INFO: spark.log.level is not WARN"
    )
    rejects = connect_case.data / "log_summary" / "rejects"
    assert sorted(p.name for p in rejects.iterdir()) == ["batch_id=0", "batch_id=1"]
    assert not list((connect_case.data / "log_summary").glob(".batches-*")), "the batch journal was left behind"


@pytest.mark.cluster
def test_a_run_killed_over_spark_connect_once_batch_0_is_planned_is_made_whole_by_the_next_run(
    connect_case: ConnectCase, kafka_bootstrap: str
) -> None:
    """The killed run's query either still runs in the server when the next run starts (that run
    stops it: the test below makes sure of that case) or has committed its batch by then; either
    way the next run's CSV equals local[2]'s and no journal or lease is left."""
    env, data, local_resources = connect_case.env, connect_case.data, connect_case.local
    produce(kafka_bootstrap, connect_case.topic, lines(random.Random(16), T0, 30_000))
    assert materialize([logs.log_summary], resources=local_resources).success
    exit_code = kill_at(env, data, "batch 0 planned", random.Random(16))
    assert exit_code == -signal.SIGKILL, f"the run ended by itself (exit {exit_code}) before the kill"
    assert len(list((data / SUMMARY_DIR).glob(".batches-*.lease"))) == 1, "the killed run's lease is not there"

    rerun = start_run(env)
    output, _ = rerun.communicate(timeout=300)
    print(output[-4000:])
    assert rerun.returncode == 0
    stopped = any("killed log_summary runs left running" in line for line in output.splitlines())
    print(f"the killed run's query was {'stopped by the next run' if stopped else 'over before the next run'}")
    local = local_resources["storage"]
    assert (data / local.summary_file).read_text() == local.summary_csv.read_text()
    assert not list((data / SUMMARY_DIR).glob(".batches-*")), "a batch journal or lease was left behind"


KILLED_RUN_WITH_A_ENDLESS_QUERY = """
import sys, time
from pathlib import Path
from pyspark.sql import SparkSession
from sml_assets.logs_stream import QUERY_PREFIX
from sml_assets.run_lease import take_lease
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
lease = take_lease(Path(sys.argv[2]))
lease.record(spark.session_id)
rate = spark.readStream.format("rate").option("rowsPerSecond", 1).load()
query = rate.writeStream.format("noop").queryName(f"{QUERY_PREFIX}endless_{lease.token[:8]}").start()
print(query.name, spark.session_id, flush=True)
time.sleep(600)
"""
"""A log_summary run as the server sees it when the run is killed mid-query, but whose query never
ends by itself: whatever the timing, the next run finds it still running."""
ACTIVE_IN_SESSION = """
import sys
from pyspark.sql import SparkSession
from sml_assets.orphans import session_url
try:
    session = SparkSession.builder.remote(session_url(sys.argv[1], sys.argv[2])).create()
    print([query.name for query in session.streams.active])
except Exception as error:
    print("SESSION_CLOSED" if "SESSION_CLOSED" in str(error) else error)
"""
"""What a session still runs, as a client reattached to it sees it (or that the session is gone)."""


@pytest.mark.cluster
def test_a_query_a_killed_run_left_running_in_the_server_is_stopped_by_the_next_run(
    connect_server: Any, connect_case: ConnectCase
) -> None:
    data = connect_case.data
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN_WITH_A_ENDLESS_QUERY, connect_server.url, str(data / SUMMARY_DIR)],
        stdout=subprocess.PIPE,
        text=True,
        env=connect_case.env,
    )
    try:
        assert victim.stdout is not None
        name, _, session_id = victim.stdout.readline().strip().partition(" ")
        assert name.startswith("log_summary_endless_"), f"the orphan's query did not start (exit {victim.poll()})"
    finally:
        victim.kill()
        victim.communicate(timeout=60)
    active = [sys.executable, "-c", ACTIVE_IN_SESSION, connect_server.url, session_id]
    still = subprocess.run(active, capture_output=True, text=True, env=connect_case.env, timeout=120)
    assert still.stdout.strip() == str([name]), f"the killed run's query is not running: {still.stdout}{still.stderr}"

    rerun = start_run(connect_case.env)
    output, _ = rerun.communicate(timeout=300)
    print(output[-4000:])
    assert rerun.returncode == 0
    stopped = [line for line in output.splitlines() if "killed log_summary runs left running" in line]
    assert stopped and name in stopped[0], "the query the killed run left running was not stopped"
    assert not list((data / SUMMARY_DIR).glob(".batches-*")), "the killed run's lease was left behind"
    after = subprocess.run(active, capture_output=True, text=True, env=connect_case.env, timeout=120)
    assert after.stdout.strip() in ("[]", "SESSION_CLOSED"), f"still running: {after.stdout}{after.stderr}"


STOP_FROM_OUTSIDE = """
import json, sys
from pathlib import Path
from pyspark.sql import SparkSession
from sml_assets.orphans import session_url
from sml_assets_tests.faults import wait_until

def session_id():
    for lease in (Path(sys.argv[2]) / "log_summary").glob(".batches-*.lease"):
        try:
            return json.loads(lease.read_text()).get("session_id")
        except ValueError:
            pass

session = SparkSession.builder.remote(session_url(sys.argv[1], wait_until(session_id, 240, "run's session"))).create()
query = wait_until(lambda: session.streams.active[:1], 240, "the run's query")[0]
query.stop()
print(query.id, flush=True)
"""
"""An operator who attaches to the run's session (by the id its lease records) and stops the run's
query as soon as it is active; it leaves the session to the run (no `session.stop()`, which releases it)."""
START_ON_ITS_CHECKPOINT = """
import sys
from pathlib import Path
from pyspark.sql import SparkSession
from sml_assets_tests.faults import wait_until

metadata = Path(sys.argv[2]) / "spark-checkpoints" / "log_summary" / "windows" / "metadata"
session = SparkSession.builder.remote(sys.argv[1]).create()
identity = wait_until(lambda: metadata.is_file() and metadata.read_text(), 240, "the run's checkpoint metadata")
rival = Path(sys.argv[3])
rival.mkdir()
(rival / "metadata").write_text(identity)
rate = session.readStream.format("rate").load()
query = rate.writeStream.format("noop").option("checkpointLocation", str(rival)).start()
query.stop()
session.stop()
print(query.id, flush=True)
"""
"""Another session of the server starting a query with the run's checkpoint identity (its `metadata`
file, copied: the run's offsets and commits stay untouched): Spark stops the run's query
(spark.sql.streaming.stopActiveRunOnRestart), as a run of another deployment on the same checkpoint would."""


@pytest.mark.cluster
@pytest.mark.parametrize(
    "stopper",
    [STOP_FROM_OUTSIDE, pytest.param(START_ON_ITS_CHECKPOINT, marks=pytest.mark.stress)],
    ids=["operator", "query-on-its-checkpoint"],
)
def test_a_run_whose_query_is_stopped_from_outside_fails_naming_it_and_the_rerun_is_whole(
    stopper: str, connect_server: Any, connect_case: ConnectCase, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A stopped query ends as quietly as a finished one: the run must fail, not report part of the
    topic as done, and leave nothing the next run does not make whole."""
    data, local_resources = connect_case.data, connect_case.local
    produce(kafka_bootstrap, connect_case.topic, lines(random.Random(17), T0, 5_000))
    assert materialize([logs.log_summary], resources=local_resources).success
    operator = subprocess.Popen(
        [sys.executable, "-c", stopper, connect_server.url, str(data), str(tmp_path / "rival")],
        stdout=subprocess.PIPE,
        text=True,
        env=connect_case.env,
    )
    try:
        exit_code, failed = finish(start_run(connect_case.env))
        stopped, _ = operator.communicate(timeout=120)
    finally:
        operator.kill()
        operator.communicate()
    assert operator.returncode == 0, "the run's query was not stopped"
    query_id = stopped.strip()
    assert exit_code == 1
    checkpoint = data / CHECKPOINT_DIR / "windows"
    assert f"QueryStoppedError: Spark query {QUERY_PREFIX}" in failed
    assert f"(id {query_id}) on {connect_case.topic} was stopped before it read" in failed
    assert f"a query started on its checkpoint {checkpoint}" in failed
    assert "then run log_summary again" in failed
    local = local_resources["storage"]
    assert not (data / local.summary_file).exists(), "the stopped run wrote a CSV"
    assert finish(start_run(connect_case.env)) == (0, "")
    assert (data / local.summary_file).read_text() == local.summary_csv.read_text()
    assert not list((data / SUMMARY_DIR).glob(".batches-*")), "a batch journal or lease was left behind"


def kill_at(env: dict[str, str], data: Path, milestone: str, rng: random.Random) -> int:
    """Start a run over Connect (`env`, writing to `data`), SIGKILL it at `milestone`; its exit code."""
    reached = LOG_MILESTONES[milestone]
    victim = start_run(env)
    try:
        wait_until(lambda: reached(data) or victim.poll() is not None, 180, f"over Connect: {milestone}")
        linger(rng.uniform(0.0, 0.3))
    finally:
        victim.kill()
        victim.communicate(timeout=60)
    return victim.returncode


LATER_MILESTONES = [
    pytest.param(milestone, marks=[] if milestone == "summary state written" else [pytest.mark.stress])
    for milestone in LOG_MILESTONES
    if milestone not in ("during start-up", "batch 0 planned")
]
"""The crash trials' milestones after start-up, but batch 0 planned (the test above): the merge
in the middle by default, every one with `make stress`."""


@pytest.mark.cluster
@pytest.mark.parametrize("milestone", LATER_MILESTONES)
def test_a_run_killed_over_spark_connect_at_a_milestone_is_made_whole_by_the_next_run(
    milestone: str, connect_case: ConnectCase, kafka_bootstrap: str
) -> None:
    """A crash trial of test_crash_safety over Connect: a run killed at `milestone`, then rerun, gives
    the CSV of one uninterrupted local run and leaves no journal or lease."""
    topic, data, local_resources = connect_case.topic, connect_case.data, connect_case.local
    rng = random.Random(f"connect {milestone}")
    produce(kafka_bootstrap, topic, lines(rng, T0, 5_000))
    assert materialize([logs.log_summary], resources=local_resources).success
    exit_code = kill_at(connect_case.env, data, milestone, rng)
    assert exit_code in (0, -signal.SIGKILL), f"the run failed by itself (exit {exit_code})"
    print(f"over Connect: killed at '{milestone}' (exit {exit_code})")
    assert finish(start_run(connect_case.env)) == (0, "")
    local = local_resources["storage"]
    assert (data / local.summary_file).read_text() == local.summary_csv.read_text()
    assert not list((data / SUMMARY_DIR).glob(".batches-*")), "a batch journal or lease was left behind"


SESSION_LINE = "Spark Connect session "


@dataclass
class WatchedRun:
    """A run in a new process whose output is read as it comes, so a test can wait on a line."""

    process: subprocess.Popen[str]
    output: list[str]
    reader: threading.Thread

    @classmethod
    def start(cls, env: dict[str, str]) -> WatchedRun:
        process = start_run(env)
        output: list[str] = []
        assert process.stdout is not None
        reader = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
        reader.start()
        return cls(process, output, reader)

    def said(self, text: str) -> str | None:
        return next((line for line in list(self.output) if text in line), None)

    def finish(self, timeout_s: float = 300) -> tuple[int, str]:
        """Exit code and the `FAILED:` lines (the output is printed for the test's log)."""
        code = self.process.wait(timeout=timeout_s)
        self.reader.join(timeout=30)
        return outcome(code, "".join(self.output))

    def session_id(self) -> str:
        line = self.said(SESSION_LINE)
        assert line is not None, "the run did not say which Spark Connect session it used"
        return line.split(SESSION_LINE, 1)[1].split()[0]


@pytest.mark.cluster
@pytest.mark.parametrize("over", ["connect", "local[2]"])
def test_two_runs_at_once_the_second_waits_for_the_first_and_the_csv_is_one_runs(
    over: str, connect_server: Any, connect_case: ConnectCase, kafka_bootstrap: str
) -> None:
    """The first run is frozen (SIGSTOP) once it has opened the checkpoint, holding the run lock: the
    second must wait for it instead of working on the same checkpoint and summary beside it (which
    made the first run's query stop, or its CSV go back to the summary it had read). Over Connect,
    the first run releases its session when its query is over."""
    env = dict(connect_case.env)
    if over == "local[2]":
        env.pop("SML_SPARK_REMOTE")
    data, local_resources = connect_case.data, connect_case.local
    produce(kafka_bootstrap, connect_case.topic, lines(random.Random(18), T0, 20_000))
    assert materialize([logs.log_summary], resources=local_resources).success
    first = WatchedRun.start(env)
    second: WatchedRun | None = None
    try:
        wait_until(
            lambda: LOG_MILESTONES["checkpoint opened"](data) or first.process.poll() is not None,
            240,
            "the first run to open the checkpoint",
        )
        first.process.send_signal(signal.SIGSTOP)
        second = waiter = WatchedRun.start(env)
        waiting = wait_until(
            lambda: waiter.said("waiting for another log_summary run") or waiter.process.poll() is not None,
            240,
            "the second run to wait for the first",
        )
        assert waiting is not True and f"(pid {first.process.pid}, since " in str(waiting), (
            f"the second run did not wait for the first (exit {second.process.poll()})"
        )
        first.process.send_signal(signal.SIGCONT)
        assert first.finish() == (0, "")
        assert second.finish() == (0, "")
    finally:
        for run in (first, second):
            if run is not None and run.process.poll() is None:
                run.process.send_signal(signal.SIGCONT)
                run.process.kill()
                run.process.wait(timeout=60)
    local = local_resources["storage"]
    assert (data / local.summary_file).read_text() == local.summary_csv.read_text()
    assert not list((data / SUMMARY_DIR).glob(".batches-*")), "a batch journal or lease was left behind"
    assert second is not None and second.said("nothing new in"), "the second run found lines the first had not read"
    if over == "connect":
        reattached = subprocess.run(
            [sys.executable, "-c", ACTIVE_IN_SESSION, connect_server.url, first.session_id()],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert reattached.stdout.strip() == "SESSION_CLOSED", (
            f"the first run's session was not released: {reattached.stdout}{reattached.stderr}"
        )
