"""The intake agents: inputs -> validate -> dedupe -> engine -> ledger and requests.

Account events, profiles and preferences, delivery receipts and clock messages
share one agent with ``concurrency=1`` (more can lose messages, see
pitfalls.md), so a customer's inputs are applied in partition order. Urgent
events (`account-events-urgent`) have an agent of their own, so a fraud alert
is never queued behind a nightly batch; the two take turns a batch at a time
(`Intake.turn`), so a customer's state is never changed by both at once
(docs/operations.md, "Lanes"). No
exception escapes it: Faust would ack the message and it would be gone. What
cannot be processed goes to `dead-letters`. Clock messages on `timer-ticks`
fire the steps falling due (streams/intake/timers.py says how timers survive
restarts).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import faust
import structlog
from faust.types import TP
from pydantic import ValidationError

from policies.engine import Input, Tick, decide
from schemas.intake import Rejection, check_event, field_errors
from schemas.notifications import DeliveryReceipt
from streams.intake import lanes, repairs, stored
from streams.intake.timers import TimerIndex, clock_message, read_clock
from streams.intake.working import StateUnreadable, Working
from streams.kafka import topics, transport
from streams.kafka.outlets import Outlets, describe, enter
from streams.runtime.clock import now_for
from streams.runtime.settings import Settings
from streams.versions.in_force import Versions

log = structlog.get_logger(__name__)

InputOutcome = Literal["accepted", "duplicate", "dead_lettered", "forwarded"]


class Intake:
    """The engine's side of a worker: its tables, its timer index, and how one input runs."""

    def __init__(
        self, app: faust.App, settings: Settings, versions: Versions, out: Outlets
    ) -> None:
        self.app, self.settings, self.versions, self.out = app, settings, versions, out
        self.ticks_name = settings.topic(topics.TIMER_TICKS)
        self.receipts_name = settings.topic(topics.DELIVERY_RECEIPTS)
        self.outbound_name = settings.topic(topics.NOTIFICATIONS_OUTBOUND)
        self.urgent_name = settings.topic(topics.NOTIFICATIONS_URGENT)
        self.repairs_name = settings.topic(topics.STATE_REPAIRS)
        # Bytes, not dicts: streams/intake/stored.py says why.
        self.customers = transport.table(
            app, "customers", partitions=settings.partitions, value_type=bytes
        )
        self.seen = transport.table(app, "seen-event-ids", partitions=settings.partitions)
        self.window = timedelta(hours=settings.dedupe_window_hours)
        self.index = TimerIndex()
        self.forwarding: set[tuple[str, str]] = set()
        """(topic, source) pairs whose inputs were forwarded, said once each in the log."""
        self.turn = asyncio.Lock()
        """Held for a whole batch, read to write-back: the lanes' agents take turns. The
        lock is fair, so an urgent batch waits for one batch of the other lane at most."""

    def lane(self, priority: str) -> str:
        """The topic of a notification request of `priority`."""
        if priority == "urgent" and self.settings.lanes:
            return self.urgent_name
        return self.outbound_name

    async def run(self, stream: faust.StreamT[bytes]) -> None:
        """Batches of inputs; each customer's state is read and written once per batch."""
        settings = self.settings
        async for events in stream.take_events(  # type: ignore[attr-defined]  # faust's StreamT omits it
            settings.intake_batch, within=settings.intake_batch_wait_s
        ):
            async with self.turn:
                await self._batch(events)

    async def _batch(self, events: list[faust.EventT[bytes]]) -> None:
        settings, out = self.settings, self.out
        work = Working(self.customers, self.seen, self.window, settings.dedupe_max_ids, enter)
        for event in events:
            enter(event)
            try:
                outcome = await self.handle(work, event)
            except StateUnreadable as exc:
                await out.dead_letter(event, "state_unreadable", _unreadable(exc))
                outcome = "dead_lettered"
            except Exception as exc:  # never let Faust ack a message we did not handle
                await out.dead_letter(event, "internal_error", describe(exc))
                outcome = "dead_lettered"
            out.metrics.inputs.inc(event.message.topic, outcome)
        limit = settings.producer_max_request_bytes - 1024  # the key and the framing
        flushed = await work.flush(out.deliver, out.record_encoded, self.lane, limit)
        for event, failure in flushed:
            enter(event)
            reason = describe(failure, "saving the customer's state")
            await out.dead_letter(event, "internal_error", reason)

    async def handle(self, work: Working, event: faust.EventT[bytes]) -> InputOutcome:
        """One input; what became of it, for `clarion_inputs_total`."""
        if event.message.topic == self.ticks_name:
            return await self._tick(work, event)
        if event.message.topic == self.receipts_name:
            return await self._receipt(work, event)
        if event.message.topic == self.repairs_name:
            return await self._repair(work, event)
        return await self._event(work, event)

    async def _tick(self, work: Working, event: faust.EventT[bytes]) -> InputOutcome:
        try:
            at = read_clock(event.message.value or b"")
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"not a clock message: {type(exc).__name__.removesuffix('Error').lower()}"
            await self.out.dead_letter(event, "invalid_clock", reason)
            return "dead_lettered"
        await self.fire_due(work, event, at)
        return "accepted"

    async def _receipt(self, work: Working, event: faust.EventT[bytes]) -> InputOutcome:
        try:
            receipt = DeliveryReceipt.model_validate_json(event.message.value or b"")
        except ValidationError as exc:
            await self.out.dead_letter(event, "invalid_receipt", field_errors(exc))
            return "dead_lettered"
        receipt_id = receipt.receipt_id
        seen_ids = work.recent(receipt.customer_id, event) if receipt_id else None
        if seen_ids is not None and receipt_id is not None and receipt_id in seen_ids:
            log.info("receipt.duplicate_dropped", receipt_id=receipt.receipt_id)
            return "duplicate"
        now = now_for(self.settings.clock, receipt.at)
        await self.fire_before(work, event, receipt.customer_id, now)
        await self.apply(work, receipt.customer_id, event, receipt, now)
        if seen_ids is not None and receipt_id:
            seen_ids.add(receipt_id, datetime.now(UTC))
        return "accepted"

    async def _repair(self, work: Working, event: faust.EventT[bytes]) -> InputOutcome:
        msg = event.message
        customer = (msg.key or b"").decode(errors="replace")
        home = topics.home_partition(msg.key or b"", self.settings.partitions)
        if msg.partition != home:
            reason = f"not on customer {customer!r}'s partition {home}, where their state is kept"
            await self.out.dead_letter(event, "invalid_repair", reason)
            return "dead_lettered"
        checked = repairs.check(msg.value or b"", msg.key, work.stored(customer))
        if isinstance(checked, str):
            await self.out.dead_letter(event, "invalid_repair", checked)
            return "dead_lettered"
        repair, state = checked.repair, checked.state
        work.replace(customer, msg.partition, event, state)
        work.emit(customer, (), (repairs.decision(repair, self.versions.policies.latest.version),))
        if state.due is not None:
            self.index.push(msg.partition, state.due, customer)
        log.warning(
            "state.repaired",
            customer_id=customer,
            repair_id=repair.repair_id,
            operator=repair.operator,
            dropped=len(repair.dropped),
        )
        return "accepted"

    async def _event(self, work: Working, event: faust.EventT[bytes]) -> InputOutcome:
        msg, settings = event.message, self.settings
        checked = check_event(msg.value or b"", msg.key, max_bytes=settings.max_message_bytes)
        if isinstance(checked, Rejection):
            await self.out.dead_letter(event, checked.code, checked.reason)
            return "dead_lettered"
        cid = checked.customer_id
        home = topics.home_partition(msg.key or b"", settings.partitions)  # the key is cid
        if msg.partition != home:
            if settings.strict_partitioning:
                reason = _off_home(cid, home, msg, settings)
                await self.out.dead_letter(event, "wrong_partition", reason)
                return "dead_lettered"
            await self.out.forward(event, home)
            self._forwarded(msg.topic, checked.source, home, msg.partition)
            return "forwarded"
        recent = work.recent(cid, event)
        if checked.event_id in recent:
            log.info("input.duplicate_dropped", event_id=checked.event_id, customer_id=cid)
            return "duplicate"
        now = now_for(settings.clock, checked.occurred_at)
        await self.fire_before(work, event, cid, now)  # what was due before this input first
        await self.apply(work, cid, event, checked, now)
        recent.add(checked.event_id, datetime.now(UTC))
        return "accepted"

    def _forwarded(self, topic: str, source: str, home: int, partition: int) -> None:
        """Say so once per topic and producer (the events' `source`), with the fix."""
        if (topic, source) in self.forwarding:
            return
        self.forwarding.add((topic, source))
        log.warning(
            "input.forwarded",
            topic=topic,
            source=source,
            partition=partition,
            home=home,
            fix="this producer's partitioner is not Kafka's default (murmur2 of the key); "
            "librdkafka producers (confluent-kafka, Go, .NET, Node) should set "
            "partitioner=murmur2_random, which saves a hop per message",
        )

    async def apply(
        self, work: Working, customer: str, event: faust.EventT[bytes], item: Input, now: datetime
    ) -> None:
        """One engine step for one customer, on the batch's working copy of its state."""
        partition = event.message.partition
        state = work.state(customer, partition, event)
        outcome = decide(state, item, now, self.versions.at(now), self.versions.policies.known)
        work.emit(customer, outcome.notifications, outcome.decisions)
        if outcome.state is not state:
            work.put(customer, outcome.state)
        due = outcome.state.due
        if due is not None:
            self.index.push(partition, due, customer)

    async def fire_before(
        self, work: Working, event: faust.EventT[bytes], customer: str, now: datetime
    ) -> None:
        """What fell due before an input, fired at its own instant ahead of the input.

        On the wall clock, every customer of the partition due by now. On the event
        clock, the input's own customer only: another customer's input says nothing of
        this customer's time, and one forwarded from another partition (or held up
        on another topic) may still be on its way, so its steps wait for the
        customer's own inputs or for a clock message on `timer-ticks`.
        """
        if self.settings.clock == "wall":
            await self.fire_due(work, event, now)
            return
        for _ in range(1000):  # each firing moves the customer's due instant on
            stamp = work.due(customer)
            due = None if stamp is None else datetime.fromisoformat(stamp)
            if due is None or due > now:
                return
            await self.apply(work, customer, event, Tick(customer), due)
        raise RuntimeError(f"customer {customer!r} had over 1000 steps due by {now.isoformat()}")

    async def fire_due(self, work: Working, event: faust.EventT[bytes], upto: datetime) -> None:
        """Run every customer whose next step is due by `upto`, on the partition's clock."""
        partition = event.message.partition
        if not self.index.loaded(partition):
            await self.load_index(partition)
        while (entry := self.index.pop_due(partition, upto)) is not None:
            due, customer = entry
            if work.due(customer) != due.isoformat():
                continue  # stale: the step fired, moved or was cancelled since
            if self.settings.clock == "event":
                now = due
            else:
                now = max(due, datetime.now(UTC))
                self.out.metrics.lateness.observe((now - due).total_seconds())
            await self.apply(work, customer, event, Tick(customer), now)

    async def load_index(self, wanted: int) -> None:
        """Rebuild the timer index from the table, for every partition not indexed yet.

        One pass over the table serves them all (a pass per partition would cost
        partitions x customers). It yields to the event loop every few thousand
        customers, so health checks and the other agents go on meanwhile; only
        this agent writes the table, and it is the one waiting here, so the table
        does not change under the iteration.
        """
        started = time.perf_counter()
        found: dict[int, list[tuple[datetime, str]]] = {wanted: []}
        # items(), not keys() and get(): RocksDB's get() looks only in the partition
        # of the event being handled, and this pass reads every partition.
        for n, (customer, value) in enumerate(self.customers.items()):
            top = stored.head(value)
            if top is not None and top.due and not self.index.loaded(top.partition):
                entry = (datetime.fromisoformat(top.due), customer)
                found.setdefault(top.partition, []).append(entry)
            if n % 5000 == 4999:
                await asyncio.sleep(0)
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        for partition, entries in found.items():
            self.index.load(partition, entries)
            log.info(
                "timers.loaded", partition=partition, pending=len(entries), elapsed_ms=elapsed_ms
            )


