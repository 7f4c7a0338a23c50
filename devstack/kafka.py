"""Apache Kafka 4 in KRaft mode: one combined broker+controller on 127.0.0.1:9092, from Maven jars.

The storage is formatted once with the standalone controller; the contract's topics are created
with Kafka's own TopicCommand, so nothing here needs the project's venv.
"""
from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path

from common import Daemon, StackError, fetch_jars, java_bin, port_open, say, stack_dir, wait_until

NAME = "kafka"
PORT = 9092
CONTROLLER_PORT = 9093
HERE = Path(__file__).resolve().parent
BROKER = Daemon(NAME, "broker")


def _topics() -> list[str]:
    return [os.environ.get("SML_LOGS_TOPIC", "test-topic3"), os.environ.get("SML_METRICS_TOPIC", "test-topic4")]


def _partitions() -> int:
    return int(os.environ.get("SML_STACK_TOPIC_PARTITIONS", "1"))


def _classpath() -> str:
    return str(fetch_jars(NAME, "kafka.xml") / "*")


def server_properties(log_dir: Path, port: int, controller_port: int, advertised: str) -> str:
    """One combined broker+controller on loopback (the tests' private broker uses it too)."""
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://{advertised}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={log_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def _config() -> Path:
    home = stack_dir(NAME)
    config = home / "server.properties"
    config.write_text(server_properties(home / "data", PORT, CONTROLLER_PORT, f"127.0.0.1:{PORT}"))
    return config


def _java(main: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [
        java_bin(), "-Xmx256m", f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}",
        "-cp", _classpath(), main, *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _format(config: Path) -> None:
    """Format the KRaft storage once; a marker keeps later `up`s from touching it."""
    marker = stack_dir(NAME) / "data" / "meta.properties"
    if marker.exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    say(NAME, f"formatting KRaft storage (cluster {cluster_id})")
    result = _java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), "--standalone")
    if result.returncode != 0:
        raise StackError(NAME, f"formatting the storage failed:\n{result.stdout}{result.stderr}")


def _create_topics() -> None:
    for topic in _topics():
        result = _java(
            "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", f"127.0.0.1:{PORT}",
            "--create", "--if-not-exists", "--topic", topic,
            "--partitions", str(_partitions()), "--replication-factor", "1",
        )
        if result.returncode != 0:
            raise StackError(NAME, f"creating topic {topic} failed:\n{result.stdout}{result.stderr}")


def up() -> None:
    config = _config()
    classpath = _classpath()
    if not BROKER.running():
        if port_open(PORT):
            raise StackError(NAME, f"port {PORT} is taken by a process this stack did not start")
        _format(config)
        say(NAME, f"starting broker on 127.0.0.1:{PORT}")
        BROKER.start(
            [
                java_bin(), "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}",
                "-cp", classpath, "kafka.Kafka", str(config),
            ]
        )
    if not wait_until(lambda: port_open(PORT) or not BROKER.running(), 90) or not BROKER.running():
        raise StackError(NAME, f"the broker did not open 127.0.0.1:{PORT}", BROKER.logfile)
    _create_topics()
    say(NAME, f"up: 127.0.0.1:{PORT}, topics {', '.join(_topics())}")


def down() -> None:
    if BROKER.running():
        say(NAME, "stopping broker")
    BROKER.stop(timeout=60)


def status() -> tuple[bool, str]:
    pid = BROKER.pid()
    if pid is None:
        return False, "stopped"
    if not port_open(PORT):
        return False, f"broker pid {pid} is running but 127.0.0.1:{PORT} does not answer"
    return True, f"broker pid {pid}, bootstrap 127.0.0.1:{PORT}"
