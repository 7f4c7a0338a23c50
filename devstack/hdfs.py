"""Local HDFS: a real NameNode and a real DataNode, two JVM daemons bound to 127.0.0.1.

The jars are Apache Hadoop's own (`devstack/poms/hadoop.xml`, from Maven Central) and the daemons are
started with their ordinary main classes, so clients meet the same RPC, WebHDFS and DataNode
redirects as on a cluster. `hadoop-client-minicluster` (one JVM) was the fallback and is not needed:
both daemons run on Java 17 once the `--add-opens` below are given.

Ports: NameNode RPC 9000, NameNode HTTP / WebHDFS 9870, DataNode data 9866, HTTP 9864, IPC 9867;
with SML_STACK_HDFS_HTTPS=1 also HTTPS 9871 (NameNode) and 9865 (DataNode), certificate from the
stack's CA (devstack/tls.py). `start` starts any `Cluster`: a test's own on free ports, HTTPS only.
The DataNode registers as 127.0.0.1, so WebHDFS redirects (CREATE, OPEN, APPEND) resolve on this
machine. Permissions are off and replication is 1: a development store, not a secure one.
`ReplicatedCluster` adds DataNodes to a `Cluster` (replication 2): the stack's cluster profile
(`hdfs_cluster.py`, NameNode 19000/19870) and the cluster tests.

Imported as a plain module with `devstack/` on sys.path (`import hdfs`), like `common`. In a Python
that has the PyPI package `hdfs` installed, that path entry shadows it, so run the stack through
`devstack/stack.py` in its own process rather than importing it into the project's venv.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import ssl
import string
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tls
from common import Daemon, StackError, fetch_jars, java_bin, port_open, say, stack_dir

NAME = "hdfs"

RPC_PORT = 9000
HTTP_PORT = 9870
DN_DATA_PORT = 9866
DN_HTTP_PORT = 9864
DN_IPC_PORT = 9867
HTTPS_PORT = 9871
DN_HTTPS_PORT = 9865
HTTPS_VARIABLE = "SML_STACK_HDFS_HTTPS"
HTTPS_PASSWORD = "sml-dev-only"  # the local stack's keystores only; a real cluster's come from its operators

START_TIMEOUT = 120.0
TEMPLATES = Path(__file__).resolve().parent / "hadoop"

# Java 17 closes JDK internals that Hadoop 3.4 reflects into. java.lang is proven necessary: without
# it Jersey's JAXB cannot inject accessor classes and every WebHDFS call answers 500. The rest is
# the set Spark's launcher opens for the same Hadoop code, for paths not exercised at start-up
# (direct buffers, Kerberos, calendars).
ADD_OPENS = (
    "java.base/java.io",
    "java.base/java.lang",
    "java.base/java.lang.invoke",
    "java.base/java.lang.reflect",
    "java.base/java.net",
    "java.base/java.nio",
    "java.base/java.util",
    "java.base/java.util.concurrent",
    "java.base/java.util.concurrent.atomic",
    "java.base/jdk.internal.ref",
    "java.base/sun.nio.ch",
    "java.base/sun.nio.cs",
    "java.base/sun.security.action",
    "java.base/sun.util.calendar",
    "java.security.jgss/sun.security.krb5",
)

NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"

HTTPS_PROPERTIES = """
  <property><name>dfs.http.policy</name><value>$policy</value></property>
  <property><name>dfs.namenode.https-address</name><value>127.0.0.1:$https_port</value></property>
  <property><name>dfs.datanode.https.address</name><value>127.0.0.1:$dn_https_port</value></property>
