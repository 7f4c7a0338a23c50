"""Secrets and identifiers: a database password given in the URL appears nowhere a person or the
instance can read it (output, event log, compute logs, metadata, errors), and a configured table
name reaches SQL only as a plain identifier. Extends the masking tests of test_database.py and
test_metrics_asset.py with a run through the `dagster` CLI and a real server refusing the login."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect

from sml_assets.resources.database import MetricsDatabase, validate_table_name
from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.helpers import assert_secret_nowhere, execute_ingest_job_cli, failure_message, good, produce, run

PASSWORD = "zz-S3cret-pw-4711"
BIN = Path(sys.executable).parent
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


@pytest.mark.integration
def test_a_password_refused_by_the_real_server_is_in_no_output_event_log_or_file_of_the_instance(
    postgres_url: str, new_topic: Callable[..., str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(n) for n in range(10)])
    url = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    output, folders = execute_ingest_job_cli(
        tmp_path,
        {"SML_METRICS_DB_URL": url, "SML_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SML_METRICS_TOPIC": topic},
    )
    assert "SML_METRICS_DB_URL=postgresql+psycopg://sml:***@127.0.0.1" in output
    assert "password authentication failed" in output
    assert_secret_nowhere(PASSWORD, output, folders)


@pytest.mark.integration
def test_a_table_name_with_sql_in_it_fails_the_run_naming_the_variable_before_any_sql_runs(
    new_topic: Callable[..., str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic()
    produce(kafka_bootstrap, topic, [good(n) for n in range(10)])
    database = MetricsDatabase(
        url=f"sqlite:///{tmp_path / 'sml.db'}", table="server_matric; DROP TABLE sml_offsets; --"
    )
    result = run(KafkaResource(bootstrap_servers=kafka_bootstrap, metrics_topic=topic), database)
    assert not result.success
    assert "SML_METRICS_TABLE='server_matric; DROP TABLE sml_offsets; --' is not a plain SQL identifier" in (
        failure_message(result)
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'sml.db'}")
    assert inspect(engine).get_table_names() == []
    engine.dispose()


@given(st.text(max_size=60) | st.from_regex(IDENTIFIER, fullmatch=True))
def test_a_table_name_is_accepted_exactly_when_it_is_a_plain_identifier_of_its_own(name: str) -> None:
    plain = IDENTIFIER.fullmatch(name) is not None and name.lower() not in ("sml_offsets", "sml_dead_letters")
    try:
        assert validate_table_name(name) == name and plain
    except ValueError as error:
        assert not plain and "SML_METRICS_TABLE=" in str(error)
