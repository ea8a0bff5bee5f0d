"""Dispatch throughput through a fake Twilio answering in 100 ms, one run, two ways.

Run: `make bench-dispatch`. The dispatcher (render, rate limit, breaker,
provider call through the real SDK) is fed batches of 1 (what the dispatch
agent does today) and of 32 (what it can take): with overlapping calls the
rate limit, not the provider's latency, should decide the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from channels.router import ChannelRouter
from channels.templates import Templates
from channels.twilio import TwilioConfig, TwilioSms
from schemas.decisions import Decision
from schemas.notifications import DeliveryReceipt
from streams.dispatch.dispatcher import Attempt, Dispatcher, Sinks
from streams.runtime.logging import configure
from streams.runtime.settings import Settings
from tests.conftest import POLICIES
from tests.fakes import FakeTwilio
from tests.unit.test_shell_helpers import request

SID, TOKEN = "AC" + "9" * 32, "bench"


async def run(messages: int, batch: int, rate: float, latency_s: float) -> float:
    async with FakeTwilio(SID, TOKEN) as fake:
        fake.behaviour.delay_s = latency_s
        sms = TwilioSms(TwilioConfig(SID, TOKEN, sms_from="+15550000000", api_base=fake.url))
        table: dict[str, Any] = {}
        done: list[Decision] = []

        async def record(d: Decision) -> None:
            done.append(d)

        async def ignore(_: Attempt | DeliveryReceipt) -> None:
            return None

        async def flush() -> None:
            return None

        async def mark(customer_id: str, handled: Any) -> None:
            table[customer_id] = handled

        settings = Settings(dispatch_concurrency=batch, rate_sms_per_s=rate, clock="event")
        sinks = Sinks(record, ignore, ignore, table.get, mark, flush)
        dispatcher = Dispatcher(
            settings, Templates(POLICIES / "templates"), ChannelRouter({"sms": sms}), sinks
        )
        items = [
            Attempt(
                request("payment-missed", "sms").model_copy(
                    update={"notification_id": f"n-{i}", "customer_id": f"C-{i}"}
                )
            )
            for i in range(messages)
        ]
        started = time.perf_counter()
        for at in range(0, messages, batch):
            await dispatcher.run(items[at : at + batch], lambda _: None)
        elapsed = time.perf_counter() - started
        await sms.close()
        assert len(fake.accepted) == messages and len(done) == messages
        return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="configured SMS sends/s")
    parser.add_argument("--latency", type=float, default=0.1, help="provider answer, seconds")
    args = parser.parse_args()
    configure("console", "warning")
    print(f"provider latency {args.latency * 1000:.0f} ms, rate limit {args.rate:.0f}/s")
    for batch, count in ((1, min(args.messages, 100)), (32, args.messages)):
        per_s = asyncio.run(run(count, batch, args.rate, args.latency))
        print(f"batch {batch:>3}: {per_s:>8.1f} messages/s over {count} messages")


if __name__ == "__main__":
    main()
