"""Shared plumbing for the local stack: paths, Maven fetches, daemons with pid files, waiting.

Standard library only, so the stack comes up before the project's venv exists.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
POMS_DIR = Path(__file__).resolve().parent / "poms"


def data_dir() -> Path:
    """SML_DATA_DIR, created on demand, by the rule of `sml_assets.settings.data_dir` (which this
    stdlib-only code cannot import): relative values and the default `.sml-data` are under the repo."""
    path = Path(os.environ.get("SML_DATA_DIR") or ".sml-data")
    path = (path if path.is_absolute() else REPO_ROOT / path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def stack_dir(service: str) -> Path:
    """Data and logs of one service; removed by `down --reset`."""
    path = data_dir() / "stack" / service
    path.mkdir(parents=True, exist_ok=True)
    return path


def jars_dir(component: str) -> Path:
    """Downloaded jars of one component; kept across `--reset`."""
    return data_dir() / "jars" / component


class StackError(RuntimeError):
    """A service failed; the message names it and carries its last log lines."""

    def __init__(self, service: str, what: str, log: Path | None = None) -> None:
        text = f"[{service}] {what}"
        if log is not None and log.exists():
            text += f"\n--- last lines of {log} ---\n{tail(log)}"
        super().__init__(text)
        self.service = service


def say(service: str, message: str) -> None:
    print(f"[{service}] {message}", flush=True)


def tail(path: Path, lines: int = 30) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        data = handle.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:])


def java_bin() -> str:
    """Java 17 (the JDK Kafka, Hadoop and Spark all support); JAVA_HOME wins if set."""
    home = os.environ.get("JAVA_HOME")
    candidates = [Path(home) / "bin" / "java"] if home else []
    candidates += [Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise StackError("java", "no java found: install a JDK 17 or set JAVA_HOME")
    return found


def fetch_jars(component: str, pom_name: str) -> Path:
    """Copy a pom's runtime dependencies from Maven Central into jars/<component>, once."""
    target = jars_dir(component)
    marker = target / ".complete"
    pom = POMS_DIR / pom_name
    if marker.exists() and marker.read_text() == pom.read_text():
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(component, "mvn (Apache Maven) is not installed: apt-get install maven")
    say(component, f"fetching jars from Maven Central ({pom_name}) into {target}")
    log = target.parent / f"{component}-mvn.log"
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
        "-DincludeScope=runtime",
    ]
    with open(log, "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise StackError(component, f"mvn could not fetch the jars (exit {rc})", log)
    marker.write_text(pom.read_text())
    return target


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check, timeout: float, interval: float = 0.5) -> bool:
    """Poll `check` until it returns truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass(frozen=True)
class Daemon:
    """A background process with a pid file and a log file under the service's stack dir, or under
    `folder` for a private instance (a test's own HDFS) that must not touch the shared stack's files."""

    service: str
    name: str
    folder: Path | None = None

    @property
    def pidfile(self) -> Path:
        return (self.folder or stack_dir(self.service)) / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return (self.folder or stack_dir(self.service)) / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        if _is_zombie(pid):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def kill(self) -> None:
        """SIGKILL the process group, as a crash would, and wait until it is gone."""
        pid = self.pid()
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), 30, 0.05)
        self.pidfile.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        _signal_group(pid, signal.SIGTERM)
        if not wait_until(lambda: not _alive(pid), timeout, 0.2):
            _signal_group(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), 10, 0.2)
        self.pidfile.unlink(missing_ok=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if _is_zombie(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def fail(error: StackError) -> None:
    print(str(error), file=sys.stderr, flush=True)
    sys.exit(1)
