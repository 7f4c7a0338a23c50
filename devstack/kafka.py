"""Apache Kafka 4 in KRaft mode: one combined broker+controller on 127.0.0.1:9092, from Maven jars.

The storage is formatted once with the standalone controller; the contract's topics are created
with Kafka's own TopicCommand, so nothing here needs the project's venv. `KafkaCluster` runs several
such nodes as one cluster: the stack's cluster profile (`kafka_cluster.py`) and the cluster tests.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import Daemon, StackError, fetch_jars, java_bin, port_open, say, stack_dir, wait_until

NAME = "kafka"
PORT = 9092
CONTROLLER_PORT = 9093
SASL_PORT = 9094
SASL_VARIABLE = "SML_STACK_KAFKA_SASL"
REPLICATION_VARIABLE = "SML_KAFKA_REPLICATION_FACTOR"
MIN_INSYNC_VARIABLE = "SML_KAFKA_MIN_INSYNC_REPLICAS"
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


def min_insync_for(replicas: int) -> int:
    """min.insync.replicas a production user pairs with `replicas`: one replica may be lost without
    refusing writes (3 -> 2), never more than 2, never below 1."""
    return max(1, min(2, replicas - 1))


def topic_replication(brokers: int, environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """Replication factor and min.insync.replicas for new topics on `brokers` nodes: the
    SML_KAFKA_* variables when set, else min(3, brokers) and `min_insync_for` it (1 and 1 on one broker).
    The same rule as `simulator.topics.topic_replication`, which this stdlib-only code cannot import."""
    values = []
    for variable, default in ((REPLICATION_VARIABLE, min(3, brokers)), (MIN_INSYNC_VARIABLE, None)):
        raw = environ.get(variable, "").strip()
        if not raw:
            values.append(default)
            continue
        if not raw.isdigit() or int(raw) < 1:
            raise StackError(NAME, f"{variable}={raw!r} is not a whole number of at least 1: set it or unset it")
        values.append(int(raw))
    replicas = values[0]
    min_insync = values[1] if values[1] is not None else min_insync_for(replicas)
    if replicas > brokers:
        raise StackError(NAME, f"{REPLICATION_VARIABLE}={replicas} but the cluster has {brokers} broker(s): lower it")
    if min_insync > replicas:
        raise StackError(
            NAME,
            f"{MIN_INSYNC_VARIABLE}={min_insync} exceeds the replication factor {replicas}: no write could succeed",
        )
    return replicas, min_insync


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
    log_dir: Path,
    port: int,
    controller_port: int,
    advertised: str,
    sasl: SaslListener | None = None,
    node_id: int = 1,
    voters: str | None = None,
) -> str:
    """One combined broker+controller on loopback (the tests' private broker uses it too);
    with `sasl`, a SASL_SSL listener beside the PLAINTEXT one (which the broker itself keeps using);
    with `voters` (`1@host:port,2@...`), node `node_id` of a cluster whose internal topics are
    replicated like the contract's topics (replication 3, min.insync.replicas 2 with 3 nodes)."""
    nodes = len(voters.split(",")) if voters else 1
    internal_replicas, internal_min_isr = min(3, nodes), min_insync_for(min(3, nodes))
    quorum = (
        f"controller.quorum.voters={voters}"
        if voters
        else f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}"
    )
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
            f"node.id={node_id}",
            quorum,
            f"listeners={listeners}",
            f"advertised.listeners={advertised_listeners}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={protocols}",
            *(sasl_properties(sasl) if sasl is not None else []),
            f"log.dirs={log_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            f"offsets.topic.replication.factor={internal_replicas}",
            f"transaction.state.log.replication.factor={internal_replicas}",
            f"transaction.state.log.min.isr={internal_min_isr}",
            f"share.coordinator.state.topic.replication.factor={internal_replicas}",
            f"share.coordinator.state.topic.min.isr={internal_min_isr}",
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


def format_storage(config: Path, cluster_id: str, *args: str, service: str = NAME) -> None:
    """`kafka-storage format` of the node configured in `config` (`args`: `--standalone`, SCRAM users)."""
    result = _java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *args)
    if result.returncode != 0:
        raise StackError(service, f"formatting the storage of {config} failed:\n{result.stdout}{result.stderr}")


