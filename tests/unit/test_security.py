"""streams.security: Settings -> aiokafka options, Faust credentials and librdkafka configuration
(no network)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import confluent_kafka
import faust
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism

from streams.security import (
    KafkaSecurityError,
    faust_credentials,
    kafka_client_kwargs,
    librdkafka_config,
)
from streams.settings import Settings


@pytest.fixture(autouse=True)
def _no_kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: a developer's INFERSTREAM_KAFKA_* must not leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("INFERSTREAM_KAFKA_"):
            monkeypatch.delenv(name)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    """A certificate for `subject`, self-signed or signed by issuer=(name, key)."""
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, a client certificate signed by it, the client key (plain and encrypted)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key)
    client = _cert("worker", client_key, issuer=("test-ca", ca_key))
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    files = {
        "ca": tmp_path / "ca.crt",
        "cert": tmp_path / "client.crt",
        "key": tmp_path / "client.key",
        "encrypted_key": tmp_path / "client.enc.key",
        "garbage": tmp_path / "garbage.pem",
    }
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["cert"].write_bytes(client.public_bytes(pem))
    files["key"].write_bytes(client_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    files["encrypted_key"].write_bytes(
        client_key.private_bytes(pem, pkcs8, serialization.BestAvailableEncryption(b"secret"))
    )
    files["garbage"].write_text("not a certificate\n")
    return files


def sasl_ssl(pki: dict[str, Path], **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "worker",
        "kafka_sasl_password": "s3cret",
        "kafka_ssl_cafile": pki["ca"],
    }
    return Settings(**(fields | overrides))


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert kafka_client_kwargs(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_ssl_gives_scram_credentials_and_a_verifying_tls_context(
    pki: dict[str, Path],
) -> None:
    kwargs = kafka_client_kwargs(sasl_ssl(pki))
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]


def test_password_file_is_read_without_its_line_break(tmp_path: Path, pki: dict[str, Path]) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file \r\n")  # inner and trailing spaces are part of a password
    settings = sasl_ssl(pki, kafka_sasl_password=None, kafka_sasl_password_file=secret)
    assert kafka_client_kwargs(settings)["sasl_plain_password"] == "from-a-file "


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw\n")
    monkeypatch.setenv("INFERSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("INFERSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("INFERSTREAM_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("INFERSTREAM_KAFKA_SASL_PASSWORD_FILE", str(secret))
    assert kafka_client_kwargs(Settings()) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
    }


def test_mutual_tls_loads_the_client_certificate(pki: dict[str, Path]) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki["ca"],
        kafka_ssl_certfile=pki["cert"],
        kafka_ssl_keyfile=pki["key"],
    )
    kwargs = kafka_client_kwargs(settings)
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_sasl_username": None}, "needs a SASL user: set INFERSTREAM_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": ""}, "INFERSTREAM_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_password": None}, "needs a password: set INFERSTREAM_KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_password": ""}, "is empty"),
        ({"kafka_sasl_password_file": Path("/x")}, "keep one"),
        (
            {"kafka_security_protocol": "PLAINTEXT"},
            "INFERSTREAM_KAFKA_SASL_USERNAME, INFERSTREAM_KAFKA_SASL_PASSWORD set but "
            "INFERSTREAM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT"},
            "INFERSTREAM_KAFKA_SSL_CAFILE set but INFERSTREAM_KAFKA_SECURITY_PROTOCOL="
            "SASL_PLAINTEXT uses no TLS",
        ),
        ({"kafka_ssl_cafile": Path("/nonexistent/ca.crt")}, "ca.crt: no such file"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_variable_to_fix(
    pki: dict[str, Path], overrides: dict[str, Any], message: str
) -> None:
    settings = sasl_ssl(pki, **overrides)
    with pytest.raises(KafkaSecurityError, match=r"^Kafka security settings: ") as err:
        kafka_client_kwargs(settings)
    assert message in str(err.value)
    with pytest.raises(KafkaSecurityError):  # Faust's credentials check the same
        faust_credentials(settings)


def test_unusable_tls_files_are_named(pki: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(KafkaSecurityError, match=r"INFERSTREAM_KAFKA_SSL_CAFILE=.*garbage\.pem"):
        kafka_client_kwargs(sasl_ssl(pki, kafka_ssl_cafile=pki["garbage"]))
    with pytest.raises(KafkaSecurityError, match="a client key needs its certificate"):
        kafka_client_kwargs(sasl_ssl(pki, kafka_ssl_keyfile=pki["key"]))
    unreadable = tmp_path / "dir-not-file"
    unreadable.mkdir()
    with pytest.raises(KafkaSecurityError, match="INFERSTREAM_KAFKA_SASL_PASSWORD_FILE"):
        kafka_client_kwargs(
            sasl_ssl(pki, kafka_sasl_password=None, kafka_sasl_password_file=unreadable)
        )


def test_an_encrypted_client_key_is_an_error_not_a_terminal_prompt(pki: dict[str, Path]) -> None:
    settings = sasl_ssl(pki, kafka_ssl_certfile=pki["cert"], kafka_ssl_keyfile=pki["encrypted_key"])
    with pytest.raises(KafkaSecurityError, match="is encrypted"):
        kafka_client_kwargs(settings)


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_faust_credentials_match_the_aiokafka_options(pki: dict[str, Path], protocol: str) -> None:
    settings = sasl_ssl(
        pki,
        kafka_security_protocol=protocol,
        kafka_ssl_cafile=pki["ca"] if protocol == "SASL_SSL" else None,
    )
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert "s3cret" not in repr(credentials)
    # what Faust's aiokafka driver will hand to its clients == what our clients get
    faust_side = credentials_to_aiokafka_auth(credentials)
    ours = kafka_client_kwargs(settings)
    assert faust_side["security_protocol"] == ours["security_protocol"] == protocol
    for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert faust_side[key] == ours[key]
    assert (faust_side["ssl_context"] is None) == (protocol == "SASL_PLAINTEXT")


# --- librdkafka (confluent-kafka) configuration ---------------------------------------------------


def test_librdkafka_plaintext_is_the_protocol_alone() -> None:
    assert librdkafka_config(Settings()) == {"security.protocol": "PLAINTEXT"}


def test_librdkafka_sasl_plaintext_with_a_password() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="worker",
        kafka_sasl_password="s3cret",
    )
    assert librdkafka_config(settings) == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "worker",
        "sasl.password": "s3cret",
    }


def test_librdkafka_sasl_ssl_reads_the_password_file(tmp_path: Path, pki: dict[str, Path]) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file \n")
    settings = sasl_ssl(
        pki,
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_password=None,
        kafka_sasl_password_file=secret,
    )
    assert librdkafka_config(settings) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "worker",
        "sasl.password": "from-a-file ",
        "ssl.ca.location": str(pki["ca"]),
        "ssl.endpoint.identification.algorithm": "https",  # as ssl_context checks host names
    }
    assert kafka_client_kwargs(settings)["ssl_context"].check_hostname


def test_librdkafka_mutual_tls_names_the_ca_certificate_and_key(pki: dict[str, Path]) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki["ca"],
        kafka_ssl_certfile=pki["cert"],
        kafka_ssl_keyfile=pki["key"],
    )
    assert librdkafka_config(settings) == {
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki["ca"]),
        "ssl.certificate.location": str(pki["cert"]),
        "ssl.key.location": str(pki["key"]),
        "ssl.endpoint.identification.algorithm": "https",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_sasl_username": None}, "needs a SASL user: set INFERSTREAM_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_password_file": Path("/x")}, "keep one"),
        ({"kafka_sasl_password": ""}, "is empty"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "uses no TLS"),
        ({"kafka_ssl_cafile": Path("/nonexistent/ca.crt")}, "ca.crt: no such file"),
    ],
)
def test_librdkafka_config_refuses_inconsistent_settings(
    pki: dict[str, Path], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=r"^Kafka security settings: ") as err:
        librdkafka_config(sasl_ssl(pki, **overrides))
    assert message in str(err.value)


def test_librdkafka_config_refuses_an_encrypted_client_key(pki: dict[str, Path]) -> None:
    settings = sasl_ssl(pki, kafka_ssl_certfile=pki["cert"], kafka_ssl_keyfile=pki["encrypted_key"])
    with pytest.raises(KafkaSecurityError, match="is encrypted"):
        librdkafka_config(settings)


@pytest.mark.parametrize("shape", ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"])
def test_librdkafka_accepts_the_config(pki: dict[str, Path], shape: str) -> None:
    """librdkafka checks every property, and loads the TLS files, when a client is made."""
    settings = {
        "PLAINTEXT": Settings(),
        "SASL_PLAINTEXT": sasl_ssl(
            pki, kafka_security_protocol="SASL_PLAINTEXT", kafka_ssl_cafile=None
        ),
        "SASL_SSL": sasl_ssl(pki),
        "SSL": Settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=pki["ca"],
            kafka_ssl_certfile=pki["cert"],
            kafka_ssl_keyfile=pki["key"],
        ),
    }[shape]
    conf = librdkafka_config(settings)
    # raises KafkaException on an unknown property, a bad value or an unloadable TLS file
    producer = confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:1", **conf})
    producer.flush(0)  # nothing was produced; the refused connections are only logged
