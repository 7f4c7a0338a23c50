"""Fixtures shared by the suite: the real local stack (started once, reused if running) and
per-test isolation (own topic, own table, own HDFS path, own data dir), and the check at the end
of the session that nothing a test made was left behind (`sml_assets_tests/leaks.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import text

from simulator.topics import wait_for_topics
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.settings import data_dir
from sml_assets_tests.leaks import SESSION_VARIABLE, Leaks, find_leaks

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_BOOTSTRAP = os.environ.get("SML_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
POSTGRES_URL = os.environ.get("SML_TEST_POSTGRES_URL", "postgresql+psycopg://sml:sml@127.0.0.1:55432/sml")
HDFS_URL = os.environ.get("SML_TEST_HDFS_URL", "http://127.0.0.1:9870")
HDFS_USER = "root"
HDFS_TEST_ROOT = f"/user/{HDFS_USER}/sml-tests"
TOPIC_READY_S = 30

settings.register_profile("sml", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sml")
"""Property tests assert behaviour, never time: Hypothesis' 200 ms deadline and its too-slow check
fail a correct test on a loaded 2-core machine (seen in CI-like runs beside Spark and Kafka)."""

SESSION = uuid.uuid4().hex[:6]
TEST_PREFIX = f"t_{SESSION}_"
"""Every topic, PostgreSQL table and HDFS folder a test of this session makes starts with this, so
the leak check looks at this session's leftovers only, while other sessions share the stack."""
os.environ[SESSION_VARIABLE] = SESSION
"""Inherited by every process a test starts: the leak check finds survivors by it."""


def stack_data_dir() -> Path:
    return data_dir()


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config) -> None:
    """Bring the local stack up once per session (a no-op when it already runs). Its services
    outlive the session, so they do not carry the session's mark the leak check looks for."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "devstack" / "stack.py"), "up"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={key: value for key, value in os.environ.items() if key != SESSION_VARIABLE},
    )
    if result.returncode != 0:
        pytest.fail(f"local stack did not come up:\n{result.stdout}\n{result.stderr}")
    pytestconfig.stash[STACK_USED] = True


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: None) -> str:
    return KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def postgres_url(stack: None) -> str:
    """The stack's database, its shared sml tables brought to the current schema as an operator
    would (`migrate`): tables an older sml created lack the topic id and target table columns."""
    database = MetricsDatabase(url=POSTGRES_URL)
    if database.missing_columns():
        database.migrate({})
    database.engine().dispose()
    return POSTGRES_URL


@pytest.fixture(scope="session")
def hdfs_url(stack: None) -> str:
    return HDFS_URL


@pytest.fixture(scope="session")
def spark_jars_dir(stack: None) -> Path:
    return stack_data_dir() / "jars" / "spark-kafka"


@pytest.fixture
def hdfs(hdfs_url: str, unique_name: str) -> Iterator[HdfsResource]:
    """An HDFS resource whose folder is this test's own; the folder is removed afterwards."""
    root = f"{HDFS_TEST_ROOT}/{unique_name}"
    resource = HdfsResource(url=hdfs_url, user=HDFS_USER, base_dir=f"{root}/HDFS_Proj", retry_seconds=20)
    yield resource
    resource.client().delete(root, recursive=True)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, at most 40 characters (a table name as it is), usable as topic,
    table or path component; it starts with this session's TEST_PREFIX."""
    stem = "".join(c if c.isalnum() else "_" for c in request.node.name)[:22].strip("_").lower()
    return f"{TEST_PREFIX}{stem}_{uuid.uuid4().hex[:8]}"


def drop_postgres_test_data(database: MetricsDatabase, unique_name: str) -> None:
    """Remove what a test wrote to the shared PostgreSQL: its metrics table, and its topics' rows
    in sml's shared tables (their names start with the test's `unique_name`)."""
    with database.transaction() as connection:
        connection.execute(text(f'DROP TABLE IF EXISTS "{database.table}"'))
        for table in (database.tables.offsets, database.tables.dead_letters):
            connection.execute(table.delete().where(table.c.kafka_topic.startswith(unique_name, autoescape=True)))
    database.engine().dispose()


