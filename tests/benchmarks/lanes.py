"""Lanes: how long a fraud alert takes while a nightly batch drains (issue 23).

Run: `make bench-lanes` (or `python -m tests.benchmarks.lanes --customers 100000`).
One embedded broker; for each mode, lanes on and lanes off, in the same run and
on topics of their own: a `clarion worker` with the sandbox provider at real
rates (SMS 10 a second, email 100, voice 1), `--customers` customers preloaded
(their profiles taken before the clock starts), then a `payment.missed` for
every one of them at once (two emails each: the reminder and the validation
notice), then one `fraud.suspected` a second for `--seconds` seconds, each for a
customer with nothing in the batch. With lanes on, the fraud events go on
`account-events-urgent`; with lanes off (`CLARION_LANES=false`), on
`account-events` behind the batch, as today.

Prints, per mode: the fraud alert's latency from producing the event to its SMS
(and its email) being handed to the provider, p50/p99/max, and how many were
handed over at all before the run ended (`--grace` seconds after the last); the
batch's emails handed over per second while the fraud events came, as a share of
the configured 100, from the fifth second (the bucket's burst spent); the
worker's CPU over the run, per input it took and per message it handed over
(one process does both, so neither figure is the other's alone). "Handed to the provider"
is the sandbox's outbox line, read every 20 ms: up to 20 ms late. Asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import quantiles

from aiokafka import AIOKafkaProducer

from streams.cli.demo import demo_settings, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.runtime.settings import Settings
from tests.benchmarks.pipeline import _msg, cpu_seconds, produce, wait_ready, wait_taken
from tests.conftest import metrics
from tests.samples import DATA

RATES = {"rate_sms_per_s": 10.0, "rate_email_per_s": 100.0, "rate_voice_per_s": 1.0}
PROFILE = {
    "phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}],
    "emails": [{"address": "a@example.com"}],
    "time_zones": ["America/Chicago"],
}


def _base(cid: str) -> dict[str, object]:
    return {"customer_id": cid, "schema_version": 1, "source": "bench"}


def profile(cid: str) -> tuple[bytes, bytes]:
    return _msg(
        _base(cid), "customer.profile.updated", f"p-{cid}", "2026-11-02T12:00:00Z", None, PROFILE
    )


def missed(n: int) -> tuple[bytes, bytes]:
    cid = f"C-{n:07d}"
    data = DATA["payment.missed"]
    return _msg(_base(cid), "payment.missed", f"m-{cid}", "2026-11-20T15:00:00Z", f"A-{n}", data)


def fraud(n: int) -> tuple[bytes, bytes]:
    cid = f"F-{n:04d}"
    data = {**DATA["fraud.suspected"], "transaction_id": f"T-{n}"}
    return _msg(_base(cid), "fraud.suspected", f"f-{cid}", "2026-11-20T15:00:05Z", "A-F", data)


@dataclass
class Outbox:
    """The sandbox's outbox, read as it grows: when each message was first seen."""

    path: Path
    offset: int = 0
    fraud_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    """(customer, channel) -> perf_counter when its line was read."""
    batch_emails: list[float] = field(default_factory=list)

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        now = time.perf_counter()
        for line in chunk[:end].splitlines():
            message = json.loads(line)
            customer, channel = message["customer_id"], message["channel"]
            if customer.startswith("F-"):
                self.fraud_seen.setdefault((customer, channel), now)
            elif channel == "email":
                self.batch_emails.append(now)


def inputs_taken(port: int) -> float:
    return sum(v for k, v in metrics(port).items() if k.startswith("clarion_inputs_total"))


