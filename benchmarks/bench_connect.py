"""sml next to the peer most teams would pick: Kafka Connect standalone with Debezium's JDBC sink.

Both read the same topic of JSON messages with Connect's schema envelope and write the same metrics
into the stack's PostgreSQL, each into a table of its own in a schema of the benchmark's own. Connect
(`connect-runtime` of the stack's Kafka version, `debezium-connector-jdbc`, JsonConverter with
schemas, insert mode) is started by this script and stopped after each repeat; its jars are fetched
once with mvn into $SML_DATA_DIR/jars/connect (devstack/poms/connect.xml).

sml's figure is its whole run (plan, consume, parse, write, commit). Connect's is from its first
row in the table to its last: its JVM and task start are left out, which favours Connect.

    python benchmarks/bench_connect.py [--messages 200000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text

from benchmarks.bench_ingest import sml_ingest
from benchmarks.common import (
    BOOTSTRAP,
    Stat,
    metrics_values,
    own_pg_schema,
    own_topics,
    produce,
    report,
    unique,
)

REPO = Path(__file__).resolve().parent.parent
BATCH = 10_000
"""Connect's `batch.size` (Debezium's JDBC sink) and consumer `max.poll.records`, where the defaults
(500 each) would make Connect slower: 10,000 gave 55,612 rows/s, 50,000 (sml's PostgreSQL chunk
since 2026-11-29) 49,114 (make bench, 2026-11-29), so Connect keeps its faster setting."""
CONNECT_START_TIMEOUT_S = 180.0
DEADLINE_S = 900.0
JDBC_URL = os.environ.get("SML_BENCH_JDBC_URL", "jdbc:postgresql://127.0.0.1:55432/sml")
PG_USER = os.environ.get("SML_BENCH_PG_USER", "sml")
PG_PASSWORD = os.environ.get("SML_BENCH_PG_PASSWORD", "sml")
SCHEMA = {
    "type": "struct",
    "name": "sml.metric",
    "optional": False,
    "fields": [
        {"field": "id", "type": "int32", "optional": False},
        {"field": "cpu", "type": "double", "optional": False},
        {"field": "mem", "type": "double", "optional": False},
        {"field": "disk", "type": "double", "optional": False},
        {"field": "ts", "type": "int64", "optional": False},
    ],
}
SEED_LINE = re.compile(rb"id: (\d+), cpu: ([\d.]+), mem: ([\d.]+), disk: ([\d.]+), ts: (\d+)")


def devstack_common() -> ModuleType:
    """devstack/common.py (standard library only), loaded by path for `fetch_jars`."""
    name = "sml_devstack_common"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "devstack" / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def envelope_values(count: int) -> list[bytes]:
    """The simulator's metrics as JSON with Connect's schema envelope."""
    values = []
    for line in metrics_values(count):
        match = SEED_LINE.fullmatch(line)
        if match is None:
            raise RuntimeError(f"unexpected simulator line {line!r}")
        server_id, cpu, mem, disk, ts = match.groups()
        payload = {"id": int(server_id), "cpu": float(cpu), "mem": float(mem), "disk": float(disk), "ts": int(ts)}
        values.append(json.dumps({"schema": SCHEMA, "payload": payload}, separators=(",", ":")).encode())
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_properties(work: Path) -> dict[str, str]:
    return {
        "bootstrap.servers": BOOTSTRAP,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "offset.storage.file.filename": str(work / "connect.offsets"),
        "offset.flush.interval.ms": "10000",
        "listeners": f"http://127.0.0.1:{free_port()}",
        "plugin.discovery": "only_scan",
        "consumer.max.poll.records": str(BATCH),
        "consumer.auto.offset.reset": "earliest",
    }


def connector_properties(name: str, topic: str, schema: str, table: str) -> dict[str, str]:
    return {
        "name": name,
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": f"{JDBC_URL}?currentSchema={quote(schema)}",
        "connection.username": PG_USER,
        "connection.password": PG_PASSWORD,
        "insert.mode": "insert",
        "delete.enabled": "false",
        "primary.key.mode": "none",
        "schema.evolution": "none",
        "table.name.format": table,
        "batch.size": str(BATCH),
    }


def write_properties(path: Path, properties: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


def rows_in(engine: object, table: str) -> int:
    with engine.connect() as connection:  # type: ignore[attr-defined]
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@contextlib.contextmanager
def connect_process(jars: Path, work: Path, name: str, topic: str, schema: str, table: str) -> Iterator[Path]:
    """Connect standalone with one JDBC sink; stopped (then killed if need be) on the way out."""
    worker = write_properties(work / "worker.properties", worker_properties(work))
    connector = write_properties(work / "sink.properties", connector_properties(name, topic, schema, table))
    log = work / "connect.log"
    java = devstack_common().java_bin()
    command = [
        java,
        "-Xmx1g",
        f"-Dlog4j2.configurationFile={REPO / 'devstack' / 'kafka' / 'log4j2.properties'}",
        "-cp",
        f"{jars}/*",
        "org.apache.kafka.connect.cli.ConnectStandalone",
        str(worker),
        str(connector),
    ]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def connect_run(jars: Path, topic: str, pg_url: str, schema: str, messages: int) -> float:
    """Rows/s of one Connect run into a fresh table, from its first row to its last."""
    table = unique("connect")
    engine = create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE {table} (id integer NOT NULL, cpu double precision NOT NULL, "
                "mem double precision NOT NULL, disk double precision NOT NULL, ts bigint NOT NULL)"
            )
        )
    name = unique("sink")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="sml-connect-") as tmp,
            connect_process(jars, Path(tmp), name, topic, schema, table) as log,
        ):
            started = time.monotonic()
            first_at = None
            while True:
                count = rows_in(engine, table)
                now = time.monotonic()
                if count and first_at is None:
                    first_at, first_count = now, count
                if count >= messages:
                    break
                if first_at is None and now - started > CONNECT_START_TIMEOUT_S:
                    raise RuntimeError(
                        f"Kafka Connect wrote no row in {CONNECT_START_TIMEOUT_S:g}s; "
                        f"its log ends:\n{log.read_text()[-3000:]}"
                    )
                if now - started > DEADLINE_S:
                    raise RuntimeError(f"Kafka Connect wrote {count:,} of {messages:,} rows in {DEADLINE_S:g}s")
                time.sleep(0.05)
            if count != messages:
                raise RuntimeError(f"Kafka Connect wrote {count:,} rows, expected {messages:,}")
        return (messages - first_count) / (now - first_at) if now > first_at else float("nan")
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
        forget_group(f"connect-{name}")


def forget_group(group: str) -> None:
    client = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in client.delete_consumer_groups([group], request_timeout=30).values():
        with contextlib.suppress(Exception):
            future.result(timeout=30)


def run(messages: int, repeats: int) -> dict[str, Stat]:
    jars = devstack_common().fetch_jars("connect", "connect.xml")
    rates: dict[str, list[float]] = {"connect_postgres": [], "sml_postgres_json": []}
    with own_pg_schema() as pg_url, own_topics(1, "connect") as (topic,):
        schema = pg_url.rsplit("%3D", 1)[1]
        produce(topic, envelope_values(messages))
        for index in range(repeats):
            order = ("connect_postgres", "sml_postgres_json")[:: 1 if index % 2 == 0 else -1]
            for contender in order:
                if contender == "connect_postgres":
                    rate = connect_run(jars, topic, pg_url, schema, messages)
                else:
                    rate = sml_ingest(topic, pg_url, messages)
                rates[contender].append(rate)
                print(f"  connect repeat {index + 1}/{repeats} {contender:<18} {rate:>10,.0f} rows/s", file=sys.stderr)
    return {name: Stat(tuple(values)) for name, values in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    return report(run(args.messages, args.repeats), args.json)


if __name__ == "__main__":
    sys.exit(main())
