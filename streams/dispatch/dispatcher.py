"""The dispatcher: notification requests -> rendered messages -> providers, never twice.

A batch goes through four phases. The first and last run in the agent's own
task, one request at a time, because they write the `dispatched-ids` table and
Faust routes a table write by the event being processed. Only the provider
calls in between run concurrently, under the rate limits and the circuit
breakers.

1. Idempotency: skip ids already `done` (or owned by the retry path), and mark
   the rest `attempting`.
2. Flush the table's changelog, so a crash after this point is remembered.
3. Render and send, concurrently (`dispatch_concurrency` calls in flight).
4. Record every outcome: `dispatched` or `failed` in the ledger; `done`, or
   `retry` with the request on the retry topic; a delivery receipt for the
   engine when the recipient cannot be reached this way (it falls back).

A crash between the provider's acceptance and phase 4 leaves `attempting`.
The replay then asks the provider whether it took the message; Twilio and
SendGrid cannot say, so the message is recorded `failed / unknown_outcome` and
not sent again. That window is one provider round trip per batch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from channels.base import Message, SendResult
from channels.limits import CircuitBreaker, TokenBucket, backoff, jitter
from channels.router import ChannelRouter
from channels.templates import RenderError, TemplateMissing
from schemas.decisions import Decision, dispatched_decision
from schemas.notifications import DeliveryReceipt, NotificationRequest
from streams.dispatch.handled import HandledIds
from streams.runtime.clock import now_for
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request, and which attempt at it this is (1 = the first)."""

    request: NotificationRequest
    number: int = 1
    not_before: datetime | None = None
    """Set on the retry topic only: an item without it is the original request."""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "request": self.request.model_dump(mode="json"),
                "attempt": self.number,
                "not_before": self.not_before.isoformat() if self.not_before else None,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Attempt:
        body = json.loads(raw)
        at = body.get("not_before")
        return cls(
            NotificationRequest.model_validate(body["request"]),
            int(body["attempt"]),
            datetime.fromisoformat(at) if at else None,
        )


@dataclass(frozen=True, slots=True)
class _Held:
    """Not attempted until `until` (monotonic seconds), for `why`: parked on the retry topic."""

    until: float
    why: str


Outcome = SendResult | _Held | Decision
"""What phase 3 produced for one attempt: a provider's answer, a hold, or a ledger row."""


@dataclass(frozen=True, slots=True)
class Sinks:
    """Where the dispatcher writes: the shell (the Faust app) provides these."""

    record: Callable[[Decision], Awaitable[None]]
    retry: Callable[[Attempt], Awaitable[None]]
    receipt: Callable[[DeliveryReceipt], Awaitable[None]]
    handled_get: Callable[[str], Any]
    handled_set: Callable[[str, Any], Awaitable[None]]
    flush: Callable[[], Awaitable[None]]
    accepted: Callable[[NotificationRequest, Message, SendResult], Awaitable[None]] | None = None
    """Told of each message a provider took (SMS reply routing, live calls)."""


_CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


