"""docker-compose.yml's Dagster topology, without Docker: a code-location server
(`dagster code-server start`), the webserver and the daemon as separate processes on free ports,
Dagster's storage in PostgreSQL (the stack's, in a schema of this test's own, dropped afterwards)
configured by docker/dagster.yaml, and the webserver and daemon reaching the code over gRPC as
docker/workspace.yaml says. Through them: the schedule materializes server_metrics, two
materializations launched at once the way the UI's Materialize button does both succeed, and the
freshness daemon records server_metrics as fresh.

The code location is `sml_assets_tests.overlap_definitions` (sml's metrics assets, job, schedule and
sensor over the same resources), so a logs schedule tick cannot start Spark in the middle."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaException, Producer
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.definitions.freshness import FreshnessState
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from sml_assets.automation import ingest_metrics_every_2_minutes
from sml_assets.resources.database import MetricsDatabase
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.launches]

BIN = Path(sys.executable).parent
LOCATION = "sml_assets"
CODE_MODULE = "sml_assets_tests.overlap_definitions"
SERVER_METRICS = AssetKey("server_metrics")
DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
UI_BACKLOG = 10_000
UI_CHUNK = 10


@dataclass
class Topology:
    root: Path
    env: dict[str, str]
    webserver: str
    metrics_topic: str
    database: MetricsDatabase
    instance: DagsterInstance

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.webserver}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer
        return answer["data"]

    def rows(self) -> tuple[int, int]:
        """(rows, distinct Kafka positions) in the metrics table."""
        table = self.database.tables.metrics
        positions = select(table.c.kafka_partition, table.c.kafka_offset).distinct().subquery()
        with self.database.transaction() as connection:
            count = connection.execute(select(func.count()).select_from(table)).scalar_one()
            distinct = connection.execute(select(func.count()).select_from(positions)).scalar_one()
        return count, distinct

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}" for path in sorted(self.root.glob("*.log"))
        )


def produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for n in range(first, first + count):
        producer.produce(topic, f"id: {n % 20 + 1}, cpu: {n % 90}.5, mem: {n % 70}.25, disk: 40.0".encode())
        producer.poll(0)
    assert producer.flush(60) == 0, "metrics messages still unacknowledged after 60s"


def instance_config(schema: str) -> dict[str, Any]:
    """docker/dagster.yaml as it is, but for the search path of this test's own schema."""
    config = yaml.safe_load((REPO_ROOT / "docker" / "dagster.yaml").read_text())
    config["storage"]["postgres"]["postgres_db"]["params"] = {"options": f"-csearch_path={schema}"}
    return config


def workspace_config(port: int) -> dict[str, Any]:
    """docker/workspace.yaml with loopback for the code server's service name."""
    config = yaml.safe_load((REPO_ROOT / "docker" / "workspace.yaml").read_text())
    server = config["load_from"][0]["grpc_server"]
    server.update(host="127.0.0.1", port=port)
    assert server["location_name"] == LOCATION
    return config


