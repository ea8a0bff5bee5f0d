"""The dispatcher's rules, against the real Twilio SDK and a fake Twilio on loopback.

The sinks are plain lists and a dict here (the Faust app gives it topics and a
table), so each rule is checked on its own: idempotency, retries with
back-off, the circuit breaker, and what a permanent failure feeds back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from channels.router import ChannelRouter
from channels.sandbox import SandboxChannel, read_outbox
from channels.templates import Templates
from channels.twilio import TwilioConfig, TwilioSms
from schemas.decisions import Decision
from schemas.notifications import DeliveryReceipt
from streams.dispatch.dispatcher import Attempt, Dispatcher, Sinks
from streams.runtime.settings import Settings
from tests.conftest import POLICIES
from tests.fakes import FakeTwilio
from tests.unit.test_shell_helpers import request

SID, TOKEN = "AC" + "3" * 32, "token"


@dataclass
class Recorded:
    decisions: list[Decision] = field(default_factory=list)
    retries: list[Attempt] = field(default_factory=list)
    receipts: list[DeliveryReceipt] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    flushes: int = 0

    def sinks(self) -> Sinks:
        async def record(d: Decision) -> None:
            self.decisions.append(d)

        async def retry(a: Attempt) -> None:
            self.retries.append(a)

        async def receipt(r: DeliveryReceipt) -> None:
            self.receipts.append(r)

        async def flush() -> None:
            self.flushes += 1

        async def mark(customer_id: str, handled: Any) -> None:
            self.table[customer_id] = handled

        return Sinks(record, retry, receipt, self.table.get, mark, flush)

    def rows(self) -> list[tuple[str, str]]:
        return [(d.action, d.reason) for d in self.decisions]


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(SID, TOKEN) as fake:
        yield fake


def dispatcher(fake: FakeTwilio, seen: Recorded, **settings: Any) -> Dispatcher:
    sms = TwilioSms(TwilioConfig(SID, TOKEN, sms_from="+15550000000", api_base=fake.url))
    values: dict[str, Any] = {"clock": "event", "retry_base_s": 0.01, "retry_max_s": 0.02}
    values.update(settings)
    return Dispatcher(
        Settings(**values),
        Templates(POLICIES / "templates"),
        ChannelRouter({"sms": sms, "email": sms, "voice": sms}),
        seen.sinks(),
    )


def nothing(_: int) -> None:
    return None


async def test_sent_once_whatever_is_replayed(twilio: FakeTwilio) -> None:
    seen = Recorded()
    d = dispatcher(twilio, seen)
    first = Attempt(request("payment-missed", "sms"))
    await d.run([first, first], nothing)  # the same request twice in one batch
    await d.run([first], nothing)  # and again later
    await d.channels.close()
    assert len(twilio.accepted) == 1
    assert seen.rows() == [("dispatched", "channel_accepted")]
    assert seen.decisions[0].extra["provider_message_id"].startswith("SM")
    assert seen.table["C-1"] == {"ntf-1": "done"}
    assert seen.flushes == 1  # "attempting" was made durable before the provider call


class ByPartition:
    """`dispatched-ids` as Faust's RocksDB store keeps it: one database per partition, and
    a read or a write goes to the partition of the event being handled."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, Any]] = {0: {}, 1: {}}
        self.current: int | None = None

    def get(self, key: str) -> Any:
        if self.current is None:  # no event: Faust looks in every partition
            return next((p[key] for p in self.parts.values() if key in p), None)
        return self.parts[self.current].get(key)

    async def set(self, key: str, value: Any) -> None:
        assert self.current is not None, "a table write outside an event"
        self.parts[self.current][key] = value


async def test_a_batch_of_two_partitions_reads_each_customer_s_marks_where_they_are(
    twilio: FakeTwilio,
) -> None:
    """A batch mixes partitions. Each customer's marks must be read under an event of the
    customer's own partition, or a replay after a take-over finds none and sends again
    (the three-node cluster's fault test sent 14 messages twice so, on RocksDB)."""
    seen, table = Recorded(), ByPartition()
    d = dispatcher(twilio, seen)
    d.sinks = replace(d.sinks, handled_get=table.get, handled_set=table.set)
    first = Attempt(request("payment-missed", "sms"))
    second = Attempt(
        request("payment-missed", "sms").model_copy(
            update={"notification_id": "ntf-2", "customer_id": "C-2"}
        )
    )
    batch, home = [first, second], {0: 0, 1: 1}  # C-1 lives on partition 0, C-2 on 1

    def enter(i: int) -> None:
        table.current = home[i]

    await d.run(batch, enter)
    assert len(twilio.accepted) == 2
    assert table.parts == {0: {"C-1": {"ntf-1": "done"}}, 1: {"C-2": {"ntf-2": "done"}}}
    await d.run(batch, enter)  # replayed by the worker that takes the partitions over
    await d.channels.close()
    assert len(twilio.accepted) == 2, "a message was sent twice"
    assert table.parts == {0: {"C-1": {"ntf-1": "done"}}, 1: {"C-2": {"ntf-2": "done"}}}