"""
"""Appended to hdfs-site.xml for an HTTPS cluster; ssl-server.xml / ssl-client.xml come beside it."""


@dataclass(frozen=True)
class Https:
    """What makes a cluster serve WebHDFS over TLS: the NameNode's and DataNode's HTTPS ports, a
    PKCS12 keystore holding the server certificate and key, a PKCS12 truststore holding the CA,
    their (development) password, and the CA's PEM, which the readiness checks trust.

    `policy` HTTPS_ONLY closes the plain HTTP ports; HTTP_AND_HTTPS keeps both open.
    """

    port: int
    dn_port: int
    keystore: Path
    truststore: Path
    password: str
    ca: Path
    policy: str = "HTTPS_ONLY"


@dataclass(frozen=True)
class Cluster:
    """One HDFS: where its namespace, blocks, configuration, pid and log files live, and the ports
    it binds on 127.0.0.1. The stack's is `shared()`; a test starts its own on free ports."""

    state_dir: Path
    rpc_port: int = RPC_PORT
    http_port: int = HTTP_PORT
    dn_data_port: int = DN_DATA_PORT
    dn_http_port: int = DN_HTTP_PORT
    dn_ipc_port: int = DN_IPC_PORT
    https: Https | None = None
    replication: int = 1
    heartbeat_s: int = 3
    recheck_ms: int = 300_000
    datanode_name: str = "datanode"
    """Another name gives another DataNode of the same NameNode its own conf-, data- folder and pid."""

    @property
    def namenode(self) -> Daemon:
        return Daemon(NAME, "namenode", self.state_dir)

    @property
    def datanode(self) -> Daemon:
        return Daemon(NAME, self.datanode_name, self.state_dir)

    @property
    def conf_dir(self) -> Path:
        first = self.datanode_name == "datanode"
        return self.state_dir / ("conf" if first else f"conf-{self.datanode_name}")

    @property
    def data_dir(self) -> Path:
        return self.state_dir / ("data" if self.datanode_name == "datanode" else f"data-{self.datanode_name}")

    @property
    def url(self) -> str:
        """The WebHDFS URL clients use: https:// when the cluster serves HTTPS only."""
        if self.https is not None and self.https.policy == "HTTPS_ONLY":
            return f"https://127.0.0.1:{self.https.port}"
        return f"http://127.0.0.1:{self.http_port}"

    def namenode_ports(self) -> tuple[int, ...]:
        """The ports the NameNode binds (HTTPS_ONLY leaves the HTTP one closed)."""
        return (self.rpc_port, *self._web_ports(self.http_port, lambda https: https.port))

    def datanode_ports(self) -> tuple[int, ...]:
        return (self.dn_data_port, self.dn_ipc_port, *self._web_ports(self.dn_http_port, lambda https: https.dn_port))

    def _web_ports(self, http: int, https_port: Callable[[Https], int]) -> tuple[int, ...]:
        if self.https is None:
            return (http,)
        return (https_port(self.https),) if self.https.policy == "HTTPS_ONLY" else (http, https_port(self.https))


def shared() -> Cluster:
    """The local stack's HDFS: fixed ports, state under SML_DATA_DIR/stack/hdfs; with
    SML_STACK_HDFS_HTTPS=1 it also serves HTTPS (9871, DataNode 9865) with the stack's CA."""
    return Cluster(stack_dir(NAME), https=_stack_https() if https_enabled() else None)


