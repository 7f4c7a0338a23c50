"""Fixtures shared by the suite: the real local stack (started once, reused if running) and
per-test isolation (own topic, own table, own HDFS path, own data dir)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.spark import SparkResource
from sml_assets.settings import data_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_BOOTSTRAP = os.environ.get("SML_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
POSTGRES_URL = os.environ.get(
    "SML_TEST_POSTGRES_URL", "postgresql+psycopg://sml:sml@127.0.0.1:55432/sml"
)
HDFS_URL = os.environ.get("SML_TEST_HDFS_URL", "http://127.0.0.1:9870")
HDFS_USER = "root"


def stack_data_dir() -> Path:
    return data_dir()


@pytest.fixture(scope="session")
def stack() -> None:
    """Bring the local stack up once per session (a no-op when it already runs)."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "devstack" / "stack.py"), "up"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800,
    )
    if result.returncode != 0:
        pytest.fail(f"local stack did not come up:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: None) -> str:
    return KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def postgres_url(stack: None) -> str:
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
    root = f"/user/{HDFS_USER}/sml-tests/{unique_name}"
    resource = HdfsResource(url=hdfs_url, user=HDFS_USER, base_dir=f"{root}/HDFS_Proj", retry_seconds=20)
    yield resource
    resource.client().delete(root, recursive=True)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test, usable as topic, table or path component."""
    stem = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40].strip("_").lower()
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_topic(kafka_bootstrap: str, unique_name: str) -> Iterator[Callable[..., str]]:
    """Create topics of its own for a test (deleted afterwards): new_topic(partitions=1)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(partitions: int = 1, suffix: str = "") -> str:
        name = f"{unique_name}{suffix}-{len(created)}"
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
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
    with db.transaction() as connection:
        connection.execute(text(f'DROP TABLE IF EXISTS "{db.table}"'))
    db.engine().dispose()


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
            with database.transaction() as connection:
                connection.execute(text(f'DROP TABLE IF EXISTS "{database.table}"'))
        database.engine().dispose()


@pytest.fixture(scope="module")
def spark_resource(spark_jars_dir: Path) -> SparkResource:
    """The module's one Spark session, started here so its cost is paid (and timed) once."""
    resource = SparkResource(jars_dir=str(spark_jars_dir))
    started = time.monotonic()
    resource.session()
    print(f"\nSpark session start: {time.monotonic() - started:.1f} s")
    return resource
