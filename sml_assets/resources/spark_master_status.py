"""What a Spark standalone master's own JSON status (its web UI, `/json/`) says about room for an executor.

A master with no ALIVE worker, or none with a free core (or enough memory for an executor), queues
the application and its jobs wait forever; the driver would learn it only after
`SparkResource.executor_wait_s`. The master's web UI says it before the session is built. The field
names are Spark's `JsonProtocol.writeMasterState` and `writeWorkerInfo` (memory in MB).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Mapping
from typing import Any, NamedTuple

DEFAULT_UI_PORT = 8080
MEMORY_UNITS_MB = {"b": 1 / 1024**2, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}
"""Spark's size units (JavaUtils.byteStringAs: `k`/`kb` ... `p`/`pb`), in MiB; no unit means MiB."""


class Shortage(NamedTuple):
    """Why the master cannot give an executor now (`found`), and what to check about it."""

    found: str
    check: str


def memory_mb(value: str) -> int | None:
    """A Spark memory string (`1g`, `512m`, `2048`) in MiB, or None when Spark's own parser would refuse it."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmgtp]?)b?\s*", value.lower())
    if match is None:
        return None
    return int(int(match.group(1)) * MEMORY_UNITS_MB[match.group(2) or "m"])


def executor_shortage(state: Mapping[str, Any], executor_memory: str | None = None) -> Shortage | None:
    """The reason the master gives no executor, or None when an ALIVE worker has room or the status is unsure.

    Only a master whose `status` is ALIVE is judged: a STANDBY or RECOVERING one (high availability)
    lists no workers yet. A status without the expected fields is not judged either.
    """
    try:
        if state.get("status") != "ALIVE":
            return None
        workers = list(state["workers"])
        alive = [worker for worker in workers if worker["state"] == "ALIVE"]
        if not alive:
            others = f" ({len(workers)} registered, none ALIVE)" if workers else ""
            return Shortage(
                f"0 ALIVE workers{others}",
                "start workers registered with this master (python3 devstack/stack.py up --cluster starts two) "
                "or point it at a master that has some",
            )
        cores = sum(int(worker["cores"]) for worker in alive)
        with_cores = [worker for worker in alive if int(worker["coresfree"]) > 0]
        cores_free = sum(int(worker["coresfree"]) for worker in with_cores)
        found = f"{plural(len(alive), 'ALIVE worker')}, {cores_free} of {plural(cores, 'core')} free"
        if not with_cores:
            return Shortage(
                found,
                "other applications hold every core (see them on the master's web UI): give them "
                "spark.cores.max (or the master spark.deploy.defaultCores), let them finish, or add workers",
            )
        needed = memory_mb(executor_memory) if executor_memory else None
        most_free = max(int(worker["memoryfree"]) for worker in with_cores)
        if needed is not None and most_free < needed:
            return Shortage(
                f"{found}, but at most {most_free} MB of memory free on a worker with a free core, "
                f"less than spark.executor.memory={executor_memory} ({needed} MB)",
                "lower spark.executor.memory (SparkResource.executor_memory), give the workers more memory "
                "(--memory, SPARK_WORKER_MEMORY), or free memory held by other applications",
            )
        return None
    except (KeyError, TypeError, ValueError):
        return None


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def master_state(host: str, ui_port: int, timeout_s: float) -> dict[str, Any] | None:
    """The master's JSON status, or None when its web UI does not answer with JSON at this address.

    Fetched directly, not through a proxy from the environment: the master itself is reached directly too.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(ui_url(host, ui_port), timeout=timeout_s) as response:
            state = json.load(response)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def ui_url(host: str, ui_port: int) -> str:
    return f"http://{host}:{ui_port}/json/"