@pytest.fixture
def new_topic(kafka_bootstrap: str, unique_name: str) -> Iterator[Callable[..., str]]:
    """Create topics of its own for a test (deleted afterwards, even when it fails):
    new_topic(partitions=1). Returns once a new client sees every partition with a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(partitions: int = 1, suffix: str = "") -> str:
        name = f"{unique_name}{suffix}-{len(created)}"
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        created.append(name)
        futures[name].result(timeout=30)
        wait_for_topics(kafka_bootstrap, {name: partitions}, TOPIC_READY_S)
        return name

    yield make
    delete_topics(admin, created)


def delete_topics(admin: object, names: list[str]) -> None:
    """Delete topics a test made; what fails to go is reported by the leak check at the end."""
    if not names:
        return
    for future in admin.delete_topics(names, operation_timeout=30).values():  # type: ignore[attr-defined]
        try:
            future.result(timeout=30)
        except Exception:
            pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the many-trial crash tests to `make stress` (`-m stress`) unless `-m` names them."""
    if "stress" in (config.option.markexpr or ""):
        return
    stress = [item for item in items if item.get_closest_marker("stress")]
    if stress:
        config.hook.pytest_deselected(items=stress)
        items[:] = [item for item in items if not item.get_closest_marker("stress")]


STACK_USED = pytest.StashKey[bool]()
LEAKS = pytest.StashKey[Leaks]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run when a test left something behind (after every fixture's teardown)."""
    leaks = find_leaks(
        SESSION,
        TEST_PREFIX,
        services=session.config.stash.get(STACK_USED, False),
        kafka_bootstrap=KAFKA_BOOTSTRAP,
        postgres_url=POSTGRES_URL,
        hdfs_url=HDFS_URL,
        hdfs_roots=[HDFS_TEST_ROOT, "/user"],
    )
    session.config.stash[LEAKS] = leaks
    if leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    leaks = config.stash.get(LEAKS, None)
    if leaks:
        terminalreporter.section("left behind by this session's tests: the run fails", red=True)
        terminalreporter.line(
            f"made by tests of this session (names start with {TEST_PREFIX}, processes carry "
            f"{SESSION_VARIABLE}={SESSION}) and not removed by their fixtures:"
        )
        terminalreporter.line(leaks.report())


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[MetricsDatabase]:
    """The metrics database on SQLite (a temp file) and on PostgreSQL (a table of its own)."""
    if request.param == "sqlite":
        db = MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}", table="server_matric")
        yield db
        db.engine().dispose()
        return
    db = MetricsDatabase(url=request.getfixturevalue("postgres_url"), table=unique_name[:40])
    yield db
    drop_postgres_test_data(db, unique_name)


@pytest.fixture
def kafka_for(kafka_bootstrap: str) -> Callable[[str], KafkaResource]:
    return lambda topic: KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic, timeout_s=10)


@pytest.fixture
def trial_database(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> Iterator[Callable[[str], MetricsDatabase]]:
    """A metrics database of the trial's own: a SQLite file, or a PostgreSQL table."""
    made: list[MetricsDatabase] = []

    def make(backend: str) -> MetricsDatabase:
        if backend == "sqlite":
            database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'trial.db'}", table="server_matric")
        else:
            database = MetricsDatabase(url=request.getfixturevalue("postgres_url"), table=unique_name[:40])
        made.append(database)
        return database

    yield make
    for database in made:
        if database.url.startswith("postgresql"):
            drop_postgres_test_data(database, unique_name)
        database.engine().dispose()


@pytest.fixture(scope="session")
def spark_resource(spark_jars_dir: Path) -> SparkResource:
    """The session's one Spark session, started here so its cost is paid (and timed) once: nothing
    stops it, and every later `SparkSession.builder.getOrCreate()` in this process reuses it."""
    resource = SparkResource(jars_dir=str(spark_jars_dir))
    started = time.monotonic()
    resource.session()
    print(f"\nSpark session start: {time.monotonic() - started:.1f} s")
    return resource
