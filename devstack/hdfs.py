"""Local HDFS: a real NameNode and a real DataNode, two JVM daemons bound to 127.0.0.1.

The jars are Apache Hadoop's own (`devstack/poms/hadoop.xml`, from Maven Central) and the daemons are
started with their ordinary main classes, so clients meet the same RPC, WebHDFS and DataNode
redirects as on a cluster. `hadoop-client-minicluster` (one JVM) was the fallback and is not needed:
both daemons run on Java 17 once the `--add-opens` below are given.

Ports: NameNode RPC 9000, NameNode HTTP / WebHDFS 9870, DataNode data 9866, HTTP 9864, IPC 9867.
The DataNode registers as 127.0.0.1, so WebHDFS redirects (CREATE, OPEN, APPEND) resolve on this
machine. Permissions are off and replication is 1: a development store, not a secure one.

Imported as a plain module with `devstack/` on sys.path (`import hdfs`), like `common`. In a Python
that has the PyPI package `hdfs` installed, that path entry shadows it, so run the stack through
`devstack/stack.py` in its own process rather than importing it into the project's venv.
"""

from __future__ import annotations

import getpass
import json
import shutil
import string
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from common import Daemon, StackError, fetch_jars, java_bin, port_open, say, stack_dir

NAME = "hdfs"

RPC_PORT = 9000
HTTP_PORT = 9870
DN_DATA_PORT = 9866
DN_HTTP_PORT = 9864
DN_IPC_PORT = 9867
WEBHDFS_URL = f"http://127.0.0.1:{HTTP_PORT}"

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

NAMENODE = Daemon(NAME, "namenode")
DATANODE = Daemon(NAME, "datanode")
NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"


def up() -> None:
    """Fetch, configure, format once, start NameNode then DataNode; return when HDFS takes writes."""
    jars = fetch_jars(NAME, "hadoop.xml")
    conf = _write_conf()
    if not NAMENODE.running():
        _check_ports_free("namenode", (RPC_PORT, HTTP_PORT))
        if not _formatted():
            _format(jars, conf)
        NAMENODE.start(_java(jars, conf, "namenode", NAMENODE_CLASS))
        say(NAME, f"namenode starting (log {NAMENODE.logfile})")
    _wait(NAMENODE, lambda: _fs_state() is not None, f"the NameNode did not answer on {WEBHDFS_URL}")
    if not DATANODE.running():
        _check_ports_free("datanode", (DN_DATA_PORT, DN_HTTP_PORT, DN_IPC_PORT))
        DATANODE.start(_java(jars, conf, "datanode", DATANODE_CLASS))
        say(NAME, f"datanode starting (log {DATANODE.logfile})")
    _wait(DATANODE, _datanode_live, "no live DataNode with free space registered with the NameNode")
    _wait(NAMENODE, _out_of_safe_mode, "the NameNode stayed in safe mode")
    _wait(NAMENODE, _webhdfs_answers, f"WebHDFS did not list / on {WEBHDFS_URL}")
    say(NAME, status()[1])


def down() -> None:
    """Stop the DataNode first so the NameNode does not log it as lost; data stays on disk."""
    for daemon in (DATANODE, NAMENODE):
        if daemon.running():
            daemon.stop()
            say(NAME, f"{daemon.name} stopped")


def status() -> tuple[bool, str]:
    """Up means both daemons run, WebHDFS answers, safe mode is off and a DataNode is live."""
    nn, dn = NAMENODE.pid(), DATANODE.pid()
    if nn is None and dn is None:
        return False, "stopped"
    parts = [
        f"namenode pid {nn}" if nn else "namenode stopped",
        f"datanode pid {dn}" if dn else "datanode stopped",
    ]
    state = _fs_state()
    if state is None:
        return False, ", ".join(parts + [f"webhdfs {WEBHDFS_URL} not answering"])
    live = int(state.get("NumLiveDataNodes", 0))
    safe_mode = state.get("FSState") != "Operational"
    parts += [f"webhdfs {WEBHDFS_URL}", f"{live} live datanode{'' if live == 1 else 's'}"]
    if safe_mode:
        parts.append("in safe mode")
    return bool(nn and dn and live >= 1 and not safe_mode), ", ".join(parts)


