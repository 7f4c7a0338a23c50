"""The Kafka security settings without a broker: which combinations are refused (naming the
variable), how they render for librdkafka and for Spark's Java client, and that the password stays
out of reprs and messages. The real broker tests are in test_secured_kafka.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import EnvVar
from hypothesis import given
from hypothesis import strategies as st

from sml_assets.kafka_security import KafkaSecurity, KafkaSettingsError
from sml_assets.resources.kafka import KafkaResource
from sml_assets.settings import kafka_security_settings

PASSWORD = "zz-kafka-S3cret"


def scram(**fields: object) -> KafkaSecurity:
    values: dict[str, object] = {
        "protocol": "SASL_SSL",
        "mechanism": "SCRAM-SHA-512",
        "username": "sml",
        "password": PASSWORD,
    }
    return KafkaSecurity(**{**values, **fields})  # type: ignore[arg-type]


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    assert KafkaSecurity().checked().client_config() == {"security.protocol": "PLAINTEXT"}
    assert KafkaResource(bootstrap_servers="b:9092").spark_source_options() == {
        "kafka.bootstrap.servers": "b:9092",
        "kafka.security.protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"protocol": "TLS"}, "SML_KAFKA_SECURITY_PROTOCOL=TLS is not a Kafka security protocol"),
        ({"mechanism": None}, "SML_KAFKA_SASL_MECHANISM=(unset) with SML_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        ({"mechanism": "GSSAPI"}, "SML_KAFKA_SASL_MECHANISM=GSSAPI"),
        ({"password": None}, "SML_KAFKA_SASL_PASSWORD is unset"),
        ({"username": "", "password": ""}, "SML_KAFKA_SASL_USERNAME and SML_KAFKA_SASL_PASSWORD are unset"),
        ({"ca_location": "/nowhere/ca.pem"}, "SML_KAFKA_SSL_CA_LOCATION=/nowhere/ca.pem is not a readable file"),
    ],
)
def test_contradictory_settings_are_refused_naming_the_variable(fields: dict[str, object], named: str) -> None:
    with pytest.raises(KafkaSettingsError) as raised:
        scram(**fields).checked()
    assert named in str(raised.value) and PASSWORD not in str(raised.value)


def test_mtls_needs_both_certificate_and_key(tmp_path: Path) -> None:
    certificate = tmp_path / "client.pem"
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(KafkaSettingsError, match="needs both SML_KAFKA_SSL_CERTIFICATE_LOCATION and"):
        KafkaSecurity(protocol="SSL", certificate_location=str(certificate)).checked()


def test_scram_over_tls_renders_the_same_login_for_librdkafka_and_for_spark(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("ca")
    security = scram(ca_location=str(ca)).checked()
    assert security.client_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "sml",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca),
    }
    assert security.spark_options() == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="sml" password="{PASSWORD}";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(ca),
    }


def test_plain_uses_the_plain_login_module_and_mtls_an_inline_pem_keystore(tmp_path: Path) -> None:
    certificate, key = tmp_path / "client.pem", tmp_path / "client.key"
    certificate.write_text("CERT")
    key.write_text("KEY")
    options = (
        scram(mechanism="PLAIN", certificate_location=str(certificate), key_location=str(key)).checked().spark_options()
    )
    assert options["kafka.sasl.jaas.config"].startswith("org.apache.kafka.common.security.plain.PlainLoginModule")
    assert options["kafka.ssl.keystore.type"] == "PEM"
    assert (options["kafka.ssl.keystore.certificate.chain"], options["kafka.ssl.keystore.key"]) == ("CERT", "KEY")


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_any_password_is_one_jaas_string_that_unquotes_to_itself(password: str) -> None:
    line = scram(password=password).spark_options()["kafka.sasl.jaas.config"]
    quoted = line.split(' password="', 1)[1]
    assert quoted.endswith('";')
    body, unquoted, escaped = quoted[:-2], [], False
    for char in body:
        if escaped:
            unquoted.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            assert char != '"', f"an unescaped quote ends the JAAS string early: {line!r}"
            unquoted.append(char)
    assert "".join(unquoted) == password


def test_the_password_is_not_in_the_resources_repr() -> None:
    kafka = KafkaResource(
        bootstrap_servers="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="sml",
        sasl_password=PASSWORD,
    )
    assert PASSWORD not in repr(kafka) and PASSWORD not in repr(kafka.security())


def test_only_the_variables_that_are_set_become_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SML_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SML_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.delenv("SML_KAFKA_SASL_USERNAME", raising=False)
    assert kafka_security_settings() == {
        "security_protocol": EnvVar("SML_KAFKA_SECURITY_PROTOCOL"),
        "sasl_password": EnvVar("SML_KAFKA_SASL_PASSWORD"),
    }