async def test_two_lanes_marking_one_customer_at_once_keep_both_marks(
    twilio: FakeTwilio,
) -> None:
    """The urgent lane's agent and the others share the dispatcher: a batch that marks
    a customer while another batch of the same customer is settling (its ledger row
    on its way) must not be undone when that batch writes the marks it read before."""
    seen = Recorded()
    gate = asyncio.Event()
    sinks = seen.sinks()
    record = sinks.record

    async def slow_record(decision: Decision) -> None:
        if decision.notification_id == "ntf-1":
            await gate.wait()  # ntf-1's batch has read C-1's marks and waits here
        await record(decision)

    d = dispatcher(twilio, seen)
    d.sinks = replace(sinks, record=slow_record)
    first = asyncio.create_task(d.run([Attempt(request("payment-missed", "sms"))], nothing))
    while not seen.table.get("C-1") or not twilio.accepted:
        await asyncio.sleep(0.01)
    urgent = request("payment-missed", "sms").model_copy(
        update={"notification_id": "ntf-2", "priority": "urgent"}
    )
    await d.run([Attempt(urgent)], nothing)  # the urgent lane, all the way through
    gate.set()
    await first
    await d.channels.close()
    assert sorted(seen.rows()) == [("dispatched", "channel_accepted")] * 2
    assert seen.table["C-1"] == {"ntf-1": "done", "ntf-2": "done"}


async def test_the_provider_account_s_rate_holds_beside_each_sender_s(twilio: FakeTwilio) -> None:
    """Twilio limits an account as well as each number: with the account at 1 a second, a
    second message right after the first waits (parked on the retry topic), though its
    sender's own rate would let it go; the account's bucket is one for every channel."""
    seen = Recorded()
    limits = {"rate_sms_per_s": 1000.0, "rate_twilio_account_per_s": 1.0}
    d = dispatcher(twilio, seen, rate_park_after_s=0.5, **limits)
    first, second = (
        request("payment-missed", "sms").model_copy(update={"notification_id": f"ntf-{n}"})
        for n in (1, 2)
    )
    await d.run([Attempt(first)], nothing)
    await d.run([Attempt(second)], nothing)
    await d.channels.close()
    assert len(twilio.accepted) == 1
    [parked] = seen.retries
    assert parked.request.notification_id == "ntf-2" and parked.not_before is not None
    assert seen.table["C-1"] == {"ntf-1": "done", "ntf-2": "retry"}
    sms, voice = d._buckets_for("twilio", "sms"), d._buckets_for("twilio", "voice")
    assert sms[1] is voice[1] and sms[0] is not voice[0]


async def test_a_missing_template_fails_without_a_provider_call(twilio: FakeTwilio) -> None:
    seen = Recorded()
    d = dispatcher(twilio, seen)
    await d.run([Attempt(request("no-such-template", "sms"))], nothing)
    await d.channels.close()
    assert seen.rows() == [("failed", "template_error")]
    assert twilio.behaviour.requests == 0


async def test_an_outage_is_retried_until_the_provider_recovers(twilio: FakeTwilio) -> None:
    seen = Recorded()
    d = dispatcher(twilio, seen)
    twilio.behaviour.outage_status = 503
    original = Attempt(request("payment-missed", "sms"))
    await d.run([original], nothing)
    [again] = seen.retries
    assert again.number == 2 and again.not_before is not None
    assert seen.table["C-1"] == {"ntf-1": "retry"}
    await d.run([original], nothing)  # a replay of the original: the retry path owns it now
    assert len(seen.retries) == 1
    twilio.behaviour.outage_status = None
    await d.run([again], nothing)
    await d.channels.close()
    assert seen.rows() == [("failed", "twilio_503"), ("dispatched", "channel_accepted")]
    assert seen.decisions[1].extra["attempt"] == 2
    assert len(twilio.accepted) == 1 and seen.receipts == []


async def test_exhausted_retries_end_in_a_receipt_for_the_engine(twilio: FakeTwilio) -> None:
    seen = Recorded()
    d = dispatcher(twilio, seen, retry_max_attempts=2, breaker_failures=10)
    twilio.behaviour.outage_status = 500
    await d.run([Attempt(request("payment-missed", "sms"))], nothing)
    await d.run([seen.retries[-1]], nothing)
    await d.channels.close()
    assert seen.rows() == [("failed", "twilio_500"), ("failed", "retries_exhausted")]
    [receipt] = seen.receipts
    assert (receipt.status, receipt.reason, receipt.notification_id) == (
        "failed",
        "retries_exhausted",
        "ntf-1",
    )


