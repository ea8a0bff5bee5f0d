"""The Faust app: topics, tables and the agents that drive the engine and the channels.

Two agents, both with ``concurrency=1`` (more can lose messages, see
pitfalls.md), and neither lets an exception escape: Faust would ack the
message and it would be gone. What cannot be processed goes to `dead-letters`.

- `intake`: account events, profiles and preferences -> validate -> dedupe ->
  engine -> `decisions` (hand-offs also to `agent-tasks`) and
  `notifications-outbound`. Clock messages on `timer-ticks` fire the steps
  falling due (streams/intake/timers.py says how timers survive restarts).
  Delivery receipts (from the dispatcher and, later, the providers' webhooks)
  reach the engine the same way, on `delivery-receipts`.
- `dispatch`: `notifications-outbound` -> render -> channel -> `decisions`
  (streams/dispatch/dispatcher.py); `retry` brings back, when due, what a provider
  could not take yet (`notification-retries`).

One process runs both sides (`CLARION_ROLE=all`, the default), or each runs
apart: `intake` (the engine, its timers, the API and the preference page) and
`dispatch` (the providers, their webhooks and the SMS replies), each in its own
consumer group, so each can have its own cores and be scaled on its own. The
tables' changelogs are named after `CLARION_APP_ID` in every role, so a
deployment can move between the two layouts and keep its state.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import faust
import faust.streams as faust_streams
import structlog
from faust.types import TP
from pydantic import ValidationError

from channels.base import Channel, Message, SendResult
from channels.router import ChannelRouter
from channels.templates import Templates
from policies.engine import Input, Tick, decide
from policies.loader import load_directory
from policies.model import PolicySet
from schemas.dead_letters import DeadLetter, RejectCode
from schemas.decisions import Decision
from schemas.intake import Rejection, check_event
from schemas.notifications import DeliveryReceipt, NotificationRequest
from streams.dispatch import replies
from streams.dispatch.dispatcher import Attempt, Dispatcher, Sinks
from streams.dispatch.providers import build_channels
from streams.intake import stored
from streams.intake.timers import TimerIndex, clock_message, read_clock
from streams.intake.working import Working
from streams.kafka import topics, transport
from streams.kafka.transport import ClarionApp
from streams.runtime import security
from streams.runtime.clock import now_for
from streams.runtime.metrics import CONTENT_TYPE, Metrics
from streams.runtime.settings import Settings
from streams.web import api, page, webhooks
from streams.web.links import LinkKeys
from streams.web.webhooks import LiveCalls

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICIES = REPO_ROOT / "deploy" / "policies"


def policies_dir(settings: Settings) -> Path:
    return settings.policies_dir or EXAMPLE_POLICIES


def templates_dir(policies: Path, explicit: Path | None = None) -> Path:
    """`explicit`, else `templates/` beside the policy files, else the bundled examples."""
    if explicit is not None:
        return explicit
    beside = policies / "templates"
    return beside if beside.is_dir() else EXAMPLE_POLICIES / "templates"


def create_app(
    settings: Settings, policy: PolicySet | None = None, channel: Channel | None = None
) -> faust.App:
    policy = policy or load_directory(policies_dir(settings))
    app = ClarionApp(
        settings.group(),
        changelog_prefix=settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=security.credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Built-in pages off: /table would serve customer data to anyone on the port.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            settings.topic(name),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    dead_letters = topic(topics.DEAD_LETTERS)
    metrics = Metrics()

    async def dead_letter(event: faust.EventT, code: RejectCode, reason: str) -> None:
        msg = event.message
        letter = DeadLetter(
            code=code,
            reason=reason,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key_b64=DeadLetter.encode(msg.key),
            value_b64=DeadLetter.encode(msg.value) or "",
            received_at=datetime.now(UTC),
        )
        await dead_letters.send(key=msg.key, value=letter.model_dump_json().encode())
        metrics.dead_letters.inc(code)
        log.warning(
            "input.dead_lettered",
            code=code,
            reason=reason,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
        )

    decisions_name = settings.topic(topics.DECISIONS)
    agent_tasks_name = settings.topic(topics.AGENT_TASKS)

    async def produce(topic_name: str, key: bytes, value: bytes) -> None:
        """Straight to the producer: `Topic.send`'s per-message machinery cost more than
        the rest of an input together (the topics exist; ensure_topics made them)."""
        await app.producer.send(topic_name, key, value, None, None, None)

    async def record(decision: Decision) -> None:
        value = decision.model_dump_json().encode()
        await produce(decisions_name, decision.customer_id.encode(), value)
        metrics.decisions.inc(decision.action, decision.channel or "")
        if decision.action == "handoff":
            await produce(agent_tasks_name, decision.customer_id.encode(), value)

    shell = _Shell(settings, policy, topic, produce, record, dead_letter, metrics)
    pending = _install_intake(app, shell) if settings.role != "dispatch" else None
    if settings.role != "intake":
        _install_dispatch(app, shell, channel)

    def is_ready() -> bool:
        return app.tables.recovery.completed.is_set() and not app.rebalancing

    metrics.gauge("clarion_ready", "1 when tables are recovered and no rebalance runs.", is_ready)
    if pending is not None:
        metrics.gauge("clarion_pending_timers", "Timers this worker holds.", pending)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Liveness: the worker's event loop answers."""
        return web.json({"status": "ok"})

    @app.page("/metrics")
    async def scraped(web: Any, request: Any) -> Any:
        """Prometheus' text format (streams/runtime/metrics.py)."""
        return web.text(metrics.render(), content_type=CONTENT_TYPE)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Readiness: tables recovered and no rebalance in progress; 503 until then."""
        recovered = app.tables.recovery.completed.is_set()
        state = {
            "ready": is_ready(),
            "recovered": recovered,
            "rebalancing": app.rebalancing,
            "pending_timers": pending() if pending else 0,
        }
        return web.json(state, status=200 if state["ready"] else 503)

    return app


@dataclass(frozen=True, slots=True)
class _Shell:
    """What both roles' agents use: the settings, the policy, and the ways out."""

    settings: Settings
    policy: PolicySet
    topic: Callable[[str], faust.TopicT]
    produce: Callable[[str, bytes, bytes], Awaitable[None]]
    record: Callable[[Decision], Awaitable[None]]
    dead_letter: Callable[[faust.EventT, RejectCode, str], Awaitable[None]]
    metrics: Metrics


