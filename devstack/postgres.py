"""PostgreSQL from Debian's packages, as a cluster owned by the stack (own data dir, port 55432).

Installed with apt-get when absent (without Debian's default cluster); run as the `postgres` user
because the server refuses to run as root. The server speaks TLS (`ssl=on`) with a certificate from
the stack's CA (devstack/tls.py) from the start after this was added, so a client can connect with
`sslmode=verify-full&sslrootcert=<SML_DATA_DIR>/stack/tls/ca.pem`; plain connections stay allowed
on loopback for development.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from common import StackError, port_open, say, stack_dir, wait_until

NAME = "postgres"
PORT = 55432
DATABASE = "sml"
ROLE = "sml"
PASSWORD = "sml"  # local development cluster only; production URLs come from SML_METRICS_DB_URL


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _install() -> Path:
    if os.geteuid() != 0:
        raise StackError(NAME, "PostgreSQL is not installed and this is not root: apt-get install postgresql")
    say(NAME, "installing PostgreSQL from Debian packages")
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise StackError(NAME, f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    bindir = _bindir()
    if bindir is None:
        raise StackError(NAME, "apt-get installed postgresql but no initdb was found")
    return bindir


def _owner() -> str | None:
    """The account the server runs as: `postgres` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def _run(cmd: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    owner = _owner()
    full = ["runuser", "-u", owner, "--", *cmd] if owner else cmd
    result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd="/")
    if check and result.returncode != 0:
        raise StackError(NAME, f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}", _logfile())
    return result


def _home() -> Path:
    """The cluster's folder: under the data dir, unless the `postgres` account cannot reach it
    (a checkout below /root, say); then a folder of its own in that account's home."""
    preferred = stack_dir(NAME)
    owner = _owner()
    if owner is None or _reachable(owner, preferred.parent):
        return preferred
    digest = hashlib.sha1(str(preferred).encode()).hexdigest()[:10]
    return Path(pwd.getpwnam(owner).pw_dir) / f"sml-stack-{digest}"


def _reachable(owner: str, path: Path) -> bool:
    return subprocess.run(["runuser", "-u", owner, "--", "test", "-x", str(path)]).returncode == 0


def _datadir() -> Path:
    return _home() / "data"


def _logfile() -> Path:
    return _home() / "run" / "postgres.log"


def _prepare_dirs() -> None:
    """Create the cluster's folders (only `up` does; `status` must leave no trace)."""
    run = _home() / "run"
    run.mkdir(parents=True, exist_ok=True)
    owner = _owner()
    if owner:
        account = pwd.getpwnam(owner)
        for path in (_home(), run):
            os.chown(path, account.pw_uid, account.pw_gid)
        if not _reachable(owner, run):
            raise StackError(NAME, f"user {owner} cannot reach {run}: a parent folder is not traversable")


def _psql(bindir: Path, sql: str, database: str = "postgres") -> str:
    result = _run(
        [
            str(bindir / "psql"),
            "-h",
            str(_home() / "run"),
            "-p",
            str(PORT),
            "-U",
            "postgres",
            "-d",
            database,
            "-tAc",
            sql,
        ]
    )
    return result.stdout.strip()


def initdb(bindir: Path, datadir: Path) -> None:
    """A new cluster whose superuser `postgres` logs in locally without a password, over TCP with SCRAM."""
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ]
    )


def server_certificate(home: Path, ca_folder: Path | None = None) -> tuple[Path, Path]:
    """Certificate and key for 127.0.0.1/localhost from the CA in `ca_folder` (default: the stack's),
    copied into `home/tls` and owned by the server's account, which PostgreSQL insists on."""
    import tls

    try:
        ca = tls.ensure_ca(ca_folder) if ca_folder is not None else tls.stack_ca()
        pair = tls.issue(ca, home / "tls", "postgres")
    except tls.TlsError as error:
        raise StackError(NAME, f"making the server certificate failed: {error}") from None
    owner = _owner()
    if owner:
        account = pwd.getpwnam(owner)
        for path in (home / "tls", pair.certificate, pair.key):
            os.chown(path, account.pw_uid, account.pw_gid)
    return pair.certificate, pair.key


def start(
    bindir: Path, datadir: Path, socket_dir: Path, port: int, log: Path, certificate: tuple[Path, Path] | None = None
) -> None:
    """Start the cluster on 127.0.0.1:`port`, with TLS when `certificate` (cert, key) is given."""
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1"
    if certificate is not None:
        options += f" -c ssl=on -c ssl_cert_file={certificate[0]} -c ssl_key_file={certificate[1]}"
    result = _run(
        [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
        check=False,
    )
    if result.returncode != 0:
        raise StackError(NAME, f"pg_ctl start failed: {result.stdout}{result.stderr}", log)


def stop(bindir: Path, datadir: Path) -> None:
    _run([str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "-t", "60", "stop"])


def up() -> None:
    bindir = _bindir() or _install()
    _prepare_dirs()
    if not (_datadir() / "PG_VERSION").exists():
        say(NAME, f"initialising a cluster in {_datadir()}")
        initdb(bindir, _datadir())
    if not _server_running(bindir):
        if port_open(PORT):
            raise StackError(NAME, f"port {PORT} is taken by a process this stack did not start")
        say(NAME, f"starting on 127.0.0.1:{PORT} (TLS with a certificate from the stack's CA)")
        start(bindir, _datadir(), _home() / "run", PORT, _logfile(), server_certificate(_home()))
    if not wait_until(lambda: port_open(PORT), 30):
        raise StackError(NAME, f"the server does not answer on 127.0.0.1:{PORT}", _logfile())
    if _psql(bindir, f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'") != "1":
        _psql(bindir, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    if _psql(bindir, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
        _psql(bindir, f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    say(NAME, f"up: postgresql+psycopg://{ROLE}:***@127.0.0.1:{PORT}/{DATABASE}")


def _server_running(bindir: Path) -> bool:
    if not (_datadir() / "PG_VERSION").exists():
        return False
    return _run([str(bindir / "pg_ctl"), "-D", str(_datadir()), "status"], check=False).returncode == 0


def down() -> None:
    bindir = _bindir()
    if bindir is None or not _server_running(bindir):
        return
    say(NAME, "stopping")
    stop(bindir, _datadir())


def status() -> tuple[bool, str]:
    bindir = _bindir()
    if bindir is None:
        return False, "not installed (make stack-up installs it)"
    if not _server_running(bindir):
        return False, "stopped"
    if not port_open(PORT):
        return False, f"server running but 127.0.0.1:{PORT} does not answer"
    return True, f"127.0.0.1:{PORT}, database {DATABASE}, role {ROLE}, {bindir.parent.name}"


def reset() -> None:
    """Remove the cluster's files (the server must be down)."""
    shutil.rmtree(_home(), ignore_errors=True)
    shutil.rmtree(stack_dir(NAME), ignore_errors=True)