async def fraud_load(
    settings: Settings, topic: str, seconds: int, outbox: Outbox, grace: float
) -> dict[str, float]:
    """One fraud event a second; the outbox read every 20 ms meanwhile and `grace` after."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for n in range(seconds):
            while time.perf_counter() < started + n:
                outbox.read()
                await asyncio.sleep(0.02)
            key, value = fraud(n)
            sent_at[key.decode()] = time.perf_counter()
            await producer.send(settings.topic(topic), key=key, value=value)
        await producer.flush()
        deadline = time.perf_counter() + grace
        while time.perf_counter() < deadline and len(outbox.fraud_seen) < 2 * seconds:
            outbox.read()
            await asyncio.sleep(0.02)
    finally:
        await producer.stop()
    window = (started, time.perf_counter())
    return {"started": window[0], "ended": window[1], **sent_at}


def report(label: str, sent: dict[str, float], outbox: Outbox, seconds: int) -> None:
    started, ended = sent.pop("started"), sent.pop("ended")
    print(f"{label}:")
    for channel in ("sms", "email"):
        late = [
            outbox.fraud_seen[(cid, channel)] - at
            for cid, at in sent.items()
            if (cid, channel) in outbox.fraud_seen
        ]
        if len(late) >= 2:
            cuts = quantiles(late, n=100, method="inclusive")
            figures = f"p50 {cuts[49]:7.3f} s  p99 {cuts[98]:7.3f} s  max {max(late):7.3f} s"
        else:
            figures = "too few handed over for percentiles"
        print(f"  fraud {channel:<5} handed over {len(late):>3} of {seconds}   {figures}")
    # From the fifth second: the bucket's burst (a second of its rate) is spent by then.
    steady = started + 5
    during = [t for t in outbox.batch_emails if steady <= t <= ended]
    rate = len(during) / (ended - steady)
    share = rate / RATES["rate_email_per_s"] * 100
    print(f"  batch email rate          {rate:8.1f} /s  ({share:.1f}% of the configured 100/s)")


def run_mode(broker: EmbeddedBroker, work: Path, lanes: bool, args: argparse.Namespace) -> None:
    mode = "on" if lanes else "off"
    settings = demo_settings(
        broker.bootstrap,
        work / mode,
        app_id=f"lanes-{mode}",
        topic_prefix=f"lanes-{mode}.",
        partitions=4,
        log_format="json",
        log_level="warning",
        commit_interval_s=2.8,
        web_port=free_port(),
        lanes=lanes,
        **RATES,
    )
    (work / mode).mkdir(parents=True, exist_ok=True)
    asyncio.run(topics.ensure_topics(settings))
    profiles_topic = settings.topic(topics.CUSTOMER_PROFILES)
    everyone = [profile(f"C-{n:07d}") for n in range(args.customers)]
    everyone += [profile(f"F-{n:04d}") for n in range(args.seconds)]
    asyncio.run(produce(broker.bootstrap, profiles_topic, everyone))
    with (work / f"{mode}.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            wait_ready(settings.web_port)
            wait_taken(broker.bootstrap, settings.app_id, [profiles_topic], worker)
            outbox = Outbox(settings.outbox_path)
            cpu, taken = cpu_seconds(worker.pid), inputs_taken(settings.web_port)
            events = settings.topic(topics.ACCOUNT_EVENTS)
            asyncio.run(
                produce(broker.bootstrap, events, [missed(n) for n in range(args.customers)])
            )
            lane = topics.ACCOUNT_EVENTS_URGENT if lanes else topics.ACCOUNT_EVENTS
            sent = asyncio.run(fraud_load(settings, lane, args.seconds, outbox, args.grace))
            cpu = cpu_seconds(worker.pid) - cpu
            taken = inputs_taken(settings.web_port) - taken
        finally:
            stop_worker(worker)
    window = sent["ended"] - sent["started"]
    report(f"lanes {mode} (fraud events on {settings.topic(lane)})", sent, outbox, args.seconds)
    handed = len(outbox.batch_emails) + len(outbox.fraud_seen)
    print(
        f"  worker CPU                {cpu:8.1f} s  over {window:.0f} s: "
        f"{cpu / max(taken, 1) * 1e6:,.0f} µs per input taken ({taken:,.0f}), "
        f"{cpu / max(handed, 1) * 1e3:,.2f} ms per message handed over ({handed:,})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000, help="the batch's size")
    parser.add_argument("--seconds", type=int, default=60, help="fraud events, one a second")
    parser.add_argument("--grace", type=float, default=30.0, help="wait after the last one")
    args = parser.parse_args()
    print(
        f"{args.customers:,} missed payments at once, then a fraud event a second for "
        f"{args.seconds} s; sandbox at SMS 10/s, email 100/s"
    )
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for lanes in (True, False):
            run_mode(broker, Path(tmp), lanes, args)


if __name__ == "__main__":
    main()
