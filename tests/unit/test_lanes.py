"""Which events the lanes' router copies, and which types a policy set makes urgent."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from policies.model import PolicySet
from streams.intake import lanes
from streams.intake.lanes import UrgentTypes
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings
from tests import samples

URGENT = UrgentTypes(frozenset({"fraud.suspected", "transaction.large"}))


def test_the_bundled_set_makes_fraud_and_security_events_urgent(policy: PolicySet) -> None:
    assert policy.urgent_triggers() == {
        "fraud.suspected",
        "transaction.large",
        "password.reset_requested",
        "address.changed",
        "contact.changed",
    }


def test_an_urgent_event_is_known_by_its_own_type() -> None:
    assert URGENT.of(samples.raw("fraud.suspected")) == "fraud.suspected"
    assert URGENT.of(samples.raw("payment.missed")) is None


def test_an_urgent_type_named_inside_the_data_is_not_the_event_s() -> None:
    """A merchant, a note, a nested object may say "fraud.suspected": only the envelope's
    own `type` counts."""
    event = samples.event("payment.missed")
    event["data"]["note"] = "fraud.suspected"
    event["data"]["nested"] = {"type": "transaction.large"}
    assert URGENT.of(json.dumps(event).encode()) is None


def test_what_is_not_an_event_is_left_to_intake() -> None:
    for value in (None, b"", b'{"type": "fraud.suspected"', b'["fraud.suspected"]', b"\xff"):
        assert URGENT.of(value) is None
    deep = b'{"type": "fraud.suspected", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert URGENT.of(deep) is None


async def test_the_router_counts_a_failure_and_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the router must neither end it quietly nor halt the worker: the originals
    are intake's anyway, so it logs, counts and copies on."""
    monkeypatch.setattr(lanes, "RETRY_S", 0.0)
    metrics = Metrics()
    attempts: list[int] = []

    class Flaky(lanes.TypeRouter):
        async def _route(self) -> None:
            attempts.append(len(attempts))
            if len(attempts) == 1:
                raise ValueError("a bug")
            if len(attempts) == 2:
                raise KafkaConnectionError("broker away")
            await self.stop()

    router = Flaky(Settings(), lambda: frozenset({"fraud.suspected"}), metrics)
    await asyncio.wait_for(router._run(), timeout=5)

    assert len(attempts) == 3
    assert metrics.lanes_router_errors.value("ValueError") == 1
    assert metrics.lanes_router_errors.value("KafkaConnectionError") == 1


async def test_the_router_copies_what_the_policy_in_force_makes_urgent() -> None:
    """A set published while the worker runs changes what is copied, at the next fetch."""
    wanted = {"fraud.suspected"}
    copied: list[bytes] = []

    class Producer:
        async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
            copied.append(value)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    def record(kind: str) -> SimpleNamespace:
        value = samples.raw(kind)
        return SimpleNamespace(value=value, key=b"C-1", headers=(), timestamp=time.time() * 1000)

    router = lanes.TypeRouter(Settings(), lambda: frozenset(wanted), Metrics())
    fetched = {
        TopicPartition("account-events", 0): [record("fraud.suspected"), record("payment.missed")]
    }
    await router._copy(Producer(), fetched)  # type: ignore[arg-type]
    wanted.add("payment.missed")
    await router._copy(Producer(), fetched)  # type: ignore[arg-type]

    assert [json.loads(v)["type"] for v in copied] == [
        "fraud.suspected",
        "fraud.suspected",
        "payment.missed",
    ]
