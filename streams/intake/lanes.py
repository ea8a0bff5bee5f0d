"""Lanes by event type: urgent events copied from `account-events` to `account-events-urgent`.

A producer that cannot choose a topic puts its fraud alert on `account-events`,
behind whatever batch is there. Intake cannot read past that batch: Faust
hands it a partition's records in order, a few thousand at most ahead. So the
router reads the topic in a consumer group of its own, at the broker's pace
rather than the engine's, and copies each event of an urgent type (one that
opens an urgent case, `PolicySet.urgent_triggers`) to the same partition of
`account-events-urgent`, key, value and headers unchanged.

Intake applies whichever copy it reads first and drops the other as a
duplicate (its memory of event ids, `CLARION_DEDUPE_WINDOW_HOURS`). So an
event is never applied twice, and nothing is lost when the router is slow,
down or behind: the original is still in its place. For the same reason the
router starts a new group at the end of the topic, and copies no event the
broker took more than half the dedupe window ago: such a copy could outlive
intake's memory of the original.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka import topics
from streams.kafka.restarting import keep_running
from streams.runtime import security
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings

log = structlog.get_logger(__name__)

RETRY_S = 1.0
"""After a failure, the router tries again this much later (intake is not held up)."""


class UrgentTypes:
    """The event types to copy, and the test of an event against them."""

    def __init__(self, wanted: frozenset[str]) -> None:
        self.wanted = wanted
        self._quoted = tuple(f'"{name}"'.encode() for name in sorted(wanted))

    def of(self, value: bytes | None) -> str | None:
        """The event's type when it is one of these, else None (also for what is not an
        event at all: intake dead-letters the original)."""
        if not value or not any(quoted in value for quoted in self._quoted):
            return None  # the cheap test first: most events name no urgent type
        try:
            event = json.loads(value)
        except (ValueError, RecursionError):
            return None
        kind = event.get("type") if isinstance(event, dict) else None
        return kind if isinstance(kind, str) and kind in self.wanted else None


class TypeRouter(faust.Service):
    """The copy loop: a consumer of its own, and a producer to the urgent topic."""

    def __init__(
        self,
        settings: Settings,
        urgent_types: Callable[[], frozenset[str]],
        metrics: Metrics,
        **kw: Any,
    ) -> None:
        """`urgent_types`: asked again for each fetch, so a policy set published while the
        worker runs changes what is copied."""
        super().__init__(**kw)
        self.settings, self.urgent_types = settings, urgent_types
        self.urgent = UrgentTypes(urgent_types())
        self.source = settings.topic(topics.ACCOUNT_EVENTS)
        self.target = settings.topic(topics.ACCOUNT_EVENTS_URGENT)
        self.max_age_ms = settings.dedupe_window_hours * 3600 * 1000 / 2
        self.routed, self.errors = metrics.lanes_routed, metrics.lanes_router_errors

    async def on_started(self) -> None:
        self.add_future(self._run())

    async def _run(self) -> None:
        """Copy until the worker stops, whatever fails.

        The router only ever copies: a failure of its own loses nothing (the
        originals are read by intake where they are), so it must not halt the
        worker as an agent's crash does. Nor may it end quietly: every failure
        is logged and counted (`clarion_lanes_router_errors_total`), and the
        router starts again from its group's committed offsets.
        """
        await keep_running(self, self._route, "lanes.router", RETRY_S, self.errors.inc)

    async def _route(self) -> None:
        options = security.for_settings(self.settings)
        bootstrap = self.settings.kafka_bootstrap
        consumer = AIOKafkaConsumer(
            self.source,
            bootstrap_servers=bootstrap,
            group_id=f"{self.settings.group()}-lanes",
            auto_offset_reset="latest",
            enable_auto_commit=False,
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.heartbeat_interval_s * 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **options,
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all", **options)
        try:
            await consumer.start()
            await producer.start()
            log.info("lanes.router_started", types=sorted(self.urgent.wanted))
            while not self.should_stop:
                fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
                await self._copy(producer, fetched)
                if fetched:
                    await consumer.commit()
        finally:
            await topics.stop_client(consumer)
            await topics.stop_client(producer)

    async def _copy(self, producer: AIOKafkaProducer, fetched: dict[Any, list[Any]]) -> None:
        """Copy the urgent ones; every copy is on the broker before the offsets are committed."""
        wanted = self.urgent_types()
        if wanted != self.urgent.wanted:
            log.info("lanes.router_types", types=sorted(wanted))
            self.urgent = UrgentTypes(wanted)
        oldest = time.time() * 1000 - self.max_age_ms
        sent, kinds = [], []
        for tp, records in fetched.items():
            for record in records:
                kind = self.urgent.of(record.value)
                if kind is None or record.timestamp < oldest:
                    continue
                sent.append(
                    await producer.send(
                        self.target,
                        record.value,
                        key=record.key,
                        partition=tp.partition,
                        headers=list(record.headers or ()),
                    )
                )
                kinds.append(kind)
        if sent:
            await asyncio.gather(*sent)
        for kind in kinds:
            self.routed.inc(kind)