def https_enabled() -> bool:
    return os.environ.get(HTTPS_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def _stack_https() -> Https:
    """HTTP_AND_HTTPS, so the stack's http:// users go on working beside https:// ones."""
    folder = stack_dir(NAME) / "tls"
    try:
        ca = tls.stack_ca()
        server = tls.issue(ca, folder, "hdfs")
        keystore, truststore = https_material(folder, ca, server, HTTPS_PASSWORD)
    except tls.TlsError as error:
        raise StackError(NAME, f"making the HTTPS certificate failed: {error}") from None
    return Https(HTTPS_PORT, DN_HTTPS_PORT, keystore, truststore, HTTPS_PASSWORD, ca.certificate, "HTTP_AND_HTTPS")


def up() -> None:
    """Fetch the jars, then start the stack's HDFS (a no-op when it runs)."""
    cluster = shared()
    start(cluster, fetch_jars(NAME, "hadoop.xml"))
    if cluster.https is not None and not port_open(cluster.https.port):
        raise StackError(
            NAME,
            f"{HTTPS_VARIABLE} is set but 127.0.0.1:{cluster.https.port} is closed: HDFS was started "
            "without HTTPS; run 'python3 devstack/stack.py down hdfs' then up",
        )


def down() -> None:
    stop(shared())


def start(cluster: Cluster, jars: Path) -> None:
    """Configure, format once, start NameNode and DataNode; return when HDFS takes writes.

    Both JVMs start at once (the DataNode retries until the NameNode's RPC port answers): their
    start-ups overlap instead of adding up, about 20 s saved on a loaded 2-core machine.
    """
    conf = _write_conf(cluster)
    namenode, datanode = cluster.namenode, cluster.datanode
    if not namenode.running():
        _check_ports_free("namenode", cluster.namenode_ports())
        if not _formatted(cluster):
            _format(cluster, jars, conf)
        namenode.start(_java(cluster, jars, conf, "namenode", NAMENODE_CLASS))
        say(NAME, f"namenode starting (log {namenode.logfile})")
    if not datanode.running():
        _check_ports_free("datanode", cluster.datanode_ports())
        datanode.start(_java(cluster, jars, conf, "datanode", DATANODE_CLASS))
        say(NAME, f"datanode starting (log {datanode.logfile})")
    _wait(cluster, namenode, lambda: _fs_state(cluster) is not None, f"the NameNode did not answer on {cluster.url}")
    _wait(cluster, datanode, lambda: _datanode_live(cluster), "no live DataNode with free space registered")
    _wait(cluster, namenode, lambda: _out_of_safe_mode(cluster), "the NameNode stayed in safe mode")
    _wait(cluster, namenode, lambda: _webhdfs_answers(cluster), f"WebHDFS did not list / on {cluster.url}")
    say(NAME, status(cluster)[1])


def stop(cluster: Cluster) -> None:
    """Stop the DataNode first so the NameNode does not log it as lost; data stays on disk."""
    for daemon in (cluster.datanode, cluster.namenode):
        if daemon.running():
            daemon.stop()
            say(NAME, f"{daemon.name} stopped")


def status(cluster: Cluster | None = None) -> tuple[bool, str]:
    """Up means both daemons run, WebHDFS answers, safe mode is off and a DataNode is live."""
    cluster = cluster or shared()
    nn, dn = cluster.namenode.pid(), cluster.datanode.pid()
    if nn is None and dn is None:
        return False, "stopped"
    parts = [
        f"namenode pid {nn}" if nn else "namenode stopped",
        f"datanode pid {dn}" if dn else "datanode stopped",
    ]
    state = _fs_state(cluster)
    if state is None:
        return False, ", ".join(parts + [f"webhdfs {cluster.url} not answering"])
    live = int(state.get("NumLiveDataNodes", 0))
    safe_mode = state.get("FSState") != "Operational"
    parts.append(f"webhdfs {cluster.url}")
    if cluster.https is not None and cluster.https.policy != "HTTPS_ONLY":
        parts.append(f"https://127.0.0.1:{cluster.https.port} (CA {cluster.https.ca})")
    parts.append(f"{live} live datanode{'' if live == 1 else 's'}")
    if safe_mode:
        parts.append("in safe mode")
    return bool(nn and dn and live >= 1 and not safe_mode), ", ".join(parts)


def https_material(folder: Path, ca: Any, server: Any, password: str) -> tuple[Path, Path]:
    """A PKCS12 keystore with `server`'s certificate and key (chain up to `ca`) and a PKCS12
    truststore with `ca`, both in `folder`, both guarded by `password`; made by openssl and keytool.

    `ca` and `server` are devstack/tls.py KeyPairs. Java 17 reads OpenSSL 3's PKCS12 (PBES2/AES);
    a truststore needs Java's trusted-certificate attribute, which only keytool writes here.
    """
    keystore, truststore = folder / "keystore.p12", folder / "truststore.p12"
    tls.pkcs12(server, ca, keystore, password)
    if not truststore.exists():
        keytool = str(Path(java_bin()).with_name("keytool"))
        result = subprocess.run(
            [keytool, "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca.certificate), "-keystore",
             str(truststore), "-storetype", "PKCS12", "-storepass", password],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(NAME, f"keytool could not write {truststore}: {result.stdout}{result.stderr}")
    return keystore, truststore


def _write_conf(cluster: Cluster) -> Path:
    """Render devstack/hadoop/* into the cluster's folder; the folder goes first on the classpath."""
    conf = cluster.conf_dir
    conf.mkdir(parents=True, exist_ok=True)
    https = cluster.https
    values = {
        "state_dir": str(cluster.state_dir),
        "data_dir": str(cluster.data_dir),
        "replication": cluster.replication,
        "heartbeat_s": cluster.heartbeat_s,
        "recheck_ms": cluster.recheck_ms,
        "user": getpass.getuser(),
        "rpc_port": cluster.rpc_port,
        "http_port": cluster.http_port,
        "dn_data_port": cluster.dn_data_port,
        "dn_http_port": cluster.dn_http_port,
        "dn_ipc_port": cluster.dn_ipc_port,
        "https_properties": "",
    }
    templates = ["core-site.xml", "hdfs-site.xml", "log4j.properties"]
    if https is not None:
        tls_values = {
            "policy": https.policy,
            "https_port": https.port,
            "dn_https_port": https.dn_port,
            "keystore": https.keystore,
            "truststore": https.truststore,
            "password": https.password,
        }
        values |= tls_values | {"https_properties": string.Template(HTTPS_PROPERTIES).substitute(tls_values)}
        templates += ["ssl-server.xml", "ssl-client.xml"]
    for template in templates:
        text = string.Template((TEMPLATES / template).read_text()).substitute(values)
        (conf / template).write_text(text)
        if template.startswith("ssl-"):
            os.chmod(conf / template, 0o600)
    return conf


def _java(cluster: Cluster, jars: Path, conf: Path, role: str, main_class: str, *args: str) -> list[str]:
    """The daemon's JVM command; Jetty unpacks into a scratch dir of its own that each start empties."""
    opens = [f"--add-opens={module}=ALL-UNNAMED" for module in ADD_OPENS]
    scratch = cluster.state_dir / "tmp" / role
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return [
        java_bin(),
        f"-Dproc_{role}",
        "-Xmx512m",
        "-Djava.net.preferIPv4Stack=true",
        f"-Djava.io.tmpdir={scratch}",
        f"-Dhadoop.log.dir={cluster.state_dir}",
        f"-Dhadoop.home.dir={cluster.state_dir}",
        *opens,
        "-cp",
        f"{conf}:{jars}/*",
        main_class,
        *args,
    ]


def _format_marker(cluster: Cluster) -> Path:
    return cluster.state_dir / "namenode.formatted"


def _formatted(cluster: Cluster) -> bool:
    return _format_marker(cluster).exists() and (cluster.state_dir / "name" / "current" / "VERSION").exists()


def _format(cluster: Cluster, jars: Path, conf: Path) -> None:
    """Format a new namespace; old DataNode blocks belong to another cluster id, so they go too."""
    for leftover in ("name", "data"):
        shutil.rmtree(cluster.state_dir / leftover, ignore_errors=True)
    log = cluster.state_dir / "namenode-format.log"
    say(NAME, f"formatting the NameNode in {cluster.state_dir} (first start)")
    cmd = _java(cluster, jars, conf, "namenode", NAMENODE_CLASS, "-format", "-nonInteractive", "-force")
    with open(log, "wb") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc != 0:
        raise StackError(NAME, f"formatting the NameNode failed (exit {rc})", log)
    _format_marker(cluster).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))


