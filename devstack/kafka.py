"""Apache Kafka 4 in KRaft mode: one combined broker+controller on 127.0.0.1:9092, from Maven jars.

The storage is formatted once with the standalone controller; the contract's topics are created
with Kafka's own TopicCommand, so nothing here needs the project's venv.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import Daemon, StackError, fetch_jars, java_bin, port_open, say, stack_dir, wait_until

NAME = "kafka"
PORT = 9092
CONTROLLER_PORT = 9093
SASL_PORT = 9094
SASL_VARIABLE = "SML_STACK_KAFKA_SASL"
SASL_USER = "sml"
SASL_PASSWORD = "sml-dev-only"  # local development broker only; production credentials come from SML_KAFKA_SASL_*
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
HERE = Path(__file__).resolve().parent
BROKER = Daemon(NAME, "broker")
RESERVED_IDS = frozenset({bytes(16), bytes(15) + b"\x01"})
"""Kafka's Uuid.ZERO_UUID and Uuid.ONE_UUID (the metadata topic's id): never handed out as ids."""


def new_cluster_id(draw: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id that `StorageTool format -t` accepts, drawn like Kafka's Uuid.randomUuid().

    16 random bytes as unpadded base64url; an id starting with '-' (1 draw in 64) is drawn again,
    as Kafka does, because the tool's argument parser takes it for an option and refuses it.
    """
    while True:
        raw = draw()
        if len(raw) != 16:
            raise ValueError(f"a Kafka cluster id is 16 bytes, the draw gave {len(raw)}")
        encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        if raw not in RESERVED_IDS and not encoded.startswith("-"):
            return encoded


def _topics() -> list[str]:
    return [os.environ.get("SML_LOGS_TOPIC", "test-topic3"), os.environ.get("SML_METRICS_TOPIC", "test-topic4")]


def _partitions() -> int:
    return int(os.environ.get("SML_STACK_TOPIC_PARTITIONS", "1"))


def _classpath() -> str:
    return str(fetch_jars(NAME, "kafka.xml") / "*")


@dataclass(frozen=True)
class SaslListener:
    """A SASL_SSL listener beside PLAINTEXT: SCRAM logins over TLS with a PEM keystore.

    `keystore` holds the broker's key then its certificate chain (`tls.issue(...).bundle`);
    `truststore` is the CA whose client certificates are accepted; `client_auth` is Kafka's
    `ssl.client.auth`: `required` makes it mTLS (a client without a certificate from the CA is refused).
    """

    port: int
    keystore: Path
    truststore: Path
    client_auth: str = "requested"


def sasl_properties(listener: SaslListener) -> list[str]:
    """The broker settings of a SASL_SSL listener (users are SCRAM credentials in the metadata log)."""
    prefix = "listener.name.sasl_ssl"
    return [
        f"sasl.enabled.mechanisms={','.join(SCRAM_MECHANISMS)}",
        *(
            f"{prefix}.{mechanism.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            for mechanism in SCRAM_MECHANISMS
        ),
        f"{prefix}.ssl.keystore.type=PEM",
        f"{prefix}.ssl.keystore.location={listener.keystore}",
        f"{prefix}.ssl.truststore.type=PEM",
        f"{prefix}.ssl.truststore.location={listener.truststore}",
        f"{prefix}.ssl.client.auth={listener.client_auth}",
    ]


def scram_format_args(user: str, password: str) -> list[str]:
    """`kafka-storage format` arguments that create `user` for every SCRAM mechanism at format time."""
    args: list[str] = []
    for mechanism in SCRAM_MECHANISMS:
        args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
    return args


def server_properties(
    log_dir: Path, port: int, controller_port: int, advertised: str, sasl: SaslListener | None = None
) -> str:
    """One combined broker+controller on loopback (the tests' private broker uses it too);
    with `sasl`, a SASL_SSL listener beside the PLAINTEXT one (which the broker itself keeps using)."""
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    advertised_listeners = f"PLAINTEXT://{advertised}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if sasl is not None:
        listeners += f",SASL_SSL://127.0.0.1:{sasl.port}"
        advertised_listeners += f",SASL_SSL://127.0.0.1:{sasl.port}"
        protocols += ",SASL_SSL:SASL_SSL"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            f"listeners={listeners}",
            f"advertised.listeners={advertised_listeners}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={protocols}",
            *(sasl_properties(sasl) if sasl is not None else []),
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


