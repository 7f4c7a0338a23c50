"""Kafka client security (DESIGN.md section 5): one set of settings, checked once, rendered for
librdkafka (consumer, producer, admin, the simulator) and for Spark's Java Kafka source.

Pure and free of Dagster, so the simulator's CLI shares it without importing Dagster. The password
is never part of a message, a repr or an error; broker errors are translated into the setting to fix.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROTOCOL_VARIABLE = "SML_KAFKA_SECURITY_PROTOCOL"
MECHANISM_VARIABLE = "SML_KAFKA_SASL_MECHANISM"
USERNAME_VARIABLE = "SML_KAFKA_SASL_USERNAME"
PASSWORD_VARIABLE = "SML_KAFKA_SASL_PASSWORD"
CA_VARIABLE = "SML_KAFKA_SSL_CA_LOCATION"
CERTIFICATE_VARIABLE = "SML_KAFKA_SSL_CERTIFICATE_LOCATION"
KEY_VARIABLE = "SML_KAFKA_SSL_KEY_LOCATION"
VARIABLES = {
    "security_protocol": PROTOCOL_VARIABLE,
    "sasl_mechanism": MECHANISM_VARIABLE,
    "sasl_username": USERNAME_VARIABLE,
    "sasl_password": PASSWORD_VARIABLE,
    "ssl_ca_location": CA_VARIABLE,
    "ssl_certificate_location": CERTIFICATE_VARIABLE,
    "ssl_key_location": KEY_VARIABLE,
}
"""`KafkaResource` field -> the environment variable that sets it."""
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
"""The SASL mechanisms sml supports, with the JAAS login module Java clients (Spark) need for each."""


class KafkaSettingsError(ValueError):
    """The security settings contradict each other or name a file that is not there."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client proves who it is and whom it talks to; PLAINTEXT (nothing) by default."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None

    @classmethod
    def from_environment(cls) -> KafkaSecurity:
        """The settings of the SML_KAFKA_* variables, for command-line tools outside Dagster."""
        env = {name: os.environ.get(variable) or None for name, variable in VARIABLES.items()}
        return cls(
            protocol=env["security_protocol"] or "PLAINTEXT",
            mechanism=env["sasl_mechanism"],
            username=env["sasl_username"],
            password=env["sasl_password"],
            ca_location=env["ssl_ca_location"],
            certificate_location=env["ssl_certificate_location"],
            key_location=env["ssl_key_location"],
        ).checked()

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.upper().startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.upper() in ("SSL", "SASL_SSL")

    def checked(self) -> KafkaSecurity:
        """Itself, once settings that could only fail later at the broker are refused by name."""
        protocol = self.protocol.upper()
        if protocol not in PROTOCOLS:
            raise KafkaSettingsError(
                f"{PROTOCOL_VARIABLE}={self.protocol} is not a Kafka security protocol: "
                f"use one of {', '.join(PROTOCOLS)}"
            )
        if self.uses_sasl:
            mechanism = (self.mechanism or "").upper()
            if mechanism not in LOGIN_MODULES:
                raise KafkaSettingsError(
                    f"{MECHANISM_VARIABLE}={self.mechanism or '(unset)'} with {PROTOCOL_VARIABLE}="
                    f"{protocol}: set it to one of {', '.join(LOGIN_MODULES)}"
                )
            missing = [
                variable
                for variable, value in ((USERNAME_VARIABLE, self.username), (PASSWORD_VARIABLE, self.password))
                if not value
            ]
            if missing:
                raise KafkaSettingsError(
                    f"{PROTOCOL_VARIABLE}={protocol} logs in with SASL {mechanism}, but "
                    f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} unset: set "
                    f"{'it' if len(missing) == 1 else 'them'} in the environment"
                )
        if self.uses_tls:
            for variable, value in (
                (CA_VARIABLE, self.ca_location),
                (CERTIFICATE_VARIABLE, self.certificate_location),
                (KEY_VARIABLE, self.key_location),
            ):
                if value and not Path(value).is_file():
                    raise KafkaSettingsError(f"{variable}={value} is not a readable file: fix the path")
            if bool(self.certificate_location) != bool(self.key_location):
                raise KafkaSettingsError(f"mTLS needs both {CERTIFICATE_VARIABLE} and {KEY_VARIABLE}; only one is set")
        return self

    def client_config(self) -> dict[str, str]:
        """librdkafka's settings: every confluent-kafka client sml makes gets exactly these."""
        config = {"security.protocol": self.protocol.upper()}
        if self.uses_sasl:
            config |= {
                "sasl.mechanism": (self.mechanism or "").upper(),
                "sasl.username": self.username or "",
                "sasl.password": self.password or "",
            }
        if self.uses_tls:
            for key, value in (
                ("ssl.ca.location", self.ca_location),
                ("ssl.certificate.location", self.certificate_location),
                ("ssl.key.location", self.key_location),
            ):
                if value:
                    config[key] = value
        return config

    def spark_options(self) -> dict[str, str]:
        """The same settings for Spark's Kafka source: `kafka.`-prefixed Java client settings.

        SASL becomes a JAAS line (`kafka.sasl.jaas.config`), the CA a PEM truststore, the client
        certificate and key an inline PEM keystore (the key must be PKCS#8, as Java reads it).
        Spark redacts option values containing 'password' from plans and logs, and the Java
        client prints `sasl.jaas.config` and `ssl.keystore.key` as [hidden].
        """
        options = {"kafka.security.protocol": self.protocol.upper()}
        if self.uses_sasl:
            mechanism = (self.mechanism or "").upper()
            options["kafka.sasl.mechanism"] = mechanism
            options["kafka.sasl.jaas.config"] = (
                f'{LOGIN_MODULES[mechanism]} required username="{_jaas_quote(self.username or "")}" '
                f'password="{_jaas_quote(self.password or "")}";'
            )
        if self.uses_tls and self.ca_location:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = self.ca_location
        if self.uses_tls and self.certificate_location and self.key_location:
            options["kafka.ssl.keystore.type"] = "PEM"
            options["kafka.ssl.keystore.certificate.chain"] = Path(self.certificate_location).read_text()
            options["kafka.ssl.keystore.key"] = Path(self.key_location).read_text()
        return options

    def explain(self, broker_error: str) -> str | None:
        """What to fix when a broker error is about security, naming the setting; None otherwise."""
        text = broker_error.lower()
        if "authentication" in text and ("sasl" in text or "credentials" in text):
            return (
                f"the broker refused the login of {USERNAME_VARIABLE}={self.username} with "
                f"{MECHANISM_VARIABLE}={self.mechanism}: check {USERNAME_VARIABLE} and "
                f"{PASSWORD_VARIABLE} (the password is not shown)"
            )
        if "certificate verify failed" in text or "unable to get local issuer" in text:
            return (
                f"the broker's certificate is not signed by a CA this client trusts: set "
                f"{CA_VARIABLE} to the CA file that signed it (now "
                f"{self.ca_location or 'unset: the system CA store'})"
            )
        if "certificate" in text and ("hostname" in text or "name mismatch" in text):
            return (
                "the broker's certificate does not name the host in SML_KAFKA_BOOTSTRAP_SERVERS: "
                "use the name it was issued for"
            )
        if "connecting to a ssl listener" in text or "incorrect security.protocol" in text:
            return self._plaintext_on_tls()
        if "ssl handshake failed" in text or "ssl" in text and self.uses_tls:
            return (
                f"the TLS handshake failed with {PROTOCOL_VARIABLE}={self.protocol}: check that the port "
                f"is a TLS listener, {CA_VARIABLE}, and for mTLS {CERTIFICATE_VARIABLE} and {KEY_VARIABLE}"
            )
        return None

    def diagnose(self, bootstrap_servers: str, errors: Iterable[str], timeout_s: float = 2.0) -> str | None:
        """What to fix after a failed connection: from the client's errors (newest first), else,
        for a client without TLS, by asking the first broker address for a TLS handshake: a
        broker that answers one is a TLS listener, which closes plaintext connections silently."""
        for error in errors:
            advice = self.explain(error)
            if advice is not None:
                return advice
        if not self.uses_tls and speaks_tls(bootstrap_servers.split(",")[0].strip(), timeout_s):
            return self._plaintext_on_tls()
        return None

    def _plaintext_on_tls(self) -> str:
        return (
            f"the broker expects TLS on this port but {PROTOCOL_VARIABLE}={self.protocol}: set "
            f"{PROTOCOL_VARIABLE} to the listener's protocol (SSL or SASL_SSL)"
        )


def speaks_tls(address: str, timeout_s: float) -> bool:
    """Whether `host:port` completes a TLS handshake (certificate not checked: only the protocol)."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]")),
        ):
            return True
    except (OSError, ValueError):
        return False


def _jaas_quote(value: str) -> str:
    """A JAAS option value inside double quotes: backslash and quote escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