def _check_ports_free(role: str, ports: tuple[int, ...]) -> None:
    taken = [port for port in ports if port_open(port)]
    if taken:
        raise StackError(
            NAME,
            f"cannot start the {role}: 127.0.0.1 port(s) {', '.join(map(str, taken))} already in use "
            "by a process this stack did not start; stop it (see `ss -ltnp`) and retry",
        )


def _wait(cluster: Cluster, daemon: Daemon, check: Callable[[], bool], what: str) -> None:
    """Poll until `check` holds; fail at once if a daemon dies, else at the deadline."""
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        for started in (cluster.namenode, daemon):
            if not started.running():
                raise StackError(NAME, f"the {started.name} exited during start-up", started.logfile)
        if time.monotonic() >= deadline:
            raise StackError(NAME, f"{what} within {START_TIMEOUT:.0f} s ({daemon.name})", daemon.logfile)
        time.sleep(0.5)


def _get_json(cluster: Cluster, path: str) -> dict | None:
    """GET a NameNode HTTP(S) path as JSON, bypassing any proxy and trusting the cluster's CA;
    None if it does not answer."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if cluster.https is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(cluster.https.ca))))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(f"{cluster.url}{path}", timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def _fs_state(cluster: Cluster) -> dict | None:
    """The NameNode's FSNamesystemState JMX bean; None until the namespace is loaded."""
    beans = (_get_json(cluster, "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState") or {}).get("beans")
    return beans[0] if beans else None


def _webhdfs_answers(cluster: Cluster) -> bool:
    return _get_json(cluster, "/webhdfs/v1/?op=GETFILESTATUS") is not None


