"""The ways out of an agent: a topic, the producer, the ledger and `dead-letters`.

Both agents use them, and they meet nowhere else, so they live below both
(import-linter keeps intake and dispatch apart). `enter` is here too: it is
how a table write is routed, and it reaches into Faust's stream internals.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import faust.streams as faust_streams
import structlog

from schemas.dead_letters import DeadLetter, RejectCode
from schemas.decisions import Decision
from streams.kafka import topics
from streams.kafka.guard import Guard
from streams.kafka.transport import ClarionApp
from streams.runtime.logging import mask
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings

log = structlog.get_logger(__name__)

FORWARDED_FROM = "clarion-forwarded-from"
"""The header on an input intake forwarded: the topic, partition and offset it came from."""

Produce = Callable[[str, bytes | None, bytes], Awaitable[None]]
DeadLetterSink = Callable[[faust.EventT[bytes], RejectCode, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outlets:
    """What both roles' agents write to, the counters they keep, and their guard."""

    topic: Callable[[str], faust.TopicT]
    """A topic of the app by its short name (the prefix added), keys and values raw bytes."""
    produce: Produce
    deliver: Callable[[str, bytes | None, bytes], Awaitable[asyncio.Future[Any]]]
    """`produce`, returning the record's delivery to await."""
    record: Callable[[Decision], Awaitable[None]]
    record_encoded: Callable[[Decision, bytes], Awaitable[None]]
    dead_letter: DeadLetterSink
    forward: Callable[[faust.EventT[bytes], int], Awaitable[None]]
    """An input, unchanged, to another partition of its topic (a header says whence)."""
    metrics: Metrics
    guard: Guard


def outlets(app: ClarionApp, settings: Settings, metrics: Metrics) -> Outlets:
    def topic(name: str) -> faust.TopicT:
        return app.topic(
            settings.topic(name),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    dead_letters_name = settings.topic(topics.DEAD_LETTERS)
    decisions_name = settings.topic(topics.DECISIONS)
    agent_tasks_name = settings.topic(topics.AGENT_TASKS)

    async def deliver(topic_name: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        """Straight to the producer: `Topic.send`'s per-message machinery cost more than
        the rest of an input together (the topics exist; ensure_topics made them). The
        guard follows the delivery: a record the broker refuses halts the worker."""
        delivery = asyncio.ensure_future(
            await app.producer.send(topic_name, key, value, None, None, None)
        )
        app.guard.watch(delivery)
        return delivery

    async def produce(topic_name: str, key: bytes | None, value: bytes) -> None:
        await deliver(topic_name, key, value)

    async def record(decision: Decision) -> None:
        await record_encoded(decision, decision.model_dump_json().encode())

    async def record_encoded(decision: Decision, value: bytes) -> None:
        await produce(decisions_name, decision.customer_id.encode(), value)
        metrics.decisions.inc(decision.action, decision.channel or "", decision.reason)
        if decision.action == "handoff":
            await produce(agent_tasks_name, decision.customer_id.encode(), value)

    async def dead_letter(event: faust.EventT[bytes], code: RejectCode, reason: str) -> None:
        msg = event.message
        letter = DeadLetter.of(
            code=code,
            reason=mask(reason),
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            received_at=datetime.now(UTC),
            whole_max_bytes=settings.dead_letter_max_bytes,
        )
        await produce(dead_letters_name, letter.kept_key(), letter.model_dump_json().encode())
        metrics.dead_letters.inc(code)
        log.warning(
            "input.dead_lettered",
            code=code,
            reason=letter.reason,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
        )

    async def forward(event: faust.EventT[bytes], partition: int) -> None:
        await _forward(app, event, partition)

    return Outlets(
        topic, produce, deliver, record, record_encoded, dead_letter, forward, metrics, app.guard
    )


async def _forward(app: ClarionApp, event: faust.EventT[bytes], partition: int) -> None:
    """The input as it came (key, value, timestamp) to `partition` of its topic; the guard
    follows the delivery, so the original is committed only once the copy is on the broker."""
    msg = event.message
    whence = f"{msg.topic}/{msg.partition}/{msg.offset}".encode()
    headers = [(FORWARDED_FROM, whence)]
    sent = await app.producer.send(msg.topic, msg.key, msg.value, partition, msg.timestamp, headers)
    app.guard.watch(asyncio.ensure_future(sent))


def enter(event: faust.EventT[bytes]) -> None:
    """Make `event` the one this task's table writes belong to (Faust routes them by it).

    Only the task-local context variable: `Stream._set_current_event` would also
    overwrite the stream's shared `current_event`, which `take_events`' buffer
    reads, and the next batch then loses a message (that bug cost one message
    per batch boundary in the scale-out test).
    """
    faust_streams._current_event.set(weakref.ref(event))


def describe(exc: BaseException, what: str = "processing this input") -> str:
    """An unexpected failure, as a dead letter's reason a producer can read.

    The exception itself is Clarion's business, not the producer's: it is logged
    (`input.internal_error`) under a reference the reason quotes, so an operator
    finds it, and the reason says what happens next."""
    ref = hashlib.sha256(f"{time.time_ns()}{id(exc)}".encode()).hexdigest()[:12]
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    log.error(
        "input.internal_error",
        ref=ref,
        error=type(exc).__name__,
        detail=str(exc)[:500],
        at=f"{Path(frame.filename).name}:{frame.lineno}" if frame else None,
    )
    return (
        f"Clarion failed while {what} (ref {ref}); the input itself may be fine. "
        "Once the cause is fixed, `clarion dead-letters --code internal_error --replay` "
        "sends it again"
    )
