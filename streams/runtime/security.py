"""How a worker proves itself to a broker, and checks the broker: TLS, SASL, or both.

One place turns the settings into credentials, so Faust's consumer and
producer and the plain aiokafka clients beside them (topic creation, table
bulk loads, end offsets) all connect the same way. A bank's broker is
reached over TLS with a password or a client certificate; the embedded
broker of the demo and the tests takes plain connections.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import CredentialsT

from streams.runtime.settings import PREFIX, SSL_FILES, Settings, SettingsError


def credentials(settings: Settings) -> CredentialsT | None:
    """Faust's credentials for the configured protocol; None for plain connections."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = _tls(settings) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        assert context is not None
        return SSLCredentials(context)
    password = settings.kafka_sasl_password
    return SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password is not None else None,
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def client_options(creds: CredentialsT | None) -> dict[str, Any]:
    """The keyword arguments an aiokafka client needs to connect as Faust does."""
    return dict(credentials_to_aiokafka_auth(creds))


def for_settings(settings: Settings) -> dict[str, Any]:
    """`client_options` straight from the settings, for clients made outside a Faust app."""
    return client_options(credentials(settings))


def _tls(settings: Settings) -> ssl.SSLContext:
    """A client context that checks the broker's certificate and host name, always."""
    for name in SSL_FILES:
        path: Path | None = getattr(settings, name)
        if path is not None and not path.is_file():
            raise SettingsError(f"{PREFIX}{name.upper()}: no such file: {path}")
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    except ssl.SSLError as exc:
        raise SettingsError(f"the Kafka TLS files could not be used: {exc}") from None
    return context
