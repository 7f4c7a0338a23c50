"""The contract's environment variables (DESIGN.md section 5) and their defaults, in one place.

Every SML_* setting is read here; the rest of the package asks this module, never `os.environ`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import EnvVar

from sml_assets.kafka_security import VARIABLES as KAFKA_SECURITY_VARIABLES

REPO_ROOT = Path(__file__).resolve().parent.parent
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
    "SML_MAX_CLOCK_SKEW": "60",
}
"""The contract's variables (docker-compose.yml sets exactly these)."""
BACKLOG_THRESHOLD_VARIABLE = "SML_METRICS_BACKLOG_THRESHOLD"
SPARK_MASTER_UI_PORT_VARIABLE = "SML_SPARK_MASTER_UI_PORT"
DEFAULT_BACKLOG_THRESHOLD = 1_000


def setting(name: str) -> str | EnvVar:
    """An `EnvVar` when the variable is set (the UI then shows its source), else the default.

    `EnvVar` alone would fail on an unset variable; sml must run with embedded defaults.
    SML_DATA_DIR is always the resolved path, so a relative value follows `data_dir`'s rule.
    """
    if name == "SML_DATA_DIR":
        return str(data_dir())
    if name in os.environ:
        return EnvVar(name)
    if name == "SML_METRICS_DB_URL":
        return default_db_url()
    if name == "SML_SPARK_JARS_DIR":
        return str(data_dir() / "jars" / "spark-kafka")
    if name == "SML_SPARK_STORAGE_URL":
        return str(data_dir())
    if name == "SML_SPARK_REMOTE":
        return ""
    return DEFAULTS[name]


def int_setting(name: str) -> int | EnvVar:
    """`setting` for a whole number: `EnvVar.int` when set, so the field is an int either way."""
    return EnvVar.int(name) if name in os.environ else int(DEFAULTS[name])


def int_value(name: str) -> int:
    """The variable's value now, outside a Dagster run (CLIs); an error names the variable."""
    raw = os.environ.get(name, DEFAULTS[name])
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number of seconds: set it to e.g. {DEFAULTS[name]}") from None


def setting_value(name: str) -> str:
    """The setting's value now, for code that runs outside Dagster's resource resolution."""
    raw = setting(name)
    return (raw.get_value() or "") if isinstance(raw, EnvVar) else raw


def data_dir() -> Path:
    """SML_DATA_DIR, absolute, resolved at call time (not import time).

    The rule (the same in devstack/common.py, which cannot import this package): a relative
    value, and the default `./.sml-data`, are taken relative to the repository root, so the
    stack, `make run` and the code location agree whatever directory they were started from.
    """
    path = Path(os.environ.get("SML_DATA_DIR") or DEFAULTS["SML_DATA_DIR"])
    return (path if path.is_absolute() else REPO_ROOT / path).resolve()


def default_db_url() -> str:
    """SQLite file under the data dir: works with no database server at all."""
    return f"sqlite:///{data_dir() / 'sml.db'}"


def kafka_security_settings() -> dict[str, EnvVar]:
    """`KafkaResource` security fields of the SML_KAFKA_* security variables that are set.

    Always `EnvVar`, so the password is resolved at run time and never stored in config or shown
    in the UI; unset variables leave the resource's PLAINTEXT defaults.
    """
    return {field: EnvVar(variable) for field, variable in KAFKA_SECURITY_VARIABLES.items() if os.environ.get(variable)}


def spark_master_ui_port_setting(resolve: bool) -> dict[str, Any]:
    """`SparkResource.master_ui_port` from SML_SPARK_MASTER_UI_PORT when set, else nothing (its default, 8080).

    Not in DEFAULTS: only a `spark://` master has this web UI, and docker-compose runs local[2].
    """
    raw = os.environ.get(SPARK_MASTER_UI_PORT_VARIABLE)
    if raw is None:
        return {}
    if not resolve:
        return {"master_ui_port": EnvVar.int(SPARK_MASTER_UI_PORT_VARIABLE)}
    try:
        return {"master_ui_port": int(raw)}
    except ValueError:
        raise ValueError(
            f"{SPARK_MASTER_UI_PORT_VARIABLE}={raw!r} is not a port number: "
            "set it to the Spark master's web UI port, or unset it for 8080"
        ) from None


def backlog_threshold() -> int:
    """SML_METRICS_BACKLOG_THRESHOLD (default 1,000, the seed's batch size), read when used.

    Read at a sensor tick, not at import, so a bad value fails that tick with this message
    instead of breaking the loading of the code location.
    """
    raw = os.environ.get(BACKLOG_THRESHOLD_VARIABLE) or str(DEFAULT_BACKLOG_THRESHOLD)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(
            f"{BACKLOG_THRESHOLD_VARIABLE}={raw!r} is not a whole number of messages: "
            f"set it to a whole number of at least 1, or unset it for {DEFAULT_BACKLOG_THRESHOLD:,}"
        ) from None
    check_backlog_threshold(value)
    return value


def check_backlog_threshold(value: int) -> None:
    """A threshold below 1 would request a run on every tick."""
    if value < 1:
        raise ValueError(f"{BACKLOG_THRESHOLD_VARIABLE}={value}: the backlog threshold must be at least 1")


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
