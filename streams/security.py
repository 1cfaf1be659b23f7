"""How every Kafka client of inferstream connects: the security settings turned into client options.

``kafka_client_kwargs(settings)`` gives the keyword arguments of an aiokafka producer, consumer or
admin client; ``faust_credentials(settings)`` gives the same as Faust's ``broker_credentials``;
``librdkafka_config(settings)`` gives the same as confluent-kafka (librdkafka) configuration
properties, for the processing engine's consumer and transactional producer. All check the
settings first and raise ``KafkaSecurityError`` naming the ``INFERSTREAM_*``
variable to fix, instead of letting a client fail later with a connection error. Secrets are read
when the options are made (a mounted password file may be rotated between restarts).

    AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, **kafka_client_kwargs(s))
    faust.App(..., broker_credentials=faust_credentials(s))
    confluent_kafka.Producer({"bootstrap.servers": s.bootstrap_servers, **librdkafka_config(s)})
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context
from faust.types.auth import CredentialsT

from streams.settings import Settings

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


class KafkaSecurityError(ValueError):
    """The Kafka security settings contradict each other, or a file they name is unusable."""


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka client options for ``settings``: ``security_protocol`` always; the
    ``sasl_mechanism``/``sasl_plain_username``/``sasl_plain_password`` for SASL_*; an
    ``ssl_context`` for SSL and SASL_SSL."""
    check(settings)
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in SASL_PROTOCOLS:
        kwargs |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": sasl_password(settings),
        }
    if protocol in TLS_PROTOCOLS:
        kwargs["ssl_context"] = ssl_context(settings)
    return kwargs


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for ``settings`` (``None`` for PLAINTEXT)."""
    check(settings)
    protocol = settings.kafka_security_protocol
    if protocol in SASL_PROTOCOLS:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=sasl_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            # Faust picks SASL_SSL over SASL_PLAINTEXT by the presence of a context
            ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return None


def librdkafka_config(settings: Settings) -> dict[str, str]:
    """librdkafka (confluent-kafka) configuration properties for ``settings``:
    ``security.protocol`` always (alone for PLAINTEXT); ``sasl.mechanism``/``sasl.username``/
    ``sasl.password`` for SASL_*; for SSL and SASL_SSL the ``ssl.*.location`` of the files given
    and ``ssl.endpoint.identification.algorithm`` as ``ssl_context`` checks host names.

    The TLS files are loaded once here (through ``ssl_context``) so that a missing, unreadable or
    encrypted file is a ``KafkaSecurityError`` naming the variable, as for the aiokafka clients.
    Without kafka_ssl_cafile, ``ssl.ca.location`` is left unset: librdkafka then uses the system
    CAs (probing the usual paths when its OpenSSL is statically linked, as in the wheels). There
    is no ``ssl.key.password``: encrypted client keys are refused (see ``ssl_context``).
    """
    check(settings)
    protocol = settings.kafka_security_protocol
    config: dict[str, str] = {"security.protocol": protocol}
    if protocol in SASL_PROTOCOLS:
        config |= {
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_sasl_username or "",  # check() refused a missing one
            "sasl.password": sasl_password(settings),
        }
    if protocol in TLS_PROTOCOLS:
        context = ssl_context(settings)
        for name, key in (
            ("kafka_ssl_cafile", "ssl.ca.location"),
            ("kafka_ssl_certfile", "ssl.certificate.location"),
            ("kafka_ssl_keyfile", "ssl.key.location"),
        ):
            path = getattr(settings, name)
            if path is not None:
                config[key] = str(path)
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if context.check_hostname else "none"
        )
    return config


def check(settings: Settings) -> None:
    """Raise ``KafkaSecurityError`` unless the security settings make one consistent client."""
    protocol = settings.kafka_security_protocol
    given = _given(settings)
    if protocol in SASL_PROTOCOLS:
        if not settings.kafka_sasl_username:
            raise _error(f"{protocol} needs a SASL user: set {_env('kafka_sasl_username')}")
        if settings.kafka_sasl_password is not None and settings.kafka_sasl_password_file:
            raise _error(
                f"both {_env('kafka_sasl_password')} and {_env('kafka_sasl_password_file')} are "
                "set: keep one"
            )
        if settings.kafka_sasl_password is None and not settings.kafka_sasl_password_file:
            raise _error(
                f"{protocol} needs a password: set {_env('kafka_sasl_password')} or "
                f"{_env('kafka_sasl_password_file')}"
            )
    else:
        sasl = [n for n in given if n.startswith("kafka_sasl_")]
        if sasl:
            raise _error(f"{_names(sasl)} set but {_protocol_hint(protocol)} uses no SASL")
    if protocol not in TLS_PROTOCOLS:
        tls = [n for n in given if n.startswith("kafka_ssl_")]
        if tls:
            raise _error(f"{_names(tls)} set but {_protocol_hint(protocol)} uses no TLS")
    elif settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise _error(
            f"{_env('kafka_ssl_keyfile')} without {_env('kafka_ssl_certfile')}: a client key "
            "needs its certificate"
        )


def sasl_password(settings: Settings) -> str:
    """The SASL password: the secret setting, or the password file's content without its final
    line break."""
    if settings.kafka_sasl_password is not None:
        password = settings.kafka_sasl_password.get_secret_value()
        source = _env("kafka_sasl_password")
    else:
        path = settings.kafka_sasl_password_file
        if path is None:
            raise _error(f"no SASL password: set {_env('kafka_sasl_password')}")
        password = _read(path, "kafka_sasl_password_file").removesuffix("\n").removesuffix("\r")
        source = f"{_env('kafka_sasl_password_file')} ({path})"
    if not password:
        raise _error(f"the SASL password from {source} is empty")
    return password


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: brokers verified against kafka_ssl_cafile (the system CAs when unset),
    host names checked; the client certificate and key loaded for mutual TLS when given."""
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise _error(f"{_env(name)}={path}: no such file")
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            password=_no_key_password,  # else OpenSSL would prompt on the terminal
        )
    except KafkaSecurityError:
        raise
    except (ssl.SSLError, ValueError) as exc:
        files = ", ".join(
            f"{_env(n)}={getattr(settings, n)}"
            for n in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
            if getattr(settings, n) is not None
        )
        raise _error(f"cannot load the TLS files ({files}): {exc}") from exc
    return context


def _no_key_password() -> str:
    raise _error(
        f"the client key ({_env('kafka_ssl_keyfile')} or {_env('kafka_ssl_certfile')}) is "
        "encrypted; give an unencrypted key file (e.g. a mounted Kubernetes Secret)"
    )


def _given(settings: Settings) -> list[str]:
    names = (
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_sasl_password_file",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
    )
    return [n for n in names if getattr(settings, n) is not None]


def _read(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"cannot read {_env(name)}={path}: {exc}") from exc


def _env(name: str) -> str:
    return f"INFERSTREAM_{name.upper()}"


def _names(names: list[str]) -> str:
    return ", ".join(_env(n) for n in names)


def _protocol_hint(protocol: str) -> str:
    return f"{_env('kafka_security_protocol')}={protocol}"


def _error(message: str) -> KafkaSecurityError:
    return KafkaSecurityError(f"Kafka security settings: {message}")