def sasl_enabled() -> bool:
    """SML_STACK_KAFKA_SASL=1: the stack's broker also listens with SASL_SSL on 127.0.0.1:9094."""
    return os.environ.get(SASL_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def _stack_sasl_listener() -> SaslListener:
    """The stack's SASL_SSL listener, with a broker certificate from the stack's CA (tls.py)."""
    import tls

    try:
        ca = tls.stack_ca()
        broker = tls.issue(ca, stack_dir(NAME) / "tls", "kafka-broker")
    except tls.TlsError as error:
        raise StackError(NAME, f"making the SASL_SSL listener's certificate failed: {error}") from None
    return SaslListener(port=SASL_PORT, keystore=broker.bundle, truststore=ca.certificate)


def _config() -> Path:
    home = stack_dir(NAME)
    config = home / "server.properties"
    sasl = _stack_sasl_listener() if sasl_enabled() else None
    config.write_text(server_properties(home / "data", PORT, CONTROLLER_PORT, f"127.0.0.1:{PORT}", sasl))
    return config


def _java(main: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [
        java_bin(),
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}",
        "-cp",
        _classpath(),
        main,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _format(config: Path) -> None:
    """Format the KRaft storage once; a marker keeps later `up`s from touching it."""
    marker = stack_dir(NAME) / "data" / "meta.properties"
    if marker.exists():
        return
    cluster_id = new_cluster_id()
    say(NAME, f"formatting KRaft storage (cluster {cluster_id})")
    scram = scram_format_args(SASL_USER, SASL_PASSWORD) if sasl_enabled() else []
    result = _java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), "--standalone", *scram)
    if result.returncode != 0:
        raise StackError(NAME, f"formatting the storage failed:\n{result.stdout}{result.stderr}")


def _create_topics() -> None:
    """Create the contract's topics that the broker's log dir does not hold yet; asking Kafka with
    TopicCommand costs a JVM start (10-30 s on two busy cores) per topic on every `up`."""
    data = stack_dir(NAME) / "data"
    for topic in _topics():
        if (data / f"{topic}-0").is_dir():
            continue
        result = _java(
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            f"127.0.0.1:{PORT}",
            "--create",
            "--if-not-exists",
            "--topic",
            topic,
            "--partitions",
            str(_partitions()),
            "--replication-factor",
            "1",
        )
        if result.returncode != 0:
            raise StackError(NAME, f"creating topic {topic} failed:\n{result.stdout}{result.stderr}")


def ensure_scram_user(bootstrap: str, user: str, password: str) -> None:
    """Create (or reset) a SCRAM user through the PLAINTEXT listener at `bootstrap`: a storage
    formatted before SML_STACK_KAFKA_SASL was set has no SCRAM credentials yet."""
    for mechanism in SCRAM_MECHANISMS:
        result = _java(
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            bootstrap,
            "--alter",
            "--add-config",
            f"{mechanism}=[password={password}]",
            "--entity-type",
            "users",
            "--entity-name",
            user,
        )
        if result.returncode != 0:
            raise StackError(NAME, f"creating SCRAM user {user} ({mechanism}) failed:\n{result.stderr}")


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
                java_bin(),
                "-Xms256m",
                "-Xmx1g",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ]
        )
    if not wait_until(lambda: port_open(PORT) or not BROKER.running(), 90) or not BROKER.running():
        raise StackError(NAME, f"the broker did not open 127.0.0.1:{PORT}", BROKER.logfile)
    _create_topics()
    say(NAME, f"up: 127.0.0.1:{PORT}, topics {', '.join(_topics())}")
    if sasl_enabled():
        if not wait_until(lambda: port_open(SASL_PORT), 30):
            raise StackError(
                NAME,
                f"{SASL_VARIABLE} is set but 127.0.0.1:{SASL_PORT} is closed: the broker was "
                f"started without it; run 'python3 devstack/stack.py down kafka' then up",
                BROKER.logfile,
            )
        ensure_scram_user(f"127.0.0.1:{PORT}", SASL_USER, SASL_PASSWORD)
        say(
            NAME,
            f"SASL_SSL: 127.0.0.1:{SASL_PORT}, SCRAM user {SASL_USER} (development password), "
            f"CA {stack_dir('tls') / 'ca.pem'}",
        )


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
    if sasl_enabled() and not port_open(SASL_PORT):
        return False, f"broker pid {pid} has no SASL_SSL listener on 127.0.0.1:{SASL_PORT} ({SASL_VARIABLE} is set)"
    secured = f", SASL_SSL 127.0.0.1:{SASL_PORT}" if sasl_enabled() else ""
    return True, f"broker pid {pid}, bootstrap 127.0.0.1:{PORT}{secured}"
