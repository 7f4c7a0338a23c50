"""Settings: one rule for SML_DATA_DIR (shared by the package and the stdlib-only devstack) and
settings read when used, so a bad value names itself instead of breaking the code location."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from dagster import EnvVar, build_sensor_context, instance_for_test

from sml_assets import settings
from sml_assets.automation import build_metrics_backlog_sensor
from sml_assets.resources import build_resources, resources_now
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
from sml_assets.resources.storage import LocalStorage

REPO_ROOT = Path(__file__).resolve().parent.parent


def devstack_common() -> ModuleType:
    """devstack/common.py as the stack scripts import it (a plain module, not a package)."""
    spec = importlib.util.spec_from_file_location("devstack_common", REPO_ROOT / "devstack" / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.parametrize("value", [None, "", ".sml-data", "sml_assets/../.sml-data", "absolute"])
def test_the_package_and_devstack_resolve_sml_data_dir_alike_from_any_directory(
    value: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("SML_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("SML_DATA_DIR", str(tmp_path / "data") if value == "absolute" else value)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    expected = (tmp_path / "data") if value == "absolute" else REPO_ROOT / ".sml-data"
    assert settings.data_dir() == expected.resolve()
    assert devstack_common().data_dir() == expected.resolve()
    assert settings.setting("SML_DATA_DIR") == str(expected.resolve())


def test_devstack_run_takes_the_data_dir_from_devstack_common() -> None:
    source = (REPO_ROOT / "devstack" / "run.py").read_text()
    assert "from common import data_dir" in source
    assert 'os.environ.get("SML_DATA_DIR"' not in source


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("lots", "SML_METRICS_BACKLOG_THRESHOLD='lots' is not a whole number of messages"),
        ("0", "SML_METRICS_BACKLOG_THRESHOLD=0: the backlog threshold must be at least 1"),
    ],
)
def test_a_bad_backlog_threshold_loads_the_code_location_and_fails_the_sensor_tick_naming_it(
    raw: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "SML_METRICS_BACKLOG_THRESHOLD": raw, "PYTHONPATH": str(REPO_ROOT)}
    loaded = subprocess.run(
        [sys.executable, "-c", "import sml_assets.definitions"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr

    monkeypatch.setenv("SML_METRICS_BACKLOG_THRESHOLD", raw)
    sensor = build_metrics_backlog_sensor()
    resources = {
        "kafka": KafkaResource(bootstrap_servers="127.0.0.1:1", metrics_topic="m", logs_topic="l"),
        "metrics_db": MetricsDatabase(url=f"sqlite:///{tmp_path / 'db.sqlite'}", table="t"),
        "storage": LocalStorage(data_dir=str(tmp_path)),
    }
    with instance_for_test() as instance:
        with build_sensor_context(instance=instance, resources=resources) as context:
            with pytest.raises(Exception, match=message):
                sensor(context)


def test_the_backlog_threshold_defaults_to_1000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SML_METRICS_BACKLOG_THRESHOLD", raising=False)
    assert settings.backlog_threshold() == 1000
    monkeypatch.setenv("SML_METRICS_BACKLOG_THRESHOLD", "250")
    assert settings.backlog_threshold() == 250


def test_definitions_and_commands_build_the_same_resources_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SML_KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("SML_METRICS_TABLE", "from_env")
    monkeypatch.setenv("SML_DATA_DIR", str(tmp_path))
    for_dagster = build_resources()
    now = resources_now()
    assert set(for_dagster) == set(now) == {"kafka", "metrics_db", "spark", "hdfs", "storage"}
    assert for_dagster["kafka"].bootstrap_servers == EnvVar("SML_KAFKA_BOOTSTRAP_SERVERS")
    assert now.kafka.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert now.metrics_db.table == "from_env"
    assert now.metrics_db.url == f"sqlite:///{tmp_path / 'sml.db'}"
    assert now["storage"].data_dir == str(tmp_path)
    assert now["spark"].jars_dir == str(tmp_path / "jars" / "spark-kafka")


def test_the_spark_master_ui_port_comes_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SML_SPARK_MASTER_UI_PORT", raising=False)
    assert resources_now()["spark"].master_ui_port == 8080
    monkeypatch.setenv("SML_SPARK_MASTER_UI_PORT", "18080")
    assert getattr(build_resources()["spark"].master_ui_port, "name", None) == "SML_SPARK_MASTER_UI_PORT"
    assert resources_now()["spark"].master_ui_port == 18080
    monkeypatch.setenv("SML_SPARK_MASTER_UI_PORT", "ui")
    with pytest.raises(ValueError, match="SML_SPARK_MASTER_UI_PORT='ui' is not a port number"):
        resources_now()