class Renderer(Protocol):
    """Templates, or a worker's policy versions (each request in its own version's words)."""

    def render(
        self, request: NotificationRequest, links: Mapping[str, str] | None = None
    ) -> Message: ...


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        templates: Renderer,
        channels: ChannelRouter,
        sinks: Sinks,
        links: Callable[[NotificationRequest], dict[str, str]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.links = links or (lambda request: {})
        self.metrics = metrics or Metrics()
        self.settings, self.templates, self.channels, self.sinks = (
            settings,
            templates,
            channels,
            sinks,
        )
        self._in_flight = asyncio.Semaphore(settings.dispatch_concurrency)
        self._buckets: dict[str, TokenBucket] = {}
        self._marking = asyncio.Lock()
        """`dispatched-ids` has one writer at a time: the agents share this dispatcher."""
        self.breakers: dict[str, CircuitBreaker] = {}
        for route in channels.routes:  # every provider's breaker is on /metrics from the start
            self._breaker(channels.provider_for(route))
        self.metrics.gauges(
            "clarion_circuit_state",
            "A provider's circuit breaker: 0 closed, 1 half-open (one trial call), 2 open.",
            ("provider",),
            self._breaker_states,
        )
        self._rendered: dict[str, Message] = {}

    async def run(
        self, batch: Sequence[Attempt], enter: Callable[[int], None], park: bool = True
    ) -> None:
        """Dispatch a batch; `enter(i)` makes item i the event table writes belong to.

        With `park`, a send its rate limit would hold longer than `rate_park_after_s`
        goes to the retry topic instead, so one slow channel (calls at 1/s) does not
        hold back the SMS and email of its batch and of every batch behind it. The
        retry path runs with `park=False`: there a send waits for its token.
        """
        todo: list[int] = []
        claimed: set[str] = set()
        marks = _Marks(self.sinks, self.settings.dedupe_max_ids, self._marking, enter)
        for i, item in enumerate(batch):
            if item.request.notification_id in claimed:
                continue  # the same request twice in one batch (a replay): once is enough
            marks.at(i)
            if await self._claim(item, marks):
                todo.append(i)
                claimed.add(item.request.notification_id)
        await marks.write()
        if not todo:
            return
        await self.sinks.flush()  # "attempting" is durable before any provider hears of it
        outcomes = await asyncio.gather(*(self._attempt(batch[i], park) for i in todo))
        for i, outcome in zip(todo, outcomes, strict=True):
            marks.at(i)
            await self._settle(batch[i], outcome, marks)
        await marks.write()

    # -- phase 1 ----------------------------------------------------------------

    async def _claim(self, item: Attempt, marks: _Marks) -> bool:
        """Whether to send `item` now; answers a crash-interrupted attempt first."""
        request = item.request
        handled = marks.of(request.customer_id)
        status = handled.get(request.notification_id)
        if status == "done" or (status == "retry" and item.not_before is None):
            log.info("dispatch.duplicate_dropped", notification_id=request.notification_id)
            return False
        if status == "attempting":
            taken = await self.channels.accepted(request.notification_id)
            if taken is not False:
                at = self._at(request)
                if taken is None:
                    detail = "a crash during the provider call; not sent again"
                    await self.sinks.record(_failed(request, at, "unknown_outcome", detail))
                else:
                    await self.sinks.record(dispatched_decision(request, at, recovered=True))
                marks.set(request, "done")
                return False
        marks.set(request, "attempting")
        return True

    # -- phase 3 ----------------------------------------------------------------

    async def _attempt(self, item: Attempt, park: bool) -> Outcome:
        request = item.request
        try:
            message = self.templates.render(request, self.links(request))
        except (TemplateMissing, RenderError) as exc:
            return _failed(request, self._at(request), "template_error", str(exc))
        self._rendered[request.notification_id] = message
        provider = self.channels.provider_for(request.channel)
        buckets = self._buckets_for(provider, request.channel)
        wait = max(bucket.wait_s(request.priority) for bucket in buckets)
        if park and wait > self.settings.rate_park_after_s:
            return _Held(time.monotonic() + wait, "rate_limited")
        breaker = self._breaker(provider)
        if not breaker.allows(time.monotonic()):
            return _Held(breaker.reopens_at(), "circuit_open")
        retry = item.number > 1 or request.attempt > 1
        for bucket in buckets:  # the sender's, then the account's: each serves urgent first
            await bucket.acquire(request.priority, retry=retry)
        async with self._in_flight:
            result = await self.channels.send(message)
        breaker.record(result.outcome, time.monotonic())
        self.metrics.provider_calls.inc(result.provider, request.channel, result.outcome)
        return result

    # -- phase 4 ----------------------------------------------------------------

    async def _settle(self, item: Attempt, outcome: Outcome, marks: _Marks) -> None:
        request, at = item.request, self._at(item.request)
        message = self._rendered.pop(request.notification_id, None)
        if isinstance(outcome, Decision):
            marks.set(request, "done")
            await self.sinks.record(outcome)
            return
        if isinstance(outcome, _Held):
            wait = max(0.0, outcome.until - time.monotonic()) + jitter()
            await self._schedule(item, item.number, wait, outcome.why, marks)
            return
        extra = {"provider": outcome.provider, "attempt": item.number}
        if outcome.outcome == "accepted":
            marks.set(request, "done")
            mid = outcome.provider_message_id
            await self.sinks.record(
                dispatched_decision(request, at, provider_message_id=mid, **extra)
            )
            if self.sinks.accepted is not None and message is not None:
                await self.sinks.accepted(request, message, outcome)
            return
        last = outcome.outcome == "permanent" or item.number >= self.settings.retry_max_attempts
        reason = outcome.reason or f"{outcome.outcome}_failure"
        if outcome.outcome == "transient" and last:
            reason = "retries_exhausted"
        await self.sinks.record(
            _failed(request, at, reason, outcome.detail, outcome.error_code, **extra)
        )
        if not last:
            s = self.settings
            wait = backoff(item.number, s.retry_base_s, s.retry_max_s, jitter)
            wait = max(wait, outcome.retry_after_s or 0.0)
            await self._schedule(item, item.number + 1, wait, reason, marks)
            return
        marks.set(request, "done")
        await self.sinks.receipt(
            DeliveryReceipt(
                notification_id=request.notification_id,
                customer_id=request.customer_id,
                channel=request.channel,
                provider=outcome.provider,
                status="failed",
                at=at,
                error_code=outcome.error_code,
                reason=reason,
                effect=outcome.effect,
                recipient=request.recipient,
            )
        )

    async def _schedule(
        self, item: Attempt, number: int, wait_s: float, why: str, marks: _Marks
    ) -> None:
        not_before = datetime.now(UTC) + timedelta(seconds=wait_s)
        marks.set(item.request, "retry")
        await self.sinks.retry(Attempt(item.request, number, not_before))
        log.info(
            "dispatch.retry_scheduled",
            notification_id=item.request.notification_id,
            attempt=number,
            wait_s=round(wait_s, 2),
            why=why,
        )

    # -- helpers ----------------------------------------------------------------

    def _at(self, request: NotificationRequest) -> datetime:
        return now_for(self.settings.clock, request.requested_at)

    def _breaker(self, provider: str) -> CircuitBreaker:
        found = self.breakers.get(provider)
        if found is None:
            s = self.settings
            found = self.breakers[provider] = CircuitBreaker(
                s.breaker_failures, s.breaker_cooldown_s
            )
        return found

    def _breaker_states(self) -> dict[tuple[str, ...], float]:
        now = time.monotonic()
        return {
            (provider,): _CIRCUIT_STATES[breaker.state_at(now)]
            for provider, breaker in self.breakers.items()
        }

    def _buckets_for(self, provider: str, channel: str) -> list[TokenBucket]:
        """The sender's bucket, and the provider account's when its rate is set."""
        rate = {
            "twilio": self.settings.rate_twilio_account_per_s,
            "sendgrid": self.settings.rate_sendgrid_account_per_s,
        }.get(provider)
        sender = self._bucket(provider, channel)
        if rate is None:
            return [sender]
        account = self._buckets.get(provider)
        if account is None:
            account = self._buckets[provider] = TokenBucket(rate)
        return [sender, account]

    def _bucket(self, provider: str, channel: str) -> TokenBucket:
        """One bucket per provider and sender (each Twilio number has its own rate)."""
        s = self.settings
        rate, reserve = {
            "sms": (s.rate_sms_per_s, s.urgent_reserve_sms),
            "voice": (s.rate_voice_per_s, s.urgent_reserve_voice),
        }.get(channel, (s.rate_email_per_s, s.urgent_reserve_email))
        key = f"{provider}:{channel}"
        found = self._buckets.get(key)
        if found is None:
            found = self._buckets[key] = TokenBucket(rate, reserve=reserve)
        return found


class _Marks:
    """One batch's changes to `dispatched-ids`, written once per customer per phase.

    `at(i)` makes batch item i the one being handled: its event owns the table
    reads and writes of the customer it marks. Faust routes both by the event,
    and on RocksDB a read under another partition's event finds nothing: a batch
    mixes partitions, and a replay after a take-over then missed its `done`
    marks and sent again (14 messages twice in the cluster's fault test).
    Several agents dispatch at once (the two lanes, retries), and one may mark a
    customer while another waits on a provider: so only this batch's changes are
    kept, and each write applies them to what the table holds then, one writer
    at a time.
    """

    def __init__(
        self, sinks: Sinks, max_ids: int, writing: asyncio.Lock, enter: Callable[[int], None]
    ) -> None:
        self._sinks, self._max_ids, self._writing = sinks, max_ids, writing
        self._enter = enter
        self._changed: dict[str, tuple[dict[str, str], int]] = {}
        self.item = 0

    def at(self, item: int) -> None:
        self.item = item
        self._enter(item)

    def of(self, customer_id: str) -> HandledIds:
        """What the table holds for the customer now, with this batch's changes on top."""
        handled = HandledIds.from_json(self._sinks.handled_get(customer_id), self._max_ids)
        for notification_id, status in self._changed.get(customer_id, ({}, 0))[0].items():
            handled = handled.set(notification_id, status)
        return handled

    def set(self, request: NotificationRequest, status: str) -> None:
        changes, _ = self._changed.get(request.customer_id, ({}, 0))
        changes.pop(request.notification_id, None)  # the last change goes last, as in the table
        changes[request.notification_id] = status
        self._changed[request.customer_id] = (changes, self.item)

    async def write(self) -> None:
        async with self._writing:
            for customer_id, (_, item) in self._changed.items():
                self._enter(item)  # before the read too: Faust routes both by the event
                handled = self.of(customer_id)  # read now, under the lock
                await self._sinks.handled_set(customer_id, handled.to_json())
        self._changed.clear()


def _failed(
    request: NotificationRequest,
    at: datetime,
    reason: str,
    detail: str,
    error_code: str | None = None,
    **extra: Any,
) -> Decision:
    if error_code:
        extra["error_code"] = error_code
    return dispatched_decision(request, at).model_copy(
        update={"action": "failed", "reason": reason, "detail": detail, "extra": extra}
    )
