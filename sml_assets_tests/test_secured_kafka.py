"""Kafka with SASL_SSL (SCRAM-SHA-512 over TLS, certificate from a CA made by devstack/tls.py):
every client sml makes logs in with the one set of settings and gets what PLAINTEXT gets; a wrong
password, an unknown CA and a plaintext client on the TLS port fail within the resource's timeout,
naming the setting to fix, and the password shows up nowhere.

The broker is private (free ports, own data dir): the shared one on 9092 is never restarted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from dagster import materialize
from sqlalchemy import select

from simulator.topics import wait_for_topics
from sml_assets.assets import logs
from sml_assets.replay import main as replay_main
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource, KafkaUnavailableError
from sml_assets.resources.spark import SparkResource
from sml_assets.resources.storage import LocalStorage
from sml_assets_tests.conftest import REPO_ROOT, TOPIC_READY_S
from sml_assets_tests.faults import SUBPROCESS_ENV, devstack_kafka, wait_until
from sml_assets_tests.helpers import (
    assert_secret_nowhere,
    execute_ingest_job_cli,
    failure_message,
    metadata,
    run,
    simulator_command,
)
from sml_assets_tests.secured import SecuredKafka, devstack_tls

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
START = "2026-11-25T16:00:00Z"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return devstack_tls().ensure_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory, ca: Any, stack: None) -> Iterator[SecuredKafka]:
    broker = SecuredKafka(tmp_path_factory.mktemp("secured-kafka"), ca)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def create_topics(broker: SecuredKafka, *names: str) -> None:
    """Topics are set up over the private broker's PLAINTEXT listener, as an operator would."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in names]).values():
        future.result(timeout=30)
    wait_for_topics(broker.bootstrap, dict.fromkeys(names, 1), TOPIC_READY_S)


