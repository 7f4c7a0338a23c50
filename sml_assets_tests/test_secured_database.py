"""PostgreSQL over TLS: a private cluster started by devstack/postgres.py's own code with a
certificate from a CA made by devstack/tls.py. sml's database resource connects with
`sslmode=verify-full` (the server proven by its certificate and name), and a client trusting
another CA is refused with an error naming SML_METRICS_DB_URL's `sslrootcert`.

The shared cluster on 55432 is never restarted; this one has its own port and folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import text

from sml_assets.resources.database import DatabaseUnavailableError, MetricsDatabase
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import free_port
from sml_assets_tests.secured import devstack_tls

pytestmark = pytest.mark.integration

PASSWORD = "pg-tls-S3cret-0815"


def devstack_postgres() -> ModuleType:
    """devstack/postgres.py by path, with devstack/ importable for its `common` and `tls`."""
    devstack = str(REPO_ROOT / "devstack")
    spec = importlib.util.spec_from_file_location("sml_devstack_postgres", Path(devstack) / "postgres.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.append(devstack)
    try:
        spec.loader.exec_module(module)
        sys.modules.setdefault("tls", devstack_tls())  # for its lazy `import tls`
    finally:
        sys.path.remove(devstack)
    return module


@dataclass
class TlsCluster:
    port: int
    ca: Path

    def url(self, sslmode: str = "verify-full", ca: Path | None = None) -> str:
        return (
            f"postgresql+psycopg://sml:{PASSWORD}@localhost:{self.port}/postgres"
            f"?sslmode={sslmode}&sslrootcert={ca or self.ca}"
        )


@pytest.fixture(scope="module")
def tls_postgres(stack: None) -> Iterator[TlsCluster]:
    postgres = devstack_postgres()
    bindir = postgres._bindir()
    assert bindir is not None, "PostgreSQL is not installed: the stack fixture installs it"
    # Under /tmp rather than pytest's tmp (mode 700, root's): the server runs as `postgres`.
    home = Path(tempfile.mkdtemp(prefix="sml-pg-tls-"))
    os.chmod(home, 0o755)
    owner = postgres._owner()
    if owner:
        account = pwd.getpwnam(owner)
        os.chown(home, account.pw_uid, account.pw_gid)
    datadir, port = home / "data", free_port()
    started = False
    try:
        ca = devstack_tls().ensure_ca(home / "ca")
        postgres.initdb(bindir, datadir)
        postgres.start(
            bindir, datadir, home, port, home / "postgres.log", postgres.server_certificate(home, ca_folder=home / "ca")
        )
        started = True
        postgres._run(
            [
                str(bindir / "psql"),
                "-h",
                str(home),
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                f"CREATE ROLE sml LOGIN SUPERUSER PASSWORD '{PASSWORD}'",
            ]
        )
        yield TlsCluster(port=port, ca=ca.certificate)
    finally:
        if started:
            postgres.stop(bindir, datadir)
        shutil.rmtree(home, ignore_errors=True)


def test_sml_connects_with_verify_full_and_the_session_is_encrypted(tls_postgres: TlsCluster) -> None:
    database = MetricsDatabase(url=tls_postgres.url(), table="tls_metrics")
    try:
        database.ensure_tables()
        with database.engine().connect() as connection:
            encrypted = connection.execute(
                text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).one()
            tables = connection.execute(text("SELECT count(*) FROM pg_tables WHERE tablename = 'tls_metrics'")).scalar()
        assert encrypted.ssl is True and encrypted.version.startswith("TLSv1.")
        assert tables == 1
    finally:
        database.engine().dispose()


def test_a_client_trusting_another_ca_is_refused_naming_sslrootcert_and_hiding_the_password(
    tls_postgres: TlsCluster, tmp_path: Path
) -> None:
    other = devstack_tls().ensure_ca(tmp_path / "other-ca", subject="/CN=somebody else's CA")
    database = MetricsDatabase(url=tls_postgres.url(ca=other.certificate), connect_timeout_s=5)
    with pytest.raises(DatabaseUnavailableError) as raised:
        database.ensure_tables()
    message = str(raised.value)
    assert "certificate verify failed" in message
    assert f"sslrootcert={other.certificate}" in message and "SML_METRICS_DB_URL" in message
    assert PASSWORD not in message and "sml:***@" in message
    database.engine().dispose()
