"""Secured services of the tests' own, built with the stack's code (devstack/tls.py, kafka.py):
a CA per test session, a Kafka broker with a SASL_SSL listener and SCRAM users, and an HTTPS-only
HDFS (devstack/hdfs.py), on free ports.

The shared broker is never restarted; these run beside it and are stopped by their fixtures.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import ModuleType
from typing import Any

from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.faults import PrivateKafka, devstack_kafka, devstack_module, free_port

SCRAM_USER = "sml-test"


def devstack_tls() -> ModuleType:
    """devstack/tls.py, loaded by path like `devstack_kafka` (its CLI is stdlib only)."""
    return devstack_module("tls")


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


class SecuredHdfs:
    """A NameNode and a DataNode of the test's own in `root`, started by devstack/hdfs.py's `start`
    on free ports with dfs.http.policy=HTTPS_ONLY: WebHDFS and the DataNode's redirects are HTTPS,
    with a certificate for 127.0.0.1/localhost from `ca`; the plain HTTP ports stay closed."""

    def __init__(self, root: Path, ca: Any) -> None:
        stack = devstack_module("hdfs")
        server = devstack_tls().issue(ca, root / "tls", "hdfs")
        password = "pw-" + secrets.token_hex(8)
        keystore, truststore = stack.https_material(root / "tls", ca, server, password)
        https = stack.Https(free_port(), free_port(), keystore, truststore, password, ca.certificate)
        self.cluster = stack.Cluster(
            root / "hdfs",
            rpc_port=free_port(),
            http_port=free_port(),
            dn_data_port=free_port(),
            dn_http_port=free_port(),
            dn_ipc_port=free_port(),
            https=https,
        )
        self.ca = ca

    @property
    def url(self) -> str:
        return f"https://localhost:{self.cluster.https.port}"

    def start(self) -> None:
        stack = devstack_module("hdfs")
        stack.start(self.cluster, stack.fetch_jars(stack.NAME, "hadoop.xml"))

    def stop(self) -> None:
        devstack_module("hdfs").stop(self.cluster)