def _write_conf() -> Path:
    """Render devstack/hadoop/* into the stack dir; the folder goes first on the classpath."""
    conf = stack_dir(NAME) / "conf"
    conf.mkdir(exist_ok=True)
    values = {
        "state_dir": str(stack_dir(NAME)),
        "user": getpass.getuser(),
        "rpc_port": RPC_PORT,
        "http_port": HTTP_PORT,
        "dn_data_port": DN_DATA_PORT,
        "dn_http_port": DN_HTTP_PORT,
        "dn_ipc_port": DN_IPC_PORT,
    }
    for template in ("core-site.xml", "hdfs-site.xml", "log4j.properties"):
        text = string.Template((TEMPLATES / template).read_text()).substitute(values)
        (conf / template).write_text(text)
    return conf


def _java(jars: Path, conf: Path, role: str, main_class: str, *args: str) -> list[str]:
    """The daemon's JVM command; Jetty unpacks into a scratch dir of its own that each start empties."""
    opens = [f"--add-opens={module}=ALL-UNNAMED" for module in ADD_OPENS]
    scratch = stack_dir(NAME) / "tmp" / role
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return [
        java_bin(),
        f"-Dproc_{role}",
        "-Xmx512m",
        "-Djava.net.preferIPv4Stack=true",
        f"-Djava.io.tmpdir={scratch}",
        f"-Dhadoop.log.dir={stack_dir(NAME)}",
        f"-Dhadoop.home.dir={stack_dir(NAME)}",
        *opens,
        "-cp",
        f"{conf}:{jars}/*",
        main_class,
        *args,
    ]


def _format_marker() -> Path:
    return stack_dir(NAME) / "namenode.formatted"


def _formatted() -> bool:
    return _format_marker().exists() and (stack_dir(NAME) / "name" / "current" / "VERSION").exists()


def _format(jars: Path, conf: Path) -> None:
    """Format a new namespace; old DataNode blocks belong to another cluster id, so they go too."""
    for leftover in ("name", "data"):
        shutil.rmtree(stack_dir(NAME) / leftover, ignore_errors=True)
    log = stack_dir(NAME) / "namenode-format.log"
    say(NAME, "formatting the NameNode (first start)")
    cmd = _java(jars, conf, "namenode", NAMENODE_CLASS, "-format", "-nonInteractive", "-force")
    with open(log, "wb") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc != 0:
        raise StackError(NAME, f"formatting the NameNode failed (exit {rc})", log)
    _format_marker().write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))


def _check_ports_free(role: str, ports: tuple[int, ...]) -> None:
    taken = [port for port in ports if port_open(port)]
    if taken:
        raise StackError(
            NAME,
            f"cannot start the {role}: 127.0.0.1 port(s) {', '.join(map(str, taken))} already in use "
            "by a process this stack did not start; stop it (see `ss -ltnp`) and retry",
        )


def _wait(daemon: Daemon, check: Callable[[], bool], what: str) -> None:
    """Poll until `check` holds; fail at once if a daemon dies, else at the deadline."""
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        for started in (NAMENODE, daemon):
            if not started.running():
                raise StackError(NAME, f"the {started.name} exited during start-up", started.logfile)
        if time.monotonic() >= deadline:
            raise StackError(NAME, f"{what} within {START_TIMEOUT:.0f} s ({daemon.name})", daemon.logfile)
        time.sleep(0.5)


def _get_json(path: str) -> dict | None:
    """GET a NameNode HTTP path as JSON, bypassing any proxy; None if it does not answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{WEBHDFS_URL}{path}", timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def _fs_state() -> dict | None:
    """The NameNode's FSNamesystemState JMX bean; None until the namespace is loaded."""
    beans = (_get_json("/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState") or {}).get("beans")
    return beans[0] if beans else None


def _webhdfs_answers() -> bool:
    return _get_json("/webhdfs/v1/?op=GETFILESTATUS") is not None


def _datanode_live() -> bool:
    state = _fs_state() or {}
    return int(state.get("NumLiveDataNodes", 0)) >= 1 and int(state.get("CapacityRemaining", 0)) > 0


def _out_of_safe_mode() -> bool:
    state = _fs_state() or {}
    return state.get("FSState") == "Operational"
