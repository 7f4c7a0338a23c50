"""Tools the reliability tests break things with, without touching the shared stack.

- `TcpProxy`: a loopback TCP forwarder a test can cut (every live connection reset, new ones
  refused) and restore; optionally throttled, so a client cannot prefetch everything before a cut.
- `PrivateKafka`: a Kafka broker of the test's own, advertised through a `TcpProxy`, so cutting
  the proxy cuts every connection a client has (the shared broker advertises its own port).
- `wait_until`: a condition with a deadline, the only way these tests wait.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from sml_assets.resources.database import MetricsDatabase
from sml_assets_tests.conftest import REPO_ROOT, stack_data_dir

T = TypeVar("T")
JAVA_17 = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"


SUBPROCESS_ENV = {**os.environ, "DAGSTER_HOME": "", "PYTHONPATH": str(REPO_ROOT)}
"""Runs in child processes use an ephemeral Dagster instance and this checkout's code."""

METRICS_RUN_SCRIPT = """
import sys
from dagster import materialize
from sml_assets import ingest
from sml_assets.assets.metrics import server_metrics
from sml_assets.resources.database import MetricsDatabase
from sml_assets.resources.kafka import KafkaResource
bootstrap, topic, url, table, consumer, chunk, send_batch = sys.argv[1:8]
if send_batch:
    ingest.SEND_BATCH = int(send_batch)
materialize(
    [server_metrics],
    resources={"kafka": KafkaResource(bootstrap_servers=bootstrap, metrics_topic=topic),
               "metrics_db": MetricsDatabase(url=url, table=table)},
    run_config={"ops": {"server_metrics": {"config": {"chunk_size": int(chunk), "consumer_name": consumer}}}},
)
"""


