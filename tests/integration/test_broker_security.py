"""A worker reaches a broker that asks for TLS, a client certificate or a SASL password.

Twice over. Apache Kafka's own listeners: TLS with a client certificate
required, and SASL_SSL with SCRAM-SHA-512 (the user made by `StorageTool
format --add-scram`). And the embedded broker behind `tests.kafka_gateway`
(why, in its docstring), which advertises the gateway's address, so no
connection gets past the door; the gateway stays for what Kafka's listeners
here do not offer: SASL PLAIN and SCRAM-SHA-256, and counting who
authenticated and who was refused. The workers are real `clarion worker` processes configured
only through `CLARION_KAFKA_*` variables: topic creation, Faust's consumer
and producer, and the tables' own readers all connect through it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from schemas.decisions import Decision
from streams.cli.demo import demo_settings, settings_env, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.runtime import security
from streams.runtime.settings import Settings, SettingsError
from tests.apache_kafka import ApacheKafka
from tests.conftest import KAFKA_SETTINGS
from tests.kafka_gateway import KafkaGateway, Pki

pytestmark = pytest.mark.integration

USERS = {"clarion-worker": "correct horse battery staple"}


def client_certificate(pki: Pki) -> dict[str, Any]:
    """The settings of a worker that shows a client certificate over TLS."""
    return {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": pki.ca,
        "kafka_ssl_certfile": pki.client_cert,
        "kafka_ssl_keyfile": pki.client_key,
    }


def scram(pki: Pki) -> dict[str, Any]:
    """The settings of a worker that gives a SCRAM-SHA-512 password over TLS."""
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "clarion-worker",
        "kafka_sasl_password": USERS["clarion-worker"],
        "kafka_ssl_cafile": pki.ca,
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def door(request: pytest.FixtureRequest, pki: Pki) -> Iterator[KafkaGateway]:
    """A broker behind a gateway: `client_certificates` and `users` as the test asks."""
    client_certificates, users = request.param
    port = free_port()
    with (
        EmbeddedBroker(advertised_port=port) as broker,
        KafkaGateway(
            port,
            broker.port,
            tls=pki.server_context(client_certificates=client_certificates),
            users=users,
        ) as gateway,
    ):
        yield gateway


@pytest.mark.parametrize(
    ("door", "security_settings"),
    [
        pytest.param(
            (True, None),
            client_certificate,
            id="tls-client-certificate",
        ),
        pytest.param(
            (False, USERS),
            lambda pki: {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "clarion-worker",
                "kafka_sasl_password": USERS["clarion-worker"],
                "kafka_ssl_cafile": pki.ca,
            },
            id="sasl-ssl-password",
        ),
        pytest.param(
            (False, USERS),
            scram,
            id="sasl-ssl-scram",
        ),
    ],
    indirect=["door"],
)
def test_a_worker_decides_through_the_secured_door(
    door: KafkaGateway, pki: Pki, security_settings: Any, tmp_path: Path
) -> None:
    decides_twice(f"127.0.0.1:{door.port}", security_settings(pki), tmp_path)
    assert door.connections >= 3  # topic creation, the workers' clients, this test's
    if door.users:
        assert door.authenticated.count("clarion-worker") >= 3
        assert door.refused == []


def decides_twice(bootstrap: str, security_settings: dict[str, Any], tmp_path: Path) -> None:
    """Two workers one after the other: the second reads the first one's tables back (their
    bulk readers and end-offset checks connect as the workers do) and goes on from them."""
    run = uuid.uuid4().hex[:8]
    settings = demo_settings(
        bootstrap,
        tmp_path,
        app_id=f"clarion-sec-{run}",
        topic_prefix=f"sec{run}.",
        log_format="json",
        **security_settings,
    )
    asyncio.run(topics.ensure_topics(settings))
    for n, event in enumerate([fraud("f-1"), fraud("f-2")], start=1):
        with (tmp_path / f"worker-{n}.log").open("wb") as log:
            worker = start_worker(settings, log)
            try:
                asyncio.run(produce(settings, [profile(), event] if n == 1 else [event]))
                sent = asyncio.run(sent_decisions(settings, n, timeout=90))
            finally:
                stop_worker(worker)
    assert [(d.customer_id, d.channel, d.template) for d in sent] == [
        ("C-1", "sms", "fraud-alert")
    ] * 2
    assert [d.cause_event_id for d in sent] == ["f-1", "f-2"]
    restarted = (tmp_path / "worker-2.log").read_text()
    assert '"table.read_in_bulk"' in restarted and "read_in_bulk_failed" not in restarted


@pytest.fixture(scope="module")
def secured_kafka(pki: Pki) -> Iterator[ApacheKafka]:
    """Apache Kafka's own TLS listener (client certificate required) and SASL_SSL listener
    (SCRAM-SHA-512, the user made at format time): no gateway in between."""
    with ApacheKafka(pki=pki, scram_users=USERS) as kafka:
        yield kafka


@pytest.mark.parametrize(
    ("listener", "security_settings"),
    [
        pytest.param(
            "ssl_port",
            client_certificate,
            id="tls-client-certificate",
        ),
        pytest.param(
            "sasl_port",
            scram,
            id="sasl-ssl-scram",
        ),
    ],
)
def test_a_worker_decides_on_kafkas_own_secured_listeners(
    secured_kafka: ApacheKafka, pki: Pki, listener: str, security_settings: Any, tmp_path: Path
) -> None:
    port = getattr(secured_kafka, listener)
    decides_twice(f"127.0.0.1:{port}", {**security_settings(pki), **KAFKA_SETTINGS}, tmp_path)


def test_kafka_refuses_a_wrong_password_a_missing_certificate_and_another_ca(
    secured_kafka: ApacheKafka, pki: Pki, tmp_path: Path
) -> None:
    wrong = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_ssl_cafile=pki.ca,
        kafka_sasl_username="clarion-worker",
        kafka_sasl_password="Tr0ub4dor&3",
    )
    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect(f"127.0.0.1:{secured_kafka.sasl_port}", wrong))
    refuses_no_certificate_and_another_ca(f"127.0.0.1:{secured_kafka.ssl_port}", pki, tmp_path)


def refuses_no_certificate_and_another_ca(bootstrap: str, pki: Pki, tmp_path: Path) -> None:
    other = Pki.make(tmp_path / "other", name="other")
    no_certificate = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    other_ca = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=other.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.client_key,
    )
    for settings in (no_certificate, other_ca):
        with pytest.raises(KafkaConnectionError):
            asyncio.run(connect(bootstrap, settings))


@pytest.mark.parametrize("door", [(True, None)], indirect=True)
def test_tls_refuses_a_client_without_a_certificate_or_trusting_another_ca(
    door: KafkaGateway, pki: Pki, tmp_path: Path
) -> None:
    refuses_no_certificate_and_another_ca(f"127.0.0.1:{door.port}", pki, tmp_path)


@pytest.mark.parametrize("door", [(False, USERS)], indirect=True)
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_refuses_a_wrong_password(door: KafkaGateway, pki: Pki, mechanism: str) -> None:
    wrong = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_ssl_cafile=pki.ca,
        kafka_sasl_username="clarion-worker",
        kafka_sasl_password="Tr0ub4dor&3",
    )
    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect(f"127.0.0.1:{door.port}", wrong))
    assert door.refused == ["clarion-worker: wrong password"]
    assert door.authenticated == []


@pytest.mark.parametrize("door", [(False, USERS)], indirect=True)
def test_a_worker_refused_at_the_door_stops_and_says_why(
    door: KafkaGateway, pki: Pki, tmp_path: Path
) -> None:
    settings = demo_settings(
        f"127.0.0.1:{door.port}",
        tmp_path,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_sasl_username="clarion-worker",
        kafka_sasl_password="Tr0ub4dor&3",
    )
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "SaslAuthenticationFailed" in result.stderr  # aiokafka's reason
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"clarion worker: cannot reach the broker at {settings.kafka_bootstrap}")
    assert "Tr0ub4dor" not in result.stderr + result.stdout


def test_a_missing_tls_file_is_named_at_start_up(tmp_path: Path) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "ca.pem")
    with pytest.raises(SettingsError, match=r"CLARION_KAFKA_SSL_CAFILE: no such file: .*ca\.pem"):
        security.credentials(settings)


async def connect(bootstrap: str, settings: Settings) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, **security.for_settings(settings)
    )
    try:
        await producer.start()
    finally:
        await producer.stop()


def profile() -> dict[str, Any]:
    return {
        "event_id": "p-1",
        "type": "customer.profile.updated",
        "schema_version": 1,
        "occurred_at": "2026-11-20T15:00:00Z",
        "customer_id": "C-1",
        "source": "test",
        "data": {"phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}]},
    }


def fraud(event_id: str) -> dict[str, Any]:
    return {
        **profile(),
        "event_id": event_id,
        "type": "fraud.suspected",
        "occurred_at": f"2026-11-20T15:00:0{event_id[-1]}Z",
        "account_id": f"A-{event_id}",  # a case of its own: a second on one account is kept
        "data": {"reason": "card used in two countries"},
    }


async def produce(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, **security.for_settings(settings)
    )
    await producer.start()
    try:
        for event in events:
            topic = settings.topic(topics.ACCOUNT_EVENTS)
            await producer.send(topic, key=b"C-1", value=json.dumps(event).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def sent_decisions(settings: Settings, count: int, timeout: float) -> list[Decision]:
    """The first `count` sent decisions on the ledger, in order."""
    sent: list[Decision] = []
    consumer = AIOKafkaConsumer(
        settings.topic(topics.DECISIONS),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        **security.for_settings(settings),
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    decision = Decision.model_validate_json(message.value or b"")
                    if decision.action == "sent":
                        sent.append(decision)
            if len(sent) >= count:
                return sent
        raise AssertionError(f"{len(sent)} of {count} sent decisions within {timeout}s")
    finally:
        await consumer.stop()