InputOutcome = Literal["accepted", "duplicate", "dead_lettered"]


def _install_intake(app: faust.App, shell: _Shell) -> Callable[[], int]:
    """The engine's side: inputs, timers, the API and the preference page.

    Returns how many timers this worker holds, for `/ready`.
    """
    settings, policy, topic = shell.settings, shell.policy, shell.topic
    produce, record, dead_letter = shell.produce, shell.record, shell.dead_letter
    ticks_name = settings.topic(topics.TIMER_TICKS)
    receipts_name = settings.topic(topics.DELIVERY_RECEIPTS)
    outbound_name = settings.topic(topics.NOTIFICATIONS_OUTBOUND)
    inputs = app.topic(
        *(settings.topic(n) for n in topics.INPUTS),
        ticks_name,
        receipts_name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    ticks = topic(topics.TIMER_TICKS)
    # Bytes, not dicts: streams/intake/stored.py says why.
    customers = transport.table(app, "customers", partitions=settings.partitions, value_type=bytes)
    seen = transport.table(app, "seen-event-ids", partitions=settings.partitions)
    window = timedelta(hours=settings.dedupe_window_hours)
    index = TimerIndex()

    async def apply(
        work: Working, customer: str, event: faust.EventT, item: Input, now: datetime
    ) -> None:
        """One engine step for one customer, on the batch's working copy of its state."""
        partition = event.message.partition
        state = work.state(customer, partition, event)
        outcome = decide(state, item, now, policy)
        for decision in outcome.decisions:
            await record(decision)
        for request in outcome.notifications:
            await produce(outbound_name, customer.encode(), request.model_dump_json().encode())
        if outcome.state is not state:
            work.put(customer, outcome.state)
        due = outcome.state.due
        if due is not None:
            index.push(partition, due, customer)

    async def load_index(wanted: int) -> None:
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
        for n, (customer, value) in enumerate(customers.items()):
            top = stored.head(value)
            if top is not None and top.due and not index.loaded(top.partition):
                entry = (datetime.fromisoformat(top.due), customer)
                found.setdefault(top.partition, []).append(entry)
            if n % 5000 == 4999:
                await asyncio.sleep(0)
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        for partition, entries in found.items():
            index.load(partition, entries)
            log.info(
                "timers.loaded", partition=partition, pending=len(entries), elapsed_ms=elapsed_ms
            )

    async def fire_due(work: Working, event: faust.EventT, upto: datetime) -> None:
        """Run every customer whose next step is due by `upto`, on the partition's clock."""
        partition = event.message.partition
        if not index.loaded(partition):
            await load_index(partition)
        while (entry := index.pop_due(partition, upto)) is not None:
            due, customer = entry
            if work.due(customer) != due.isoformat():
                continue  # stale: the step fired, moved or was cancelled since
            if settings.clock == "event":
                now = due
            else:
                now = max(due, datetime.now(UTC))
                shell.metrics.lateness.observe((now - due).total_seconds())
            await apply(work, customer, event, Tick(customer), now)

    @app.on_partitions_revoked.connect
    async def _revoked(sender: object, revoked: set[TP], **_: object) -> None:
        index.forget({tp.partition for tp in revoked})

    @app.on_partitions_assigned.connect
    async def _assigned(sender: object, assigned: set[TP], **_: object) -> None:
        index.forget({tp.partition for tp in assigned})  # rebuilt from the table on first use

    if settings.clock == "wall":

        @app.timer(interval=settings.tick_interval_s)
        async def tick() -> None:
            """Advance the clock of every timer partition this worker owns."""
            now = clock_message(datetime.now(UTC))
            for tp in app.consumer.assignment():
                if tp.topic == ticks_name:
                    await ticks.send(value=now, partition=tp.partition)

    @app.agent(inputs, name="intake", concurrency=1)
    async def intake(stream: faust.StreamT[bytes]) -> None:
        """Batches of inputs; each customer's state is read and written once per batch."""
        async for events in stream.take_events(
            settings.intake_batch, within=settings.intake_batch_wait_s
        ):
            work = Working(customers, seen, window, settings.dedupe_max_ids, enter=_enter)
            for event in events:
                _enter(event)
                try:
                    outcome = await handle(work, event)
                except Exception as exc:  # never let Faust ack a message we did not handle
                    await dead_letter(event, "internal_error", _describe(exc))
                    outcome = "dead_lettered"
                shell.metrics.inputs.inc(event.message.topic, outcome)
            for event, exc in await work.flush():
                _enter(event)
                await dead_letter(event, "internal_error", "state not saved: " + _describe(exc))

    async def handle(work: Working, event: faust.EventT) -> InputOutcome:
        """One input; what became of it, for `clarion_inputs_total`."""
        raw: bytes = event.message.value or b""
        if event.message.topic == ticks_name:
            try:
                at = read_clock(raw)
            except (ValueError, KeyError, TypeError) as exc:
                await dead_letter(event, "invalid_clock", f"not a clock message: {exc}")
                return "dead_lettered"
            await fire_due(work, event, at)
            return "accepted"
        if event.message.topic == receipts_name:
            try:
                receipt = DeliveryReceipt.model_validate_json(raw)
            except ValidationError as exc:
                await dead_letter(event, "invalid_receipt", str(exc))
                return "dead_lettered"
            seen_ids = work.recent(receipt.customer_id, event) if receipt.receipt_id else None
            if seen_ids is not None and receipt.receipt_id in seen_ids:
                log.info("receipt.duplicate_dropped", receipt_id=receipt.receipt_id)
                return "duplicate"
            now = now_for(settings.clock, receipt.at)
            await fire_due(work, event, now)
            await apply(work, receipt.customer_id, event, receipt, now)
            if seen_ids is not None and receipt.receipt_id:
                seen_ids.add(receipt.receipt_id, datetime.now(UTC))
            return "accepted"
        checked = check_event(raw, event.message.key, max_bytes=settings.max_message_bytes)
        if isinstance(checked, Rejection):
            await dead_letter(event, checked.code, checked.reason)
            return "dead_lettered"
        cid = checked.customer_id
        msg = event.message
        home = topics.home_partition(msg.key or b"", settings.partitions)  # the key is cid
        if msg.partition != home:
            reason = (
                f"customer {cid!r} belongs on partition {home} of {settings.partitions} "
                f"(Kafka's default partitioner: murmur2 of the key), not {msg.partition}, "
                "where its state is not kept; librdkafka producers (confluent-kafka, Go, "
                ".NET, Node) must set partitioner=murmur2_random"
            )
            await dead_letter(event, "wrong_partition", reason)
            return "dead_lettered"
        recent = work.recent(cid, event)
        if checked.event_id in recent:
            log.info("input.duplicate_dropped", event_id=checked.event_id, customer_id=cid)
            return "duplicate"
        now = now_for(settings.clock, checked.occurred_at)
        await fire_due(work, event, now)  # what was due before this input happens first
        await apply(work, cid, event, checked, now)
        recent.add(checked.event_id, datetime.now(UTC))
        return "accepted"

    api.install(app, settings, policy, produce, customers)
    page.install(app, settings, policy, produce, customers)
    return index.pending


def _install_dispatch(app: faust.App, shell: _Shell, channel: Channel | None) -> None:
    """The providers' side: requests out, retries, their webhooks, and SMS replies."""
    settings, topic, produce = shell.settings, shell.topic, shell.produce
    record, dead_letter = shell.record, shell.dead_letter
    folder = templates_dir(policies_dir(settings), settings.templates_dir)
    templates = Templates(folder, shell.policy.default_locale)
    channels = (
        ChannelRouter({"sms": channel, "email": channel, "voice": channel})
        if channel is not None
        else build_channels(settings)
    )
    outbound = topic(topics.NOTIFICATIONS_OUTBOUND)
    retries_name = settings.topic(topics.NOTIFICATION_RETRIES)
    retries = topic(topics.NOTIFICATION_RETRIES)
    receipts_name = settings.topic(topics.DELIVERY_RECEIPTS)
    dispatched = transport.table(app, "dispatched-ids", partitions=settings.partitions)

    async def send_retry(item: Attempt) -> None:
        await produce(retries_name, item.request.customer_id.encode(), item.to_json())

    async def send_receipt(receipt: DeliveryReceipt) -> None:
        value = receipt.model_dump_json().encode()
        await produce(receipts_name, receipt.customer_id.encode(), value)

    mark_sms = replies.install(app, settings, produce, dead_letter, _enter)
    calls = LiveCalls()
    webhooks.install(app, settings, produce, calls, channels.channel_for("voice"))
    link_keys = (
        LinkKeys.parse(settings.link_keys.get_secret_value()) if settings.link_keys else None
    )

    async def accepted(request: NotificationRequest, message: Message, result: SendResult) -> None:
        """After a provider took a message: where its replies and its call verdict find it."""
        await mark_sms(request)
        if request.channel == "voice" and result.provider_message_id:
            calls.add(result.provider_message_id, message)

    def links(request: NotificationRequest) -> dict[str, str]:
        if link_keys is None or settings.public_url is None:
            return {}
        expires = datetime.now(UTC) + timedelta(days=settings.link_ttl_days)
        token = link_keys.sign(request.customer_id, expires)
        return {"preferences": f"{settings.public_url.rstrip('/')}/p/{token}"}

    dispatcher = Dispatcher(
        settings,
        templates,
        channels,
        Sinks(
            record=record,
            retry=send_retry,
            receipt=send_receipt,
            handled_get=dispatched.get,
            handled_set=dispatched.write,
            flush=app.producer.flush,
            accepted=accepted,
        ),
        links,
    )

    @app.agent(outbound, name="dispatch", concurrency=1)
    async def dispatch(stream: faust.StreamT[bytes]) -> None:
        """Batches of requests, so provider calls overlap (see streams/dispatch/dispatcher.py)."""
        async for events in stream.take_events(settings.dispatch_concurrency, within=0.05):
            batch: list[tuple[faust.EventT, Attempt]] = []
            for event in events:
                try:
                    value = event.message.value or b""
                    batch.append((event, Attempt(NotificationRequest.model_validate_json(value))))
                except ValidationError as exc:
                    _enter(event)
                    await dead_letter(event, "invalid_notification", str(exc))
            await run_batch(batch)

    @app.agent(retries, name="retry", concurrency=1)
    async def retry(stream: faust.StreamT[bytes]) -> None:
        """Each retry when it is due: in partition order, so one waits behind another."""
        async for event in stream.events():
            try:
                item = Attempt.from_json(event.message.value or b"")
            except (ValidationError, ValueError, KeyError, TypeError) as exc:
                await dead_letter(event, "invalid_notification", f"not a retry: {exc}")
                continue
            if item.not_before is not None:
                wait = (item.not_before - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
            await run_batch([(event, item)], park=False)

    async def run_batch(batch: list[tuple[faust.EventT, Attempt]], park: bool = True) -> None:
        try:
            items = [item for _, item in batch]
            await dispatcher.run(items, lambda i: _enter(batch[i][0]), park)
        except Exception as exc:  # never let Faust ack what we did not handle
            for event, _ in batch:
                _enter(event)
                await dead_letter(event, "internal_error", _describe(exc))

    @app.service
    class _CloseChannels(faust.Service):
        async def on_stop(self) -> None:
            await channels.close()


def _enter(event: faust.EventT) -> None:
    """Make `event` the one this task's table writes belong to (Faust routes them by it).

    Only the task-local context variable: `Stream._set_current_event` would also
    overwrite the stream's shared `current_event`, which `take_events`' buffer
    reads, and the next batch then loses a message (that bug cost one message
    per batch boundary in the scale-out test).
    """
    faust_streams._current_event.set(weakref.ref(event))


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"could not process: {type(exc).__name__}: {exc}{where}"
