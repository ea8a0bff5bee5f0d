"""The dispatch agents: `notifications-outbound` -> render -> channel -> `decisions`.

`dispatch` takes batches, so provider calls overlap (streams/dispatch/dispatcher.py);
`dispatch-urgent` does the same for the urgent lane (`notifications-outbound-urgent`),
so an urgent request never waits for a batch of others to settle: it meets them only
at the rate limiter, where it goes first;
`retry` brings back, when due, what a provider could not take yet
(`notification-retries`); `sms-replies` (streams/dispatch/replies.py) resolves
who an SMS reply comes from. Each runs with ``concurrency=1`` and lets no
exception escape: Faust would ack the message and it would be gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import faust
from pydantic import ValidationError

from channels.base import Message, SendResult
from channels.router import ChannelRouter
from schemas.intake import field_errors
from schemas.notifications import DeliveryReceipt, NotificationRequest
from streams.dispatch import replies
from streams.dispatch.calls import LiveCalls
from streams.dispatch.dispatcher import Attempt, Dispatcher, Renderer, Sinks
from streams.kafka import topics, transport
from streams.kafka.outlets import Outlets, describe, enter
from streams.runtime.settings import Settings

Links = Callable[[NotificationRequest], dict[str, str]]
"""The links a message carries (the signed preference page), by request."""


def install(
    app: faust.App,
    settings: Settings,
    templates: Renderer,
    channels: ChannelRouter,
    out: Outlets,
    calls: LiveCalls,
    links: Links,
) -> None:
    """The providers' side: requests out, retries, and SMS replies; channels closed at stop."""
    dispatcher = _dispatcher(app, settings, templates, channels, out, calls, links)

    @app.agent(out.topic(topics.NOTIFICATIONS_OUTBOUND), name="dispatch", concurrency=1)
    async def dispatch(stream: faust.StreamT[bytes]) -> None:
        await out.guard.run_agent("dispatch", _dispatch(stream, settings, dispatcher, out))

    @app.agent(out.topic(topics.NOTIFICATIONS_URGENT), name="dispatch-urgent", concurrency=1)
    async def dispatch_urgent(stream: faust.StreamT[bytes]) -> None:
        await out.guard.run_agent("dispatch-urgent", _dispatch(stream, settings, dispatcher, out))

    @app.agent(out.topic(topics.NOTIFICATION_RETRIES), name="retry", concurrency=1)
    async def retry(stream: faust.StreamT[bytes]) -> None:
        await out.guard.run_agent("retry", _retry(stream, dispatcher, out))

    @app.service
    class _CloseChannels(faust.Service):
        async def on_stop(self) -> None:
            await channels.close()


async def _dispatch(
    stream: faust.StreamT[bytes], settings: Settings, dispatcher: Dispatcher, out: Outlets
) -> None:
    """Batches of requests, so provider calls overlap."""
    async for events in stream.take_events(settings.dispatch_concurrency, within=0.05):  # type: ignore[attr-defined]  # faust's StreamT omits it
        batch: list[tuple[faust.EventT[bytes], Attempt]] = []
        for event in events:
            try:
                value = event.message.value or b""
                batch.append((event, Attempt(NotificationRequest.model_validate_json(value))))
            except ValidationError as exc:
                enter(event)
                await out.dead_letter(event, "invalid_notification", field_errors(exc))
        await _run_batch(dispatcher, out, batch, park=True)


async def _retry(stream: faust.StreamT[bytes], dispatcher: Dispatcher, out: Outlets) -> None:
    """Each retry when it is due: in partition order, so one waits behind another."""
    async for event in stream.events():
        try:
            item = Attempt.from_json(event.message.value or b"")
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            reason = "not a retry: " + (
                field_errors(exc) if isinstance(exc, ValidationError) else "not its JSON shape"
            )
            await out.dead_letter(event, "invalid_notification", reason)
            continue
        if item.not_before is not None:
            wait = (item.not_before - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
        await _run_batch(dispatcher, out, [(event, item)], park=False)


def _dispatcher(
    app: faust.App,
    settings: Settings,
    templates: Renderer,
    channels: ChannelRouter,
    out: Outlets,
    calls: LiveCalls,
    links: Links,
) -> Dispatcher:
    """The dispatcher, wired to the topics and the `dispatched-ids` table."""
    retries_name = settings.topic(topics.NOTIFICATION_RETRIES)
    receipts_name = settings.topic(topics.DELIVERY_RECEIPTS)
    dispatched = transport.table(app, "dispatched-ids", partitions=settings.partitions)
    mark_sms = replies.install(app, settings, out)

    async def send_retry(item: Attempt) -> None:
        await out.produce(retries_name, item.request.customer_id.encode(), item.to_json())

    async def send_receipt(receipt: DeliveryReceipt) -> None:
        value = receipt.model_dump_json().encode()
        await out.produce(receipts_name, receipt.customer_id.encode(), value)

    async def accepted(request: NotificationRequest, message: Message, result: SendResult) -> None:
        """After a provider took a message: where its replies and its call verdict find it."""
        await mark_sms(request)
        if request.channel == "voice" and result.provider_message_id:
            calls.add(result.provider_message_id, message)

    sinks = Sinks(
        record=out.record,
        retry=send_retry,
        receipt=send_receipt,
        handled_get=dispatched.get,
        handled_set=dispatched.write,
        flush=app.producer.flush,
        accepted=accepted,
    )
    return Dispatcher(settings, templates, channels, sinks, links, out.metrics)


async def _run_batch(
    dispatcher: Dispatcher,
    out: Outlets,
    batch: list[tuple[faust.EventT[bytes], Attempt]],
    park: bool,
) -> None:
    try:
        items = [item for _, item in batch]
        await dispatcher.run(items, lambda i: enter(batch[i][0]), park)
    except Exception as exc:  # never let Faust ack what we did not handle
        for event, _ in batch:
            enter(event)
            await out.dead_letter(event, "internal_error", describe(exc))
