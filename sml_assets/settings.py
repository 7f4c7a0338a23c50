"""The contract's environment variables (DESIGN.md section 5) and their defaults, in one place."""
from __future__ import annotations

import os
from pathlib import Path

from dagster import EnvVar

from sml_assets.kafka_security import VARIABLES as KAFKA_SECURITY_VARIABLES

DEFAULTS: dict[str, str] = {
    "SML_KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "SML_METRICS_TOPIC": "test-topic4",
    "SML_LOGS_TOPIC": "test-topic3",
    "SML_METRICS_TABLE": "server_matric",
    "SML_SPARK_MASTER": "local[2]",
    "SML_HDFS_URL": "http://localhost:9870",
    "SML_HDFS_USER": "root",
    "SML_HDFS_CA_LOCATION": "",
    "SML_DATA_DIR": "./.sml-data",
}


def setting(name: str) -> str | EnvVar:
    """An `EnvVar` when the variable is set (the UI then shows its source), else the default.

    `EnvVar` alone would fail on an unset variable; sml must run with embedded defaults.
    """
    if name in os.environ:
        return EnvVar(name)
    if name == "SML_METRICS_DB_URL":
        return default_db_url()
    if name == "SML_SPARK_JARS_DIR":
        return str(data_dir() / "jars" / "spark-kafka")
    return DEFAULTS[name]


def data_dir() -> Path:
    """SML_DATA_DIR, absolute, resolved at call time (not import time)."""
    return Path(os.environ.get("SML_DATA_DIR", DEFAULTS["SML_DATA_DIR"])).resolve()


def default_db_url() -> str:
    """SQLite file under the data dir: works with no database server at all."""
    return f"sqlite:///{data_dir() / 'sml.db'}"


def kafka_security_settings() -> dict[str, EnvVar]:
    """`KafkaResource` security fields of the SML_KAFKA_* security variables that are set.

    Always `EnvVar`, so the password is resolved at run time and never stored in config or shown
    in the UI; unset variables leave the resource's PLAINTEXT defaults.
    """
    return {field: EnvVar(variable) for field, variable in KAFKA_SECURITY_VARIABLES.items() if os.environ.get(variable)}


FLEET_DEFAULTS: dict[str, float] = {
    "SML_FLEET_CPU_MAX": 90.0,
    "SML_FLEET_MEM_MAX": 90.0,
    "SML_FLEET_DISK_MAX": 85.0,
}
"""Percent above which a server's latest reading makes the `fleet_health` check warn."""


def fleet_thresholds() -> dict[str, float]:
    """The fleet_health thresholds per metric (`cpu`, `mem`, `disk`), read when the check runs.

    A value outside 0..100 or not a number is refused with the variable named.
    """
    thresholds: dict[str, float] = {}
    for name, default in FLEET_DEFAULTS.items():
        raw = os.environ.get(name)
        metric = name.removeprefix("SML_FLEET_").removesuffix("_MAX").lower()
        if raw is None:
            thresholds[metric] = default
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a number: give a percent such as {default:g}") from None
        if not 0.0 <= value <= 100.0:
            raise ValueError(f"{name}={raw!r} is outside 0..100: give a percent such as {default:g}")
        thresholds[metric] = value
    return thresholds
