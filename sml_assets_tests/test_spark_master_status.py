"""The verdict on a Spark standalone master's JSON status, over statuses shaped as Spark writes them
(JsonProtocol.writeMasterState / writeWorkerInfo: memory in MB, totals over ALIVE workers only)."""

from __future__ import annotations

from typing import Any

import pytest

from sml_assets.resources.spark_master_status import executor_shortage, memory_mb


def worker(number: int, state: str = "ALIVE", cores: int = 2, coresused: int = 0, memoryused: int = 0) -> dict:
    return {
        "id": f"worker-20261128030000-127.0.0.1-{7077 + number}",
        "host": "127.0.0.1",
        "port": 7077 + number,
        "webuiaddress": f"http://127.0.0.1:{8080 + number}",
        "cores": cores,
        "coresused": coresused,
        "coresfree": cores - coresused,
        "memory": 1024,
        "memoryused": memoryused,
        "memoryfree": 1024 - memoryused,
        "resources": {},
        "resourcesused": {},
        "resourcesfree": {},
        "state": state,
        "lastheartbeat": 1795834800000,
    }


def master(*workers: dict, status: str = "ALIVE") -> dict[str, Any]:
    alive = [w for w in workers if w["state"] == "ALIVE"]
    return {
        "url": "spark://127.0.0.1:7077",
        "workers": list(workers),
        "aliveworkers": len(alive),
        "cores": sum(w["cores"] for w in alive),
        "coresused": sum(w["coresused"] for w in alive),
        "memory": sum(w["memory"] for w in alive),
        "memoryused": sum(w["memoryused"] for w in alive),
        "resources": [],
        "resourcesused": [],
        "activeapps": [],
        "completedapps": [],
        "activedrivers": [],
        "completeddrivers": [],
        "status": status,
    }


def test_a_master_without_workers_has_no_room() -> None:
    shortage = executor_shortage(master(), "1g")
    assert shortage is not None and shortage.found == "0 ALIVE workers"
    assert "start workers registered with this master" in shortage.check


def test_dead_workers_are_counted_but_give_no_room() -> None:
    shortage = executor_shortage(master(worker(1, "DEAD"), worker(2, "DECOMMISSIONED")), "1g")
    assert shortage is not None and shortage.found == "0 ALIVE workers (2 registered, none ALIVE)"


def test_every_core_taken_is_named_with_the_totals() -> None:
    shortage = executor_shortage(master(worker(1, coresused=2), worker(2, coresused=2), worker(3, "DEAD")), "1g")
    assert shortage is not None and shortage.found == "2 ALIVE workers, 0 of 4 cores free"
    assert "spark.cores.max" in shortage.check and "spark.deploy.defaultCores" in shortage.check


def test_free_cores_without_the_executor_memory_have_no_room() -> None:
    state = master(worker(1, coresused=2, memoryused=0), worker(2, coresused=1, memoryused=512))
    shortage = executor_shortage(state, "1g")
    assert shortage is not None
    assert shortage.found == (
        "2 ALIVE workers, 1 of 4 cores free, but at most 512 MB of memory free on a worker with a free core, "
        "less than spark.executor.memory=1g (1024 MB)"
    )
    assert "SparkResource.executor_memory" in shortage.check
    assert executor_shortage(state, "512m") is None


@pytest.mark.parametrize(
    "state",
    [
        master(worker(1)),
        master(worker(1, coresused=2), worker(2, coresused=1)),
        master(worker(1, coresused=2), status="STANDBY"),
        master(status="RECOVERING"),
        {"status": "ALIVE"},
        {"status": "ALIVE", "workers": [{"state": "ALIVE", "cores": "many"}]},
    ],
    ids=["a-free-worker", "one-free-core", "standby-master", "recovering-master", "no-workers-field", "odd-worker"],
)
def test_room_or_a_status_it_cannot_judge_lets_the_run_go_on(state: dict[str, Any]) -> None:
    assert executor_shortage(state, "1g") is None


def test_without_executor_memory_only_cores_count() -> None:
    assert executor_shortage(master(worker(1, coresused=1, memoryused=1024)), None) is None


@pytest.mark.parametrize(
    ("value", "mb"), [("1g", 1024), ("512m", 512), ("2048", 2048), ("1gb", 1024), ("4096k", 4), ("1t", 1048576)]
)
def test_memory_strings_read_as_spark_reads_them(value: str, mb: int) -> None:
    assert memory_mb(value) == mb


@pytest.mark.parametrize("value", ["", "1.5g", "lots", "1x"])
def test_memory_strings_spark_refuses_are_not_judged(value: str) -> None:
    assert memory_mb(value) is None