def install(app: faust.App, settings: Settings, versions: Versions, out: Outlets) -> Intake:
    """The intake agents (a lane each), the wall-clock ticker, and the timer index kept
    across rebalances."""
    intake = Intake(app, settings, versions, out)
    inputs = app.topic(
        *(settings.topic(n) for n in topics.INPUTS),
        intake.ticks_name,
        intake.receipts_name,
        intake.repairs_name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )

    # mode's SignalHandlerT rejects every async handler, even one of its exact shape.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(sender: object, revoked: set[TP], **_: object) -> None:
        intake.index.forget({tp.partition for tp in revoked})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: object, assigned: set[TP], **_: object) -> None:
        intake.index.forget({tp.partition for tp in assigned})  # rebuilt on first use

    if settings.clock == "wall":
        ticks = out.topic(topics.TIMER_TICKS)

        @app.timer(interval=settings.tick_interval_s)  # type: ignore[untyped-decorator]  # untyped in faust
        async def tick() -> None:
            """Advance the clock of every timer partition this worker owns."""
            now = clock_message(datetime.now(UTC))
            for tp in app.consumer.assignment():
                if tp.topic == intake.ticks_name:
                    await ticks.send(value=now, partition=tp.partition)

    @app.agent(inputs, name="intake", concurrency=1)
    async def intake_agent(stream: faust.StreamT[bytes]) -> None:
        await out.guard.run_agent("intake", intake.run(stream))

    @app.agent(out.topic(topics.ACCOUNT_EVENTS_URGENT), name="intake-urgent", concurrency=1)
    async def urgent_agent(stream: faust.StreamT[bytes]) -> None:
        await out.guard.run_agent("intake-urgent", intake.run(stream))

    if settings.lanes_route_by_type:

        def urgent_types() -> frozenset[str]:
            """Urgent in the set in force, or in one published to come: a copy too many is
            dropped as a duplicate, a copy too few waits behind the backlog."""
            return versions.in_force_now().urgent_triggers() | (
                versions.policies.latest.urgent_triggers()
            )

        @app.service
        class _Router(lanes.TypeRouter):
            def __init__(self, **kw: Any) -> None:
                super().__init__(settings, urgent_types, out.metrics, **kw)

    return intake


def _unreadable(exc: StateUnreadable) -> str:
    return (
        f"customer {exc.customer!r}'s stored state cannot be read (an older version or a "
        "bug wrote it), so none of their inputs can be applied; they are kept here until "
        "an operator repairs the state (docs/operations.md, 'A customer whose state cannot "
        "be read') and replays them with --code state_unreadable"
    )


def _off_home(cid: str, home: int, msg: faust.types.Message, settings: Settings) -> str:
    return (
        f"customer {cid!r} belongs on partition {home} of {settings.partitions} "
        f"(Kafka's default partitioner: murmur2 of the key), not {msg.partition}, "
        "where its state is not kept; librdkafka producers (confluent-kafka, Go, "
        ".NET, Node) must set partitioner=murmur2_random"
    )