def _datanode_live(cluster: Cluster) -> bool:
    state = _fs_state(cluster) or {}
    return int(state.get("NumLiveDataNodes", 0)) >= 1 and int(state.get("CapacityRemaining", 0)) > 0


def _out_of_safe_mode(cluster: Cluster) -> bool:
    state = _fs_state(cluster) or {}
    return state.get("FSState") == "Operational"


CLUSTER_NAME = "hdfs-cluster"
CLUSTER_DATANODE_PORTS = ((19866, 19864, 19867), (29866, 29864, 29867))
"""(data, HTTP, IPC) of the cluster profile's DataNodes 1 and 2: apart from the stack's 9864-9867."""


@dataclass(frozen=True)
class ReplicatedCluster:
    """A `Cluster` (NameNode and DataNode 1) with more DataNodes of the same NameNode, all in its
    folder, blocks replicated `replication` times: the stack's cluster profile, and the cluster tests
    (free ports, a temporary folder, a short heartbeat so a killed DataNode is soon declared dead)."""

    nodes: tuple[Cluster, ...]

    @classmethod
    def on(
        cls,
        state_dir: Path,
        rpc_port: int,
        http_port: int,
        datanode_ports: tuple[tuple[int, int, int], ...],
        replication: int = 2,
        heartbeat_s: int = 3,
        recheck_ms: int = 300_000,
    ) -> ReplicatedCluster:
        """DataNode n on `datanode_ports[n - 1]` (data, HTTP, IPC)."""
        (data, http, ipc), *more = datanode_ports
        first = Cluster(state_dir, rpc_port, http_port, data, http, ipc, None, replication, heartbeat_s, recheck_ms)
        extra = (
            replace(first, dn_data_port=d, dn_http_port=h, dn_ipc_port=i, datanode_name=f"datanode{number}")
            for number, (d, h, i) in enumerate(more, start=2)
        )
        return cls((first, *extra))

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def datanode(self, number: int) -> Daemon:
        return self.nodes[number - 1].datanode

    def start(self) -> None:
        """Start what is not running; return when every DataNode is live."""
        jars = fetch_jars(NAME, "hadoop.xml")
        first = self.nodes[0]
        if not _formatted(first):
            for node in self.nodes[1:]:
                shutil.rmtree(node.data_dir, ignore_errors=True)
        start(first, jars)
        for node in self.nodes[1:]:
            if not node.datanode.running():
                _check_ports_free(node.datanode_name, node.datanode_ports())
                node.datanode.start(_java(node, jars, _write_conf(node), node.datanode_name, DATANODE_CLASS))
        for node in self.nodes[1:]:
            _wait(first, node.datanode, self._all_live, f"{len(self.nodes)} live DataNodes did not register")

    def kill_datanode(self, number: int) -> None:
        """SIGKILL DataNode `number`, as a crashed machine."""
        self.datanode(number).kill()

    def stop(self, kill: bool = False) -> None:
        """DataNodes, then the NameNode; `kill`: SIGKILL, for throw-away test clusters."""
        for daemon in [*(node.datanode for node in self.nodes), self.nodes[0].namenode]:
            daemon.kill() if kill else daemon.stop()

    def status(self) -> tuple[bool, str]:
        daemons = [self.nodes[0].namenode, *(node.datanode for node in self.nodes)]
        if all(daemon.pid() is None for daemon in daemons):
            return False, "stopped"
        state = _fs_state(self.nodes[0]) or {}
        live = int(state.get("NumLiveDataNodes", 0))
        parts = [f"{d.name} {'pid ' + str(d.pid()) if d.pid() else 'stopped'}" for d in daemons]
        parts += [f"webhdfs {self.url}", f"{live} live datanodes", f"replication {self.nodes[0].replication}"]
        return live == len(self.nodes) and state.get("FSState") == "Operational", ", ".join(parts)

    def _all_live(self) -> bool:
        return int((_fs_state(self.nodes[0]) or {}).get("NumLiveDataNodes", 0)) >= len(self.nodes)


def profile() -> ReplicatedCluster:
    """The stack's cluster profile: NameNode 19000/19870 and two DataNodes, under SML_DATA_DIR/stack/hdfs-cluster."""
    return ReplicatedCluster.on(stack_dir(CLUSTER_NAME), 19000, 19870, CLUSTER_DATANODE_PORTS)