def start_metrics_run(
    bootstrap: str,
    topic: str,
    database: MetricsDatabase,
    consumer: str,
    chunk_size: int,
    send_batch: int | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """A `server_metrics` materialization in a child process, there to be killed or raced;
    `send_batch` replaces `ingest.SEND_BATCH` there (the messages per COPY write on PostgreSQL)."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            METRICS_RUN_SCRIPT,
            bootstrap,
            topic,
            database.url,
            database.table,
            consumer,
            str(chunk_size),
            "" if send_batch is None else str(send_batch),
        ],
        env=SUBPROCESS_ENV,
        **popen,
    )


@functools.cache
def devstack_module(stem: str) -> ModuleType:
    """devstack/<stem>.py, loaded by path as `sml_devstack_<stem>`: as plain `kafka` or `hdfs` it
    would hide kafka-python's or the `hdfs` package; its own `from common import ...` still works."""
    devstack = str(REPO_ROOT / "devstack")
    spec = importlib.util.spec_from_file_location(f"sml_devstack_{stem}", Path(devstack) / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    sys.path.append(devstack)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(devstack)
    return module


def devstack_kafka() -> ModuleType:
    return devstack_module("kafka")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g}s")
        time.sleep(poll_s)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpProxy:
    """Forward 127.0.0.1:<port> to `target`; `cut()` plays the service going away, `restore()` its return.

    While cut, the listening socket is closed (clients get 'connection refused') and every
    forwarded connection is reset. `bytes_per_s` throttles the service-to-client direction.
    """

    def __init__(self, target_port: int, port: int | None = None, bytes_per_s: float | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.bytes_per_s = bytes_per_s
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self.restore()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Listen again on the same port: the service is back."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _reset(listener)
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _reset(sock)

    def close(self) -> None:
        self._closed = True
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _reset(client)
                    _reset(upstream)
                    return
                self._sockets.update((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.bytes_per_s), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, bytes_per_s: float | None) -> None:
        chunk = 65536 if bytes_per_s is None else max(512, int(bytes_per_s / 20))
        try:
            while True:
                readable, _, _ = select.select([source], [], [], 1.0)
                if not readable:
                    if source.fileno() < 0:
                        return
                    continue
                data = source.recv(chunk)
                if not data:
                    break
                sink.sendall(data)
                if bytes_per_s is not None:
                    time.sleep(len(data) / bytes_per_s)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (source, sink):
                _reset(sock)
            with self._lock:
                self._sockets.difference_update((source, sink))


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class PrivateKafka:
    """A one-node KRaft broker in `root`, reachable only through `proxy` (its advertised listener).

    It uses the jars devstack fetched; starting it costs a few seconds and about 512 MB of heap.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broker_port = free_port()
        self.controller_port = free_port()
        self.proxy = TcpProxy(self.broker_port)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "broker.log"

    @property
    def bootstrap(self) -> str:
        return self.proxy.address

    def start(self) -> None:
        config = self._config()
        data = self.root / "data"
        if not (data / "meta.properties").exists():
            cluster = devstack_kafka().new_cluster_id()
            formatted = subprocess.run(
                [
                    *self._java("256m"),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster,
                    "-c",
                    str(config),
                    "--standalone",
                    *self._format_args(),
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert formatted.returncode == 0, formatted.stdout + formatted.stderr
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*self._java("512m"), "kafka.Kafka", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: self._port_open() or self.process.poll() is not None, 120, "private broker port")
        assert self.process.poll() is None, f"private broker exited; see {self.log}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.proxy.close()

    def _port_open(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", self.broker_port)) == 0

    def _java(self, heap: str) -> list[str]:
        java = os.environ.get("JAVA_HOME", "")
        binary = str(Path(java, "bin", "java")) if java else (JAVA_17 if Path(JAVA_17).exists() else "java")
        classpath = str(stack_data_dir() / "jars" / "kafka" / "*")
        log4j = REPO_ROOT / "devstack" / "kafka" / "log4j2.properties"
        return [
            binary,
            f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.root / 'logs'}",
            "-cp",
            classpath,
        ]

    def _format_args(self) -> list[str]:
        """Extra `kafka-storage format` arguments (SCRAM users, for a secured broker)."""
        return []

    def _listener(self) -> Any:
        """A `devstack/kafka.py` SaslListener beside PLAINTEXT, or None."""
        return None

    def _config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "server.properties"
        config.write_text(
            devstack_kafka().server_properties(
                self.root / "data",
                self.broker_port,
                self.controller_port,
                self.proxy.address,
                self._listener(),
            )
        )
        return config


def recreate_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0) -> str:
    """Delete `topic` and create it again (the routine fix for a wrong partition count); returns the
    new topic id. Waits for the deletion, then for the new topic to be described, on the broker."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def described_id() -> str | None:
        try:
            futures = admin.describe_topics(TopicCollection([topic]), request_timeout=5)
            return str(futures[topic].result(timeout=10).topic_id)
        except KafkaException:
            return None

    old_id = described_id()
    admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=timeout_s)
    wait_until(lambda: described_id() is None, timeout_s, f"topic {topic} deleted", poll_s=0.2)

    def created() -> bool:
        try:
            futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            futures[topic].result(timeout=30)
            return True
        except KafkaException as error:
            if "already exists" in str(error) or "marked for deletion" in str(error):
                return False
            raise

    wait_until(created, timeout_s, f"topic {topic} created again", poll_s=0.2)
    new_id = wait_until(described_id, timeout_s, f"topic {topic} described after creation", poll_s=0.2)
    assert new_id != old_id, f"{topic} kept its topic id {old_id} across delete and create"
    return new_id


def printed_command(message: str, subcommand: str) -> list[str]:
    """The `python -m sml_assets.replay <subcommand> ...` command at the end of an sml message,
    as argv for this interpreter (the printed `python` is whichever the user runs sml with)."""
    import re
    import shlex

    found = re.search(rf"run: (python -m sml_assets\.replay {subcommand}\b[^\n]*)", message)
    assert found, f"no printed '{subcommand}' command in: {message}"
    words = shlex.split(found[1])
    return [sys.executable, *words[1:]]


def run_command(
    argv: list[str], env: dict[str, str], answer: str | None = None, timeout_s: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Run a command line as a user would from the repository root; with `answer`, stdin is a
    terminal that types it (for commands that ask for confirmation)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    if answer is None:
        return subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    import pty

    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=full_env,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(terminal)
        terminal = -1
        os.write(controller, f"{answer}\n".encode())
        stdout, stderr = process.communicate(timeout=timeout_s)
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)


@contextmanager
def running(nodes: Any, what: str) -> Iterator[Any]:
    """Start a private devstack cluster (anything with start() and stop(kill=)), say how long it
    took, and kill it afterwards even when the test failed."""
    started = time.monotonic()
    try:
        nodes.start()
        print(f"{what} up in {time.monotonic() - started:.1f}s")
        yield nodes
    finally:
        nodes.stop(kill=True)
