"""Secured services of the tests' own, built with the stack's code (devstack/tls.py, kafka.py):
a CA per test session, a Kafka broker with a SASL_SSL listener and SCRAM users, on free ports.

The shared broker is never restarted; these run beside it and are stopped by their fixtures.
"""

from __future__ import annotations

import importlib.util
import secrets
import socket
import ssl
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import PrivateKafka, devstack_kafka, free_port

SCRAM_USER = "sml-test"


def devstack_tls() -> ModuleType:
    """devstack/tls.py, loaded by path like `devstack_kafka` (its CLI is stdlib only)."""
    devstack = str(REPO_ROOT / "devstack")
    spec = importlib.util.spec_from_file_location("sml_devstack_tls", Path(devstack) / "tls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    sys.path.append(devstack)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(devstack)
    return module


class SecuredKafka(PrivateKafka):
    """A private broker with PLAINTEXT (through the proxy, for setting up topics) and SASL_SSL
    on `sasl_port`, whose certificate comes from `ca`; one SCRAM user with a random password."""

    def __init__(self, root: Path, ca: Any, client_auth: str = "requested") -> None:
        super().__init__(root)
        self.client_auth = client_auth
        self.sasl_port = free_port()
        self.ca = ca
        self.user = SCRAM_USER
        self.password = "pw-" + secrets.token_hex(12)
        self.certificate = devstack_tls().issue(ca, root / "tls", "broker")

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def resource(self, **fields: Any) -> KafkaResource:
        """A KafkaResource that logs in over SASL_SSL with SCRAM-SHA-512, trusting the test CA."""
        settings: dict[str, Any] = {
            "bootstrap_servers": self.sasl_bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": self.user,
            "sasl_password": self.password,
            "ssl_ca_location": str(self.ca.certificate),
            "timeout_s": 10.0,
        }
        return KafkaResource(**{**settings, **fields})

    def environment(self) -> dict[str, str]:
        """The same settings as environment variables, as a deployment would set them."""
        return {
            "SML_KAFKA_BOOTSTRAP_SERVERS": self.sasl_bootstrap,
            "SML_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SML_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "SML_KAFKA_SASL_USERNAME": self.user,
            "SML_KAFKA_SASL_PASSWORD": self.password,
            "SML_KAFKA_SSL_CA_LOCATION": str(self.ca.certificate),
        }

    def _format_args(self) -> list[str]:
        return devstack_kafka().scram_format_args(self.user, self.password)

    def _listener(self) -> Any:
        return devstack_kafka().SaslListener(
            port=self.sasl_port,
            keystore=self.certificate.bundle,
            truststore=self.ca.certificate,
            client_auth=self.client_auth,
        )


class TlsProxy:
    """Terminate TLS on 127.0.0.1:<port> with `certificate` and forward the plaintext to `target_port`:
    an HTTPS front of a real plaintext service (WebHDFS here), as a TLS-terminating balancer is."""

    def __init__(self, target_port: int, certificate: Any) -> None:
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(certificate.certificate), str(certificate.key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        """Counted before the handshake starts, so a client that saw the server's certificate was counted."""
        self.tls_sessions = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        self.tls_sessions += 1
        with client, socket.create_connection(("127.0.0.1", self.target_port), timeout=30) as upstream:
            done = threading.Event()

            def pump(source: socket.socket, sink: socket.socket) -> None:
                try:
                    while data := source.recv(65536):
                        sink.sendall(data)
                except OSError:
                    pass
                done.set()

            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
            pump(client, upstream)
            done.wait(30)