def simulate(bootstrap: str, metrics: str, logs_topic: str, env: dict[str, str]) -> str:
    """The simulator CLI in its own process, seeded, so both runs send the same messages."""
    result = subprocess.run(
        simulator_command(
            bootstrap,
            metrics,
            logs_topic,
            None,
            "--seed",
            "18",
            "--count",
            "1500",
            "--start",
            START,
            "--malformed-rate",
            "0.05",
            "--broker-timeout",
            "20",
        ),
        check=False,
        cwd=REPO_ROOT,
        env={**SUBPROCESS_ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def rows(database: MetricsDatabase) -> list[tuple[Any, ...]]:
    table = database.tables.metrics
    with database.engine().connect() as connection:
        found = connection.execute(
            select(
                table.c.server_id, table.c.cpu, table.c.mem, table.c.disk, table.c.event_time, table.c.kafka_offset
            ).order_by(table.c.kafka_offset)
        ).all()
    return [tuple(row) for row in found]


def summarize(kafka: KafkaResource, spark: SparkResource, data: Path) -> pd.DataFrame:
    storage = LocalStorage(data_dir=str(data))
    result = materialize([logs.log_summary], resources={"kafka": kafka, "spark": spark, "storage": storage})
    assert result.success
    return pd.read_csv(storage.summary_csv)


def test_simulator_server_metrics_and_log_summary_over_sasl_ssl_get_what_plaintext_gets(
    secured_kafka: SecuredKafka,
    spark_jars_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_topics(secured_kafka, "plain-metrics", "plain-logs", "secure-metrics", "secure-logs")
    plain_out = simulate(secured_kafka.bootstrap, "plain-metrics", "plain-logs", {})
    secure_out = simulate(secured_kafka.sasl_bootstrap, "secure-metrics", "secure-logs", secured_kafka.environment())
    assert "acked 1,500" in plain_out and "acked 1,500" in secure_out
    assert secured_kafka.password not in secure_out

    plain = KafkaResource(
        bootstrap_servers=secured_kafka.bootstrap, metrics_topic="plain-metrics", logs_topic="plain-logs"
    )
    secure = secured_kafka.resource(metrics_topic="secure-metrics", logs_topic="secure-logs")
    databases = [MetricsDatabase(url=f"sqlite:///{tmp_path / f'{name}.db'}") for name in ("plain", "secure")]
    reports = [metadata(run(kafka, database)) for kafka, database in zip((plain, secure), databases)]
    assert reports[1]["messages read"] == reports[0]["messages read"] > 0
    assert reports[1]["rows inserted"] == reports[0]["rows inserted"] > 0
    assert rows(databases[1]) == rows(databases[0])

    for name, value in {**secured_kafka.environment(), "SML_METRICS_DB_URL": databases[1].url}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert replay_main(["--topic", "secure-metrics", "show"]) == 0
    shown = capsys.readouterr().out
    assert f"{reports[1]['messages read']:>10}" in shown.splitlines()[-1], shown

    spark = SparkResource(jars_dir=str(spark_jars_dir))
    over_plaintext = summarize(plain, spark, tmp_path / "plain-data")
    over_sasl_ssl = summarize(secure, spark, tmp_path / "secure-data")
    assert len(over_plaintext) > 0 and over_plaintext["total"].sum() > 0
    pd.testing.assert_frame_equal(over_sasl_ssl, over_plaintext)


def assert_fails_fast(kafka: KafkaResource, expected: str, password: str) -> str:
    """The first broker call fails within the resource's timeout (plus client close), naming `expected`."""
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError) as raised:
        kafka.watermarks("secure-metrics")
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert expected in message, message
    assert password not in message and password not in repr(kafka)
    assert elapsed < kafka.timeout_s + 5, f"took {elapsed:.1f}s with timeout_s={kafka.timeout_s}"
    return message


def test_a_wrong_password_fails_fast_naming_the_user_and_variables_never_the_password(
    secured_kafka: SecuredKafka,
) -> None:
    wrong = "pw-wrong-" + secured_kafka.password[3:]
    message = assert_fails_fast(
        secured_kafka.resource(sasl_password=wrong, timeout_s=5),
        f"refused the login of SML_KAFKA_SASL_USERNAME={secured_kafka.user}",
        wrong,
    )
    assert "SML_KAFKA_SASL_PASSWORD" in message and secured_kafka.password not in message


def test_an_unknown_ca_fails_fast_naming_the_ca_setting(secured_kafka: SecuredKafka, tmp_path: Path) -> None:
    other = devstack_tls().ensure_ca(tmp_path / "other-ca", subject="/CN=somebody else's CA")
    assert_fails_fast(
        secured_kafka.resource(ssl_ca_location=str(other.certificate), timeout_s=5),
        f"set SML_KAFKA_SSL_CA_LOCATION to the CA file that signed it (now {other.certificate})",
        secured_kafka.password,
    )


def test_a_plaintext_client_on_the_tls_port_fails_fast_naming_the_protocol_setting(
    secured_kafka: SecuredKafka,
) -> None:
    plain = KafkaResource(bootstrap_servers=secured_kafka.sasl_bootstrap, timeout_s=5)
    assert_fails_fast(
        plain,
        "set SML_KAFKA_SECURITY_PROTOCOL to the listener's protocol (SSL or SASL_SSL)",
        secured_kafka.password,
    )


def test_a_refused_login_through_the_dagster_cli_leaks_the_password_nowhere(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    wrong = "pw-cli-" + secured_kafka.password[3:]
    output, folders = execute_ingest_job_cli(
        tmp_path,
        {**secured_kafka.environment(), "SML_KAFKA_SASL_PASSWORD": wrong, "SML_METRICS_TOPIC": "secure-metrics"},
    )
    assert f"refused the login of SML_KAFKA_SASL_USERNAME={secured_kafka.user}" in output
    assert_secret_nowhere(wrong, output, folders)


def test_a_run_with_the_password_in_the_resource_keeps_it_out_of_the_event_log(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    kafka = secured_kafka.resource(metrics_topic="secure-metrics", sasl_password="pw-bad-" + "x" * 12, timeout_s=5)
    result = run(kafka, MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}"))
    assert not result.success
    message = failure_message(result)
    assert "SML_KAFKA_SASL_USERNAME" in message
    events = "\n".join(str(event) for event in result.all_events)
    assert "pw-bad-" not in events and "pw-bad-" not in message


def test_a_scram_user_added_after_format_by_the_stack_code_logs_in(secured_kafka: SecuredKafka) -> None:
    create_topics(secured_kafka, "late-user-topic")
    password = "pw-late-" + secured_kafka.password[3:15]
    devstack_kafka().ensure_scram_user(secured_kafka.bootstrap, "late-user", password)
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        kafka = secured_kafka.resource(sasl_username="late-user", sasl_password=password, sasl_mechanism=mechanism)
        marks = wait_until(partial(_watermarks_or_none, kafka, "late-user-topic"), 30, f"{mechanism} login")
        assert marks[0].high == 0


def _watermarks_or_none(kafka: KafkaResource, topic: str) -> Any:
    """Credentials reach the broker through the metadata log a moment after the command returns."""
    try:
        return kafka.watermarks(topic)
    except KafkaUnavailableError:
        return None


@pytest.fixture
def mtls_kafka(tmp_path_factory: pytest.TempPathFactory, ca: Any, stack: None) -> Iterator[SecuredKafka]:
    """A broker of its own whose SASL_SSL listener requires a client certificate from the CA."""
    broker = SecuredKafka(tmp_path_factory.mktemp("mtls-kafka"), ca, client_auth="required")
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def test_a_client_certificate_from_the_ca_is_accepted_for_mtls_and_one_from_a_stranger_is_not(
    mtls_kafka: SecuredKafka, tmp_path: Path
) -> None:
    create_topics(mtls_kafka, "mtls-topic")
    client = devstack_tls().issue(mtls_kafka.ca, tmp_path, "sml-client", client=True)
    kafka = mtls_kafka.resource(ssl_certificate_location=str(client.certificate), ssl_key_location=str(client.key))
    assert kafka.watermarks("mtls-topic")[0].high == 0
    assert kafka.spark_source_options()["kafka.ssl.keystore.key"].startswith("-----BEGIN PRIVATE KEY-----")

    stranger_ca = devstack_tls().ensure_ca(tmp_path / "stranger-ca", subject="/CN=a stranger's CA")
    stranger = devstack_tls().issue(stranger_ca, tmp_path / "stranger", "stranger", client=True)
    for refused in (
        mtls_kafka.resource(timeout_s=5),
        mtls_kafka.resource(
            ssl_certificate_location=str(stranger.certificate), ssl_key_location=str(stranger.key), timeout_s=5
        ),
    ):
        with pytest.raises(KafkaUnavailableError, match="SML_KAFKA_SSL_CERTIFICATE_LOCATION"):
            refused.watermarks("mtls-topic")


def test_the_simulator_with_a_wrong_password_exits_naming_the_variables_not_the_password(
    secured_kafka: SecuredKafka,
) -> None:
    create_topics(secured_kafka, "sim-wrong-metrics", "sim-wrong-logs")
    wrong = "pw-sim-" + secured_kafka.password[3:]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "--metrics-topic",
            "sim-wrong-metrics",
            "--logs-topic",
            "sim-wrong-logs",
            "--count",
            "10",
            "--broker-timeout",
            "5",
        ],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**SUBPROCESS_ENV, **secured_kafka.environment(), "SML_KAFKA_SASL_PASSWORD": wrong},
    )
    assert result.returncode == 1
    assert f"refused the login of SML_KAFKA_SASL_USERNAME={secured_kafka.user}" in result.stderr
    assert wrong not in result.stdout + result.stderr
