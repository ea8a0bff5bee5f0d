"""Memory: a worker's resident size with N open cases, memory store or RocksDB.

Run: `make bench-memory` (or `python -m tests.benchmarks.memory --cases 100000 --store rocksdb`).
Feeding a million cases through the pipeline would take longer than the
measurement is worth. So the `customers` table's changelog is written
directly, with the records the worker itself writes. The engine builds one
customer's state mid-escalation (a missed payment: one open case, six pending
steps). The benchmark copies it per customer, keys and partitions each copy as
Faust does, and then times a worker's start from its changelog to `/ready`. It
prints the resident size (VmRSS) then, against an empty worker in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from policies.engine import decide
from policies.loader import load_directory
from policies.state import CustomerState
from schemas.events import event_from_dict
from streams.app import EXAMPLE_POLICIES
from streams.cli.demo import advance_clock, demo_settings, start_worker, stop_worker
from streams.intake import stored
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from tests.benchmarks.pipeline import wait_ready

TEMPLATE_CUSTOMER, TEMPLATE_ACCOUNT = "C-TEMPLATE", "A-TEMPLATE"
CLOCK = datetime(2026, 11, 20, 15, tzinfo=UTC)
"""When the template case opened: its first step has fired, the other five are pending."""


def template_state() -> str:
    """One customer mid-escalation, as the JSON the worker stores (ids to be replaced)."""
    policy = load_directory(EXAMPLE_POLICIES)
    at = CLOCK
    base = {"customer_id": TEMPLATE_CUSTOMER, "schema_version": 1, "source": "bench"}
    profile = {
        "phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}],
        "emails": [{"address": "a@example.com"}],
        "time_zones": ["America/Chicago"],
    }
    missed = {
        "amount_due": "125.40",
        "currency": "USD",
        "due_date": "2026-11-15",
        "days_past_due": 5,
    }
    state = CustomerState(customer_id=TEMPLATE_CUSTOMER)
    for eid, kind, account, data in (
        ("p", "customer.profile.updated", None, profile),
        ("m", "payment.missed", TEMPLATE_ACCOUNT, missed),
    ):
        raw = {**base, "event_id": eid, "type": kind, "occurred_at": at.isoformat()}
        event = event_from_dict({**raw, "account_id": account, "data": data})
        state = decide(state, event, at, policy).state
    assert len(state.cases) == 1 and state.due is not None
    return stored.encode(0, state.due, state).decode()


async def write_changelog(settings: Settings, cases: int) -> int:
    """The `customers` changelog holding `cases` customers, each with one open case."""
    name = stored.changelog_topic(settings.app_id)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(name, settings.partitions, 1, topic_configs=config)])
    finally:
        await admin.close()
    template = template_state()
    partitioner, every = DefaultPartitioner(), list(range(settings.partitions))
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    size = 0
    try:
        for n in range(cases):
            customer = f"C-{n:07d}"
            partition = partitioner(customer.encode(), every, every)
            value = (
                template.replace(TEMPLATE_CUSTOMER, customer)
                .replace(TEMPLATE_ACCOUNT, f"A-{n:07d}")
                .replace('"partition":0', f'"partition":{partition}', 1)
            )
            size += len(value)
            await producer.send(
                name, key=json.dumps(customer).encode(), value=value.encode(), partition=partition
            )  # queued, not awaited delivery: the flush below waits for all
        await producer.flush()
        # Tansu reports a partition's end as its last batch's base offset + 1, so
        # Faust's recovery stops short of that batch (docs/operations.md). One
        # record per partition, in a batch of its own, is what it then misses.
        for partition in every:
            await producer.send(name, key=b'"C-END"', value=b"null", partition=partition)
            await producer.flush()
    finally:
        await producer.stop()
    return size // max(1, cases)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def logged(path: Path) -> list[dict[str, Any]]:
    """The worker's JSON log lines (Faust's own plain-text lines are left out)."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def measure(broker: EmbeddedBroker, work: Path, cases: int, store: str) -> dict[str, Any]:
    settings = demo_settings(
        broker.bootstrap,
        work,
        app_id=f"mem-{store}-{cases}",
        topic_prefix=f"mem{store}{cases}.",
        partitions=4,
        log_format="json",
        log_level="info",  # for `timers.loaded`: the index's own build time
        store="rocksdb://" if store == "rocksdb" else "memory://",
    )
    asyncio.run(topics.ensure_topics(settings))
    per_case = asyncio.run(write_changelog(settings, cases)) if cases else 0
    with (work / f"worker-{store}-{cases}.log").open("wb") as log:
        started = time.perf_counter()
        worker = start_worker(settings, log)
        try:
            wait_ready(settings.web_port, timeout=3600)
            recovered = time.perf_counter() - started
            time.sleep(2)
            tables_rss = resident_mb(worker.pid)
            # A clock message per partition makes the worker build its timer index
            # (lazily, on the first one); nothing is due yet. Then wait for all of it.
            asyncio.run(advance_clock(settings, CLOCK))
            indexed = time.perf_counter()
            pending, before = 0, -1
            while cases and (pending == 0 or pending != before):
                before = pending
                time.sleep(2)
                url = f"http://127.0.0.1:{settings.web_port}/ready"
                with urllib.request.urlopen(url, timeout=600) as response:
                    pending = json.loads(response.read())["pending_timers"]
            index_s = time.perf_counter() - indexed
            rss = resident_mb(worker.pid)
        finally:
            stop_worker(worker)
    built_ms = [
        entry["elapsed_ms"]
        for entry in logged(work / f"worker-{store}-{cases}.log")
        if entry.get("event") == "timers.loaded"
    ]
    return {
        "recovered_s": recovered,
        "tables_rss_mb": tables_rss,
        "rss_mb": rss,
        "index_s": index_s,
        "built_s": max(built_ms, default=0) / 1000,
        "pending": pending,
        "json_bytes": per_case,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, nargs="+", default=[100_000])
    parser.add_argument("--store", choices=["memory", "rocksdb"], nargs="+", default=["memory"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for store in args.store:
            empty = measure(broker, Path(tmp), 0, store)
            print(f"{store:<8} {0:>10,} cases  rss {empty['rss_mb']:>8,.0f} MB (empty worker)")
            for cases in args.cases:
                got = measure(broker, Path(tmp), cases, store)
                extra = (got["rss_mb"] - empty["rss_mb"]) * 1024 * 1024 / cases
                print(
                    f"{store:<8} {cases:>10,} cases  rss {got['rss_mb']:>8,.0f} MB "
                    f"({got['tables_rss_mb']:,.0f} MB before the timer index)  "
                    f"{extra:,.0f} bytes per case over empty; stored JSON "
                    f"{got['json_bytes']:,} bytes; recovered in {got['recovered_s']:.1f} s, "
                    f"index of {got['pending']:,} timers built in {got['built_s']:.1f} s "
                    f"(seen complete after {got['index_s']:.0f} s)"
                )


if __name__ == "__main__":
    main()