class Processes:
    """Child processes in their own sessions, stopped (then killed) together, whatever happened."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "wb") as log:
            child = subprocess.Popen(
                list(command),
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=30)


def grpc_ready(port: int) -> bool:
    """What `dagster api grpc-health-check` asks, from this process: polling through that command
    started a Python that imports Dagster every second, beside the server it waited for."""
    from dagster._grpc.client import DagsterGrpcClient

    with redirect_stdout(io.StringIO()):  # it prints each refused connection
        return DagsterGrpcClient(port=port, host="127.0.0.1").health_check_query() == "SERVING"


def http_ready(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, postgres_url: str) -> Iterator[Topology]:
    from confluent_kafka.admin import AdminClient, NewTopic

    root = tmp_path_factory.mktemp("topology")
    suffix = uuid.uuid4().hex[:8]
    schema = f"sml_topology_{suffix}"
    metrics_topic, logs_topic = f"t_topology_{suffix}-metrics", f"t_topology_{suffix}-logs"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(metrics_topic, 2, 1), NewTopic(logs_topic, 1, 1)]).values():
        future.result(timeout=30)
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    home = root / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(schema)))
    code_port, web_port = free_port(), free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(workspace_config(code_port)))
    stack = make_url(postgres_url)
    dagster_env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_HOSTNAME": stack.host or "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(stack.port),
        "DAGSTER_POSTGRES_USER": stack.username or "",
        "DAGSTER_POSTGRES_PASSWORD": stack.password or "",
        "DAGSTER_POSTGRES_DB": stack.database or "",
    }
    database = MetricsDatabase(url=f"sqlite:///{root / 'sml.db'}", table="server_matric")
    database.ensure_tables()
    env = {
        **os.environ,
        **dagster_env,
        "PYTHONPATH": str(REPO_ROOT),
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
        "SML_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SML_METRICS_TOPIC": metrics_topic,
        "SML_LOGS_TOPIC": logs_topic,
        "SML_METRICS_DB_URL": database.url,
        "SML_METRICS_TABLE": database.table,
        "SML_DATA_DIR": str(root / "data"),
    }
    processes = Processes(root, env)
    instance = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in dagster_env.items():
                patch.setenv(name, value)
            instance = DagsterInstance.from_config(str(home))
            code = processes.start(
                "code-server",
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(code_port),
                "-m",
                CODE_MODULE,
                "--location-name",
                LOCATION,
            )
            wait_until(
                lambda: code.poll() is not None or grpc_ready(code_port),
                180,
                f"code-location server answering on port {code_port} (log: {root / 'code-server.log'})",
                0.25,
            )
            assert code.poll() is None, f"the code-location server exited:\n{(root / 'code-server.log').read_text()}"
            web = processes.start(
                "webserver",
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(web_port),
                "-w",
                str(workspace),
            )
            processes.start("daemon", str(BIN / "dagster-daemon"), "run", "-w", str(workspace))
            webserver = f"http://127.0.0.1:{web_port}"
            wait_until(
                lambda: web.poll() is not None or http_ready(f"{webserver}/server_info"),
                180,
                f"dagster-webserver answering on {webserver} (log: {root / 'webserver.log'})",
                0.5,
            )
            assert web.poll() is None, f"the webserver exited:\n{(root / 'webserver.log').read_text()}"
            yield Topology(root, env, webserver, metrics_topic, database, instance)
    finally:
        processes.stop()
        if instance is not None:
            instance.dispose()
        database.engine().dispose()
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
        for future in admin.delete_topics([metrics_topic, logs_topic], operation_timeout=30).values():
            with suppress(KafkaException):
                future.result(timeout=30)


def finished_runs(instance: DagsterInstance, runs_filter: RunsFilter, count: int) -> Callable[[], list]:
    def check() -> list:
        records = instance.get_run_records(runs_filter)
        return records if len(records) >= count and all(r.dagster_run.status in DONE for r in records) else []

    return check


def failures(topology: Topology, records: list) -> str:
    """The error messages of the runs that did not succeed, for the assertion message."""
    lines = []
    for record in records:
        if record.dagster_run.status == DagsterRunStatus.SUCCESS:
            continue
        for entry in topology.instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event
            if event is not None and event.is_failure:
                error = event.step_failure_data.error if event.is_step_failure else None
                detail = f" ({error.cls_name}: {error.message.strip()})" if error else ""
                lines.append(f"{record.dagster_run.run_id}: {entry.message or event.message}{detail}")
    return "\n".join(lines) or topology.logs()


def test_the_schedule_materializes_server_metrics_through_the_code_server_and_the_daemon(
    topology: Topology, kafka_bootstrap: str
) -> None:
    produce(kafka_bootstrap, topology.metrics_topic, 0, 300)
    scheduled = RunsFilter(tags={"dagster/schedule_name": ingest_metrics_every_2_minutes.name})
    records = wait_until(
        finished_runs(topology.instance, scheduled, 1),
        300,
        f"a run of {ingest_metrics_every_2_minutes.name} finished\n{topology.logs()}",
        1,
    )
    assert [r.dagster_run.status for r in records] == [DagsterRunStatus.SUCCESS] * len(records), failures(
        topology, records
    )
    assert topology.rows() == (300, 300)
    event = topology.instance.get_latest_materialization_event(SERVER_METRICS)
    assert event is not None and event.run_id in {r.dagster_run.run_id for r in records}

    def fresh() -> bool:
        states = topology.instance.get_freshness_state_records([SERVER_METRICS])
        return SERVER_METRICS in states and states[SERVER_METRICS].freshness_state == FreshnessState.PASS

    wait_until(fresh, 120, "the freshness daemon recorded server_metrics as PASS", 1)


LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def launch_from_the_ui(topology: Topology) -> str:
    """What the launchpad sends for "Materialize server_metrics": a run of the implicit asset job
    for one asset, no tags. Its config (small chunks) keeps a step busy long enough that, without
    the pool, the second run's step would run beside the first."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["server_metrics"]}],
            "assetCheckSelection": [],
        },
        "mode": "default",
        "runConfigData": {"ops": {"server_metrics": {"config": {"chunk_size": UI_CHUNK}}}},
        "executionMetadata": {"tags": []},
    }
    result = topology.graphql(LAUNCH, {"executionParams": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def step_interval(instance: DagsterInstance, run_id: str) -> tuple[float, float]:
    """When the server_metrics step started and when it succeeded, in that run."""
    times: dict[DagsterEventType, list[float]] = {DagsterEventType.STEP_START: [], DagsterEventType.STEP_SUCCESS: []}
    for entry in instance.all_logs(run_id, of_type=set(times)):
        if entry.step_key == "server_metrics" and entry.dagster_event is not None:
            times[entry.dagster_event.event_type].append(entry.timestamp)
    (start,), (end,) = times[DagsterEventType.STEP_START], times[DagsterEventType.STEP_SUCCESS]
    return start, end


def test_two_materializations_from_the_ui_at_once_both_succeed_and_store_each_message_once(
    topology: Topology, kafka_bootstrap: str
) -> None:
    """Without the pool, the two runs race on the stored offsets and one fails with
    OffsetConflictError; with it, the second run's step waits for the first, then succeeds."""
    before, _ = topology.rows()
    produce(kafka_bootstrap, topology.metrics_topic, 10_000_000, UI_BACKLOG)
    launched_at = datetime.now(UTC) - timedelta(seconds=1)
    run_ids = [launch_from_the_ui(topology), launch_from_the_ui(topology)]
    records = wait_until(
        finished_runs(topology.instance, RunsFilter(run_ids=run_ids), 2),
        600,
        f"both UI launches finished\n{topology.logs()}",
        1,
    )
    assert {r.dagster_run.status for r in records} == {DagsterRunStatus.SUCCESS}, failures(topology, records)
    assert topology.rows() == (before + UI_BACKLOG, before + UI_BACKLOG), "a message is missing or doubled"

    since = topology.instance.get_run_records(RunsFilter(created_after=launched_at))
    intervals = sorted(
        step_interval(topology.instance, r.dagster_run.run_id)
        for r in since
        if r.dagster_run.status == DagsterRunStatus.SUCCESS
    )
    for (_, first_end), (second_start, _) in pairwise(intervals):
        assert first_end <= second_start, f"two server_metrics steps ran at once: {intervals}"
    latest_launch = max(r.create_timestamp.timestamp() for r in records)
    assert latest_launch < intervals[0][1], "both launches must be in before the first step ends, or nothing waited"