def _format(config: Path) -> None:
    """Format the KRaft storage once; a marker keeps later `up`s from touching it."""
    marker = stack_dir(NAME) / "data" / "meta.properties"
    if marker.exists():
        return
    cluster_id = new_cluster_id()
    say(NAME, f"formatting KRaft storage (cluster {cluster_id})")
    scram = scram_format_args(SASL_USER, SASL_PASSWORD) if sasl_enabled() else []
    format_storage(config, cluster_id, "--standalone", *scram)


def create_topics(bootstrap: str, data: Path, brokers: int, service: str = NAME) -> None:
    """Create the contract's topics that the log dir `data` (one node's) does not hold yet, with
    `topic_replication(brokers)`; asking Kafka with TopicCommand costs a JVM start (10-30 s on two
    busy cores) per topic on every `up`."""
    replicas, min_insync = topic_replication(brokers)
    for topic in _topics():
        if (data / f"{topic}-0").is_dir():
            continue
        result = _java(
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--if-not-exists",
            "--topic",
            topic,
            "--partitions",
            str(_partitions()),
            "--replication-factor",
            str(replicas),
            "--config",
            f"min.insync.replicas={min_insync}",
        )
        if result.returncode != 0:
            raise StackError(service, f"creating topic {topic} failed:\n{result.stdout}{result.stderr}")


def broker_command(config: Path, heap: str) -> list[str]:
    """The JVM command of one KRaft node configured in `config`, with at most `heap` of heap."""
    return [
        java_bin(),
        "-Xms256m",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}",
        "-cp",
        _classpath(),
        "kafka.Kafka",
        str(config),
    ]


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
    if not BROKER.running():
        if port_open(PORT):
            raise StackError(NAME, f"port {PORT} is taken by a process this stack did not start")
        _format(config)
        say(NAME, f"starting broker on 127.0.0.1:{PORT}")
        BROKER.start(broker_command(config, "1g"))
    if not wait_until(lambda: port_open(PORT) or not BROKER.running(), 90) or not BROKER.running():
        raise StackError(NAME, f"the broker did not open 127.0.0.1:{PORT}", BROKER.logfile)
    create_topics(f"127.0.0.1:{PORT}", stack_dir(NAME) / "data", brokers=1)
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


CLUSTER_NAME = "kafka-cluster"
CLUSTER_PORTS = ((19092, 19093), (29092, 29093), (39092, 39093))
"""(broker, controller) of the cluster profile's nodes 1, 2, 3: apart from the single node's 9092/9093."""
CLUSTER_HEAP = "512m"
STARTED_LINE = b"Kafka Server started"