async def test_a_stop_reply_on_record_revokes_and_falls_back(twilio: FakeTwilio) -> None:
    seen = Recorded()
    d = dispatcher(twilio, seen)
    item = request("payment-missed", "sms").model_copy(update={"recipient": "+15005550004"})
    await d.run([Attempt(item)], nothing)
    await d.channels.close()
    assert seen.rows() == [("failed", "recipient_opted_out")]
    assert seen.decisions[0].extra["error_code"] == "21610"
    [receipt] = seen.receipts
    assert (receipt.effect, receipt.recipient, receipt.error_code) == (
        "opted_out",
        "+15005550004",
        "21610",
    )
    assert seen.retries == []


async def test_the_circuit_opens_on_an_outage_and_closes_on_recovery(twilio: FakeTwilio) -> None:
    seen = Recorded()
    d = dispatcher(twilio, seen, breaker_failures=2, breaker_cooldown_s=0.2)
    twilio.behaviour.outage_status = 503
    batch = [
        Attempt(request("payment-missed", "sms").model_copy(update={"notification_id": f"n-{i}"}))
        for i in range(4)
    ]
    for item in batch:
        await d.run([item], nothing)
    assert d.breakers["twilio"].state == "open"
    assert twilio.behaviour.requests == 2  # the last two were held, not sent
    assert len(seen.decisions) == 2 and len(seen.retries) == 4
    # What /metrics says of it: two transient calls, and the circuit open.
    assert d.metrics.provider_calls.value("twilio", "sms", "transient") == 2
    assert 'clarion_circuit_state{provider="twilio"} 2' in d.metrics.render().splitlines()
    twilio.behaviour.outage_status = None
    await asyncio.sleep(0.25)
    assert 'clarion_circuit_state{provider="twilio"} 1' in d.metrics.render().splitlines()
    await d.run([seen.retries[2]], nothing)  # the half-open trial
    assert d.breakers["twilio"].state == "closed"
    assert 'clarion_circuit_state{provider="twilio"} 0' in d.metrics.render().splitlines()
    assert d.metrics.provider_calls.value("twilio", "sms", "accepted") == 1
    await d.channels.close()


async def test_a_crash_mid_call_is_resent_only_when_the_provider_says_it_never_came(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    seen = Recorded()
    outbox = tmp_path / "outbox.jsonl"
    sandbox = SandboxChannel(outbox)
    d = Dispatcher(
        Settings(clock="event"),
        Templates(POLICIES / "templates"),
        ChannelRouter({"sms": sandbox, "email": sandbox, "voice": sandbox}),
        seen.sinks(),
    )
    seen.table["C-1"] = {"ntf-1": "attempting"}  # what a crash mid-call leaves behind
    await d.run([Attempt(request("payment-missed", "sms"))], nothing)
    assert seen.rows() == [("dispatched", "channel_accepted")]  # the outbox says: never came
    assert len(read_outbox(outbox)) == 1

    seen = Recorded()
    d = dispatcher(twilio, seen)
    seen.table["C-1"] = {"ntf-1": "attempting"}
    await d.run([Attempt(request("payment-missed", "sms"))], nothing)
    await d.channels.close()
    assert seen.rows() == [("failed", "unknown_outcome")]  # Twilio cannot say: never twice
    assert twilio.behaviour.requests == 0


async def test_a_send_its_rate_limit_would_hold_is_parked_not_waited_for(
    twilio: FakeTwilio,
) -> None:
    """Email at 2/s: the third and fourth go to the retry topic; the SMS behind them go now."""
    seen = Recorded()
    d = dispatcher(twilio, seen, rate_email_per_s=2.0, rate_park_after_s=0.2)

    def item(n: int, channel: str) -> Attempt:
        ask = request("payment-missed", channel)
        return Attempt(ask.model_copy(update={"notification_id": f"n-{n}"}))

    batch = [item(n, "email") for n in range(4)] + [item(n, "sms") for n in range(4, 6)]
    await d.run(batch, nothing)
    assert len(twilio.accepted) == 4  # two emails (the burst) and both SMS
    parked = {a.request.notification_id for a in seen.retries}
    assert parked == {"n-2", "n-3"}
    assert all(a.number == 1 and a.not_before is not None for a in seen.retries)
    assert all(seen.table["C-1"][nid] == "retry" for nid in parked)

    await d.run(seen.retries, nothing, park=False)  # the retry path waits for its tokens
    await d.channels.close()
    assert len(twilio.accepted) == 6
    assert all(seen.table["C-1"][f"n-{n}"] == "done" for n in range(6))
