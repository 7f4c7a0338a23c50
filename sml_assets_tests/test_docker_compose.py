"""docker-compose.yml cannot run here (no Docker engine): check that it parses, names every service
sml needs, and agrees with the defaults in the code, the local stack and its Dagster instance
(docker/dagster.yaml, docker/workspace.yaml). test_production_topology.py runs the same topology
without Docker."""

from __future__ import annotations

import re
import tomllib
from urllib.parse import urlparse

import pytest
import yaml
from sqlalchemy.engine import make_url

from sml_assets.settings import DEFAULTS
from sml_assets_tests.conftest import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
INSTANCE = yaml.safe_load((REPO_ROOT / "docker" / "dagster.yaml").read_text())
WORKSPACE = yaml.safe_load((REPO_ROOT / "docker" / "workspace.yaml").read_text())
CODE = "sml-code"
"""The code-location server: the only Dagster service that imports sml's code."""


def host_ports(service: str) -> set[int]:
    return {int(str(p).split(":")[0]) for p in SERVICES[service].get("ports", [])}


def test_compose_names_every_service_sml_needs() -> None:
    needed = {
        "kafka",
        "namenode",
        "datanode",
        "sqlserver",
        "postgres",
        "dagster-postgres",
        CODE,
        "dagster-webserver",
        "dagster-daemon",
    }
    assert needed <= set(SERVICES)


def test_dagster_services_build_from_the_repo_dockerfile() -> None:
    assert (REPO_ROOT / "Dockerfile").exists()
    for name in (CODE, "dagster-webserver", "dagster-daemon", "simulator"):
        assert SERVICES[name]["build"] == "."
    assert "dagster-daemon" in SERVICES["dagster-daemon"]["command"]


@pytest.mark.parametrize("service", [CODE, "simulator"])
def test_sml_services_set_exactly_the_contract_variables(service: str) -> None:
    env = SERVICES[service]["environment"]
    sml_vars = {k for k in env if k.startswith("SML_")}
    assert sml_vars == set(DEFAULTS) | {"SML_METRICS_DB_URL"}


def test_compose_values_agree_with_the_code_defaults() -> None:
    env = SERVICES[CODE]["environment"]
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
    raw = SERVICES[CODE]["environment"]["SML_METRICS_DB_URL"]
    assert "${SML_MSSQL_SA_PASSWORD" in raw, "the password must come from the user's environment"
    url = make_url(re.sub(r"\$\{[^}]+\}", "placeholder", raw))
    assert url.drivername == "mssql+pyodbc"
    assert url.query["driver"] == "ODBC Driver 18 for SQL Server"
    assert SERVICES["sqlserver"]["environment"]["MSSQL_SA_PASSWORD"].startswith("${SML_MSSQL_SA_PASSWORD")


def test_compose_webhdfs_url_names_the_namenode_service() -> None:
    env = SERVICES[CODE]["environment"]
    assert urlparse(env["SML_HDFS_URL"]).hostname == "namenode"
    assert urlparse(env["SML_HDFS_URL"]).port == urlparse(DEFAULTS["SML_HDFS_URL"]).port


def dagster_env(service: str) -> dict[str, str]:
    return {k: v for k, v in SERVICES[service]["environment"].items() if k.startswith("DAGSTER_")}


@pytest.mark.parametrize("service", ["dagster-webserver", "dagster-daemon"])
def test_webserver_and_daemon_reach_the_code_over_grpc_and_hold_no_sml_settings(service: str) -> None:
    env = SERVICES[service]["environment"]
    assert not {k for k in env if k.startswith("SML_")}, "only the code-location server runs sml's code"
    assert dagster_env(service) == dagster_env(CODE)
    command = SERVICES[service]["command"]
    workspace = command[command.index("-w") + 1]
    assert (REPO_ROOT / workspace).resolve() == (REPO_ROOT / "docker" / "workspace.yaml").resolve()
    assert SERVICES[service]["depends_on"]["dagster-postgres"] == {"condition": "service_healthy"}


def test_the_workspace_names_the_code_server_its_port_and_the_location_name() -> None:
    (entry,) = WORKSPACE["load_from"]
    server = entry["grpc_server"]
    command = SERVICES[CODE]["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert server["host"] == CODE
    assert str(server["port"]) == command[command.index("-p") + 1]
    location = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["code_location_name"]
    assert server["location_name"] == command[command.index("--location-name") + 1] == location
    assert command[command.index("-m") + 1] == "sml_assets.definitions"


def test_dagster_storage_is_the_dagster_postgres_service_with_a_secret_from_the_environment() -> None:
    db = INSTANCE["storage"]["postgres"]["postgres_db"]
    variables = {db[field]["env"] for field in ("hostname", "port", "username", "password", "db_name")}
    env = dagster_env(CODE)
    assert variables <= set(env), f"docker/dagster.yaml reads {variables - set(env)}, which compose never sets"
    assert env[db["hostname"]["env"]] == "dagster-postgres"
    postgres = SERVICES["dagster-postgres"]["environment"]
    assert env[db["username"]["env"]] == postgres["POSTGRES_USER"]
    assert env[db["db_name"]["env"]] == postgres["POSTGRES_DB"]
    assert env[db["password"]["env"]] == postgres["POSTGRES_PASSWORD"]
    assert env[db["password"]["env"]].startswith("${DAGSTER_POSTGRES_PASSWORD:?"), (
        "the password must come from the user's environment"
    )
    assert make_url(f"{db['scheme']}://u@h/d").get_dialect().driver == "psycopg2"


def test_runs_are_queued_and_pools_limited_as_in_the_local_instance() -> None:
    assert INSTANCE["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert INSTANCE["freshness"] == {"enabled": True}
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert INSTANCE["concurrency"] == local["concurrency"]
    assert INSTANCE["run_monitoring"] == local["run_monitoring"]
    assert INSTANCE["concurrency"]["pools"]["default_limit"] == 1


def test_the_image_installs_the_docker_instance_where_compose_says_dagster_home_is() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    home = re.search(r"DAGSTER_HOME=(\S+)", dockerfile).group(1)
    assert dagster_env(CODE)["DAGSTER_HOME"] == home
    assert 'cp docker/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in dockerfile
