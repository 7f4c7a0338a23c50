"""Services going away mid-run: the run fails naming the service, leaves no partial state, and the
next run after the service returns completes the work.

The shared stack is never stopped: each test reaches its service through a `TcpProxy` it cuts
(Kafka: a private broker advertised through the proxy, so every client connection goes through it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import materialize
from hdfs import InsecureClient

from simulator.topics import wait_for_topics
from sml_assets.assets.hdfs import SUMMARY_FILE, hdfs_log_summary
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.hdfs import HdfsResource
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.storage import LocalStorage
from sml_assets_tests.conftest import TOPIC_READY_S, drop_postgres_test_data
from sml_assets_tests.faults import PrivateKafka, TcpProxy, wait_until
from sml_assets_tests.helpers import (
    CONSUMER,
    assert_offsets_cover_exactly_what_is_stored,
    failure_message,
    good,
    metadata,
    produce,
    run,
    table_count,
)

pytestmark = pytest.mark.integration

BACKLOG = 30_000


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory, stack: None) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(tmp_path_factory.mktemp("private-kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def cut_when(condition: Callable[[], bool], proxy: TcpProxy, timeout_s: float = 120) -> threading.Thread:
    """Cut `proxy` as soon as `condition` holds, from a thread, while the run goes on."""
    failures: list[AssertionError] = []

    def watch() -> None:
        try:
            wait_until(condition, timeout_s, "the moment to cut")
        except AssertionError as error:
            failures.append(error)
        proxy.cut()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.failures = failures  # type: ignore[attr-defined]
    watcher.start()
    return watcher


def test_kafka_going_away_mid_run_fails_naming_the_brokers_and_the_next_run_completes(
    private_kafka: PrivateKafka, tmp_path: Path
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "going-away"
    admin = AdminClient({"bootstrap.servers": private_kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    wait_for_topics(private_kafka.bootstrap, {topic: 2}, TOPIC_READY_S)
    padded = [good(n) + b", note: " + b"x" * 1000 for n in range(BACKLOG // 2)]
    for partition in range(2):
        produce(private_kafka.bootstrap, topic, padded, partition=partition)
    database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}")
    database.ensure_tables()
    kafka = KafkaResource(bootstrap_servers=private_kafka.bootstrap, metrics_topic=topic, timeout_s=5)
    private_kafka.proxy.bytes_per_s = 2_000_000
    watcher = cut_when(lambda: bool(database.stored_offsets(CONSUMER, topic)), private_kafka.proxy)

    result = run(kafka, database, chunk_size=200, consumer_name=CONSUMER)
    watcher.join(timeout=60)
    assert not watcher.failures, watcher.failures  # type: ignore[attr-defined]

    assert not result.success, "the run finished although the broker went away"
    assert (
        f"SML_KAFKA_BOOTSTRAP_SERVERS={private_kafka.bootstrap} did not answer within 5s while consuming {topic}"
        in failure_message(result)
    )
    partial = assert_offsets_cover_exactly_what_is_stored(database, topic)
    assert 0 < partial < BACKLOG, "the cut did not land mid-run"

    private_kafka.proxy.bytes_per_s = None
    private_kafka.proxy.restore()
    rerun = metadata(run(kafka, database, chunk_size=200, consumer_name=CONSUMER))
    assert rerun["messages read"] == BACKLOG - partial
    assert assert_offsets_cover_exactly_what_is_stored(database, topic) == BACKLOG
    assert table_count(database, topic) == BACKLOG


def test_database_going_away_mid_run_fails_naming_the_url_masked_and_the_next_run_completes(
    postgres_url: str, new_topic: Callable[..., str], kafka_bootstrap: str, unique_name: str
) -> None:
    from sqlalchemy.engine import make_url

    topic = new_topic(partitions=2)
    for partition in range(2):
        produce(kafka_bootstrap, topic, [good(n) for n in range(BACKLOG // 2)], partition=partition)
    real = make_url(postgres_url)
    proxy = TcpProxy(real.port)
    proxied_url = real.set(port=proxy.port).render_as_string(hide_password=False)
    direct = MetricsDatabase(url=postgres_url, table=unique_name[:40])
    database = MetricsDatabase(url=proxied_url, table=direct.table, connect_timeout_s=2)
    kafka = KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic, timeout_s=10)
    try:
        direct.ensure_tables()
        watcher = cut_when(lambda: bool(direct.stored_offsets(CONSUMER, topic)), proxy)
        result = run(kafka, database, chunk_size=100, consumer_name=CONSUMER)
        watcher.join(timeout=60)
        assert not watcher.failures, watcher.failures  # type: ignore[attr-defined]

        assert not result.success, "the run finished although the database went away"
        assert (
            f"SML_METRICS_DB_URL=postgresql+psycopg://{real.username}:***@127.0.0.1:{proxy.port}/{real.database} "
            "could not be reached" in failure_message(result)
        )
        partial = assert_offsets_cover_exactly_what_is_stored(direct, topic)
        assert 0 < partial < BACKLOG

        proxy.restore()
        rerun = metadata(run(kafka, database, chunk_size=100, consumer_name=CONSUMER))
        assert rerun["messages read"] == BACKLOG - partial
        assert assert_offsets_cover_exactly_what_is_stored(direct, topic) == BACKLOG
    finally:
        proxy.close()
        drop_postgres_test_data(direct, unique_name)
        database.engine().dispose()


def test_hdfs_going_away_before_upload_fails_naming_the_url_keeps_the_old_file_and_the_next_run_uploads(
    hdfs_url: str, unique_name: str, tmp_path: Path
) -> None:
    from urllib.parse import urlparse

    proxy = TcpProxy(urlparse(hdfs_url).port or 9870)
    root = f"/user/root/sml-tests/{unique_name}"
    proxied = HdfsResource(
        url=f"http://{proxy.address}",
        user="root",
        base_dir=f"{root}/HDFS_Proj",
        retry_seconds=2,
        request_timeout_seconds=5,
    )
    direct = InsecureClient(hdfs_url, user="root")
    storage = LocalStorage(data_dir=str(tmp_path / "data"))
    old, new = (
        b"window_start,total\n2026-11-25T16:00:00Z,1\n",
        b"window_start,total\n2026-11-25T16:00:00Z,2\n",
    )

    def upload() -> object:
        return materialize([hdfs_log_summary], resources={"hdfs": proxied, "storage": storage}, raise_on_error=False)

    try:
        storage.summary_csv.write_bytes(old)
        assert upload().success
        storage.summary_csv.write_bytes(new)
        proxy.cut()

        failed = upload()
        assert not failed.success
        assert f"SML_HDFS_URL=http://{proxy.address} did not answer (connection refused" in failure_message(failed)
        assert direct.list(proxied.folder) == [SUMMARY_FILE], "a temp file was left on HDFS"
        with direct.read(proxied.path(SUMMARY_FILE)) as reader:
            assert reader.read() == old

        proxy.restore()
        assert upload().success
        assert direct.list(proxied.folder) == [SUMMARY_FILE]
        with direct.read(proxied.path(SUMMARY_FILE)) as reader:
            assert reader.read() == new
    finally:
        proxy.close()
        direct.delete(root, recursive=True)
