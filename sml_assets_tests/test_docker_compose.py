"""docker-compose.yml cannot run here (no Docker engine): check that it parses, names every service
sml needs, and agrees with the defaults in the code and the local stack."""
from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
import yaml
from sqlalchemy.engine import make_url

from sml_assets.settings import DEFAULTS
from sml_assets_tests.conftest import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def host_ports(service: str) -> set[int]:
    return {int(str(p).split(":")[0]) for p in SERVICES[service].get("ports", [])}


def test_compose_names_every_service_sml_needs() -> None:
    needed = {"kafka", "namenode", "datanode", "sqlserver", "postgres", "dagster-webserver", "dagster-daemon"}
    assert needed <= set(SERVICES)


def test_dagster_services_build_from_the_repo_dockerfile() -> None:
    assert (REPO_ROOT / "Dockerfile").exists()
    for name in ("dagster-webserver", "dagster-daemon", "simulator"):
        assert SERVICES[name]["build"] == "."
    assert "dagster-daemon" in SERVICES["dagster-daemon"]["command"]


@pytest.mark.parametrize("service", ["dagster-webserver", "dagster-daemon", "simulator"])
def test_sml_services_set_exactly_the_contract_variables(service: str) -> None:
    env = SERVICES[service]["environment"]
    sml_vars = {k for k in env if k.startswith("SML_")}
    assert sml_vars == set(DEFAULTS) | {"SML_METRICS_DB_URL"}


def test_compose_values_agree_with_the_code_defaults() -> None:
    env = SERVICES["dagster-webserver"]["environment"]
    for name in ("SML_METRICS_TOPIC", "SML_LOGS_TOPIC", "SML_METRICS_TABLE", "SML_SPARK_MASTER", "SML_HDFS_USER"):
        assert env[name] == DEFAULTS[name], name
    topics = re.findall(r"for t in ([\w\- ]+); do", SERVICES["kafka-topics"]["command"][0])[0].split()
    assert sorted(topics) == sorted([DEFAULTS["SML_METRICS_TOPIC"], DEFAULTS["SML_LOGS_TOPIC"]])


def test_host_ports_match_the_defaults_and_the_local_stack() -> None:
    assert urlparse("//" + DEFAULTS["SML_KAFKA_BOOTSTRAP_SERVERS"]).port in host_ports("kafka")
    assert urlparse(DEFAULTS["SML_HDFS_URL"]).port in host_ports("namenode")
    assert 55432 in host_ports("postgres")
    assert 3000 in host_ports("dagster-webserver")
    advertised = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "localhost:9092" in advertised


def test_compose_points_sml_at_sql_server_with_a_secret_from_the_environment() -> None:
    raw = SERVICES["dagster-webserver"]["environment"]["SML_METRICS_DB_URL"]
    assert "${SML_MSSQL_SA_PASSWORD" in raw, "the password must come from the user's environment"
    url = make_url(re.sub(r"\$\{[^}]+\}", "placeholder", raw))
    assert url.drivername == "mssql+pyodbc"
    assert url.query["driver"] == "ODBC Driver 18 for SQL Server"
    assert SERVICES["sqlserver"]["environment"]["MSSQL_SA_PASSWORD"].startswith("${SML_MSSQL_SA_PASSWORD")


def test_compose_webhdfs_url_names_the_namenode_service() -> None:
    env = SERVICES["dagster-webserver"]["environment"]
    assert urlparse(env["SML_HDFS_URL"]).hostname == "namenode"
    assert urlparse(env["SML_HDFS_URL"]).port == urlparse(DEFAULTS["SML_HDFS_URL"]).port
