"""The local stack's own certificate authority, made with `openssl`: one CA, certificates it signs.

Kafka's SASL_SSL listener, PostgreSQL's `ssl=on` and an HTTPS WebHDFS present certificates from this
CA, so a client that trusts `ca.pem` (SML_KAFKA_SSL_CA_LOCATION, `sslrootcert=`, SML_HDFS_CA_LOCATION)
verifies the server and its name (127.0.0.1 and localhost). Keys are unencrypted PKCS#8 PEM readable
only by their owner: a development CA, never one to trust outside this machine.

    python3 devstack/tls.py [FOLDER]    # make (once) the stack's CA and print where it is
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NAME = "tls"
DAYS = 825
LOOPBACK_NAMES = ("DNS:localhost", "IP:127.0.0.1")


class TlsError(RuntimeError):
    """openssl is missing or refused a step; the message carries its output."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM files; `bundle` holds the key then the chain
    (the form Kafka's file-based PEM keystore reads)."""

    certificate: Path
    key: Path
    bundle: Path


def ensure_ca(folder: Path, subject: str = "/CN=sml local stack CA") -> KeyPair:
    """The CA in `folder` (made on the first call, reused after): `ca.pem` is what clients trust."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = KeyPair(folder / "ca.pem", folder / "ca.key", folder / "ca.pem")
    if ca.certificate.exists() and ca.key.exists():
        return ca
    _private_key(ca.key)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca.key),
        "-sha256",
        "-days",
        str(DAYS),
        "-subj",
        subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        str(ca.certificate),
    )
    return ca


def issue(
    ca: KeyPair, folder: Path, name: str, names: tuple[str, ...] = LOOPBACK_NAMES, client: bool = False
) -> KeyPair:
    """A certificate for `name` signed by `ca`, valid for `names` (made once, then reused).

    `client=True` makes a client certificate (mTLS) instead of a server one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}-bundle.pem")
    if pair.certificate.exists() and pair.key.exists() and pair.bundle.exists():
        return pair
    _private_key(pair.key)
    request = folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    usage = "clientAuth" if client else "serverAuth"
    extensions.write_text(
        f"subjectAltName={','.join(names)}\nextendedKeyUsage={usage}\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n"
    )
    _openssl("req", "-new", "-key", str(pair.key), "-subj", f"/CN={name}", "-out", str(request))
    _openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca.certificate),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-days",
        str(DAYS),
        "-sha256",
        "-extfile",
        str(extensions),
        "-out",
        str(pair.certificate),
    )
    request.unlink()
    extensions.unlink()
    pair.bundle.write_text(pair.key.read_text() + pair.certificate.read_text() + ca.certificate.read_text())
    os.chmod(pair.bundle, 0o600)
    return pair


def pkcs12(pair: KeyPair, ca: KeyPair, path: Path, password: str) -> Path:
    """`pair`'s key and certificate with `ca` as chain in a PKCS12 keystore at `path` (made once),
    the form Java servers (Hadoop's Jetty) read; OpenSSL 3's default PBES2/AES suits Java 17."""
    if not path.exists():
        _openssl(
            "pkcs12",
            "-export",
            "-in",
            str(pair.certificate),
            "-inkey",
            str(pair.key),
            "-certfile",
            str(ca.certificate),
            "-name",
            "server",
            "-passout",
            f"pass:{password}",
            "-out",
            str(path),
        )
        os.chmod(path, 0o600)
    return path


def _private_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    os.chmod(path, 0o600)


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise TlsError("openssl is not installed: apt-get install openssl")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed:\n{result.stdout}{result.stderr}")


def stack_ca() -> KeyPair:
    """The stack's CA under SML_DATA_DIR/stack/tls (what `make stack-up` uses)."""
    from common import stack_dir

    return ensure_ca(stack_dir(NAME))


if __name__ == "__main__":
    found = ensure_ca(Path(sys.argv[1])) if len(sys.argv) > 1 else stack_ca()
    print(found.certificate)