@dataclass(frozen=True)
class KafkaCluster:
    """Combined broker+controller KRaft nodes with a static quorum (`controller.quorum.voters`)
    under `root`: node<N>/server.properties, node<N>/data, node<N>.log and .pid. The stack's cluster
    profile (`CLUSTER_PORTS`) and the cluster tests (free ports, a temporary folder) both use it."""

    root: Path
    ports: tuple[tuple[int, int], ...] = CLUSTER_PORTS
    heap: str = CLUSTER_HEAP
    service: str = CLUSTER_NAME

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, len(self.ports) + 1))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{broker}" for broker, _ in self.ports)

    @property
    def voters(self) -> str:
        return ",".join(f"{node}@127.0.0.1:{controller}" for node, (_, controller) in zip(self.node_ids, self.ports))

    def daemon(self, node: int) -> Daemon:
        return Daemon(self.service, f"node{node}", folder=self.root)

    def data(self, node: int) -> Path:
        return self.root / f"node{node}" / "data"

    def port(self, node: int) -> int:
        return self.ports[node - 1][0]

    def start(self) -> None:
        """Format once (every node with one new cluster id), start the nodes not running, and return
        when each logged that it started (it is then registered and unfenced)."""
        configs = {node: self._config(node) for node in self.node_ids}
        if not all((self.data(node) / "meta.properties").exists() for node in self.node_ids):
            cluster_id = new_cluster_id()
            say(self.service, f"formatting {len(configs)} KRaft nodes (cluster {cluster_id})")
            for node in configs:
                shutil.rmtree(self.data(node), ignore_errors=True)
            with ThreadPoolExecutor(len(configs)) as pool:  # one JVM each: side by side
                list(
                    pool.map(lambda config: format_storage(config, cluster_id, service=self.service), configs.values())
                )
        starting: dict[int, int] = {}
        for node, config in configs.items():
            daemon = self.daemon(node)
            if daemon.running():
                continue
            taken = [port for port in self.ports[node - 1] if port_open(port)]
            if taken:
                raise StackError(
                    self.service,
                    f"node {node}: 127.0.0.1 port(s) {', '.join(map(str, taken))} taken by a process this "
                    "stack did not start; stop it (see `ss -ltnp`) and retry",
                )
            starting[node] = daemon.logfile.stat().st_size if daemon.logfile.exists() else 0
            daemon.start(broker_command(config, self.heap))
        for node, offset in starting.items():
            self._wait_started(node, offset)

    def restart(self, node: int) -> None:
        """Start one node again (after `kill`), returning when it has started."""
        daemon = self.daemon(node)
        offset = daemon.logfile.stat().st_size if daemon.logfile.exists() else 0
        daemon.start(broker_command(self.root / f"node{node}" / "server.properties", self.heap))
        self._wait_started(node, offset)

    def kill(self, node: int) -> None:
        """SIGKILL one node, as a crashed machine."""
        self.daemon(node).kill()

    def stop(self, kill: bool = False) -> None:
        """Stop every node at once (a controlled shutdown of the last ones needs the others' quorum);
        `kill`: SIGKILL, for throw-away test clusters."""
        daemons = [self.daemon(node) for node in self.node_ids]
        with ThreadPoolExecutor(len(daemons)) as pool:
            list(pool.map(lambda daemon: daemon.kill() if kill else daemon.stop(timeout=60), daemons))

    def status(self) -> tuple[bool, str]:
        parts, up = [], True
        for node in self.node_ids:
            pid = self.daemon(node).pid()
            answering = pid is not None and port_open(self.port(node))
            up &= answering
            state = "stopped" if pid is None else (f"pid {pid}" if answering else f"pid {pid} not answering")
            parts.append(f"node {node} 127.0.0.1:{self.port(node)} {state}")
        return up, ", ".join(parts)

    def _config(self, node: int) -> Path:
        home = self.root / f"node{node}"
        home.mkdir(parents=True, exist_ok=True)
        broker, controller = self.ports[node - 1]
        config = home / "server.properties"
        text = server_properties(
            self.data(node), broker, controller, f"127.0.0.1:{broker}", node_id=node, voters=self.voters
        )
        config.write_text(text)
        return config

    def _wait_started(self, node: int, offset: int) -> None:
        daemon = self.daemon(node)

        def started() -> bool:
            if not daemon.running():
                return True
            with open(daemon.logfile, "rb") as log:
                log.seek(offset)
                return STARTED_LINE in log.read()

        if not wait_until(started, 180) or not daemon.running():
            raise StackError(self.service, f"node {node} did not start on 127.0.0.1:{self.port(node)}", daemon.logfile)


def cluster() -> KafkaCluster:
    """The stack's cluster profile: three nodes on `CLUSTER_PORTS` under SML_DATA_DIR/stack/kafka-cluster."""
    return KafkaCluster(stack_dir(CLUSTER_NAME))


def cluster_up() -> None:
    nodes = cluster()
    nodes.start()
    create_topics(nodes.bootstrap, nodes.data(1), brokers=len(nodes.node_ids), service=CLUSTER_NAME)
    replicas, min_insync = topic_replication(len(nodes.node_ids))
    say(
        CLUSTER_NAME,
        f"up: {nodes.bootstrap}, topics {', '.join(_topics())} "
        f"(replication {replicas}, min.insync.replicas {min_insync})",
    )


def cluster_down() -> None:
    say(CLUSTER_NAME, "stopping the nodes")
    cluster().stop()


def cluster_status() -> tuple[bool, str]:
    return cluster().status()
