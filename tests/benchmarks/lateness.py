"""Timer lateness with a million pending steps: how late does a due step fire?

Run: `make bench-lateness` (or `python -m tests.benchmarks.lateness --pending 1000000`).
The `customers` changelog is written directly with N customers whose next steps
are days away (as `tests/benchmarks/memory.py` does). A worker on the wall
clock recovers them and builds its timer index. Then probe customers arrive on
`account-events`, a few per second, and each opens a case whose only step (a
hand-off) falls due one minute later. The probes use the example policies plus
one extra escalation. A step's lateness is the time its hand-off was recorded
minus its due instant (the case's opening + 1 minute), read from the ledger.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from schemas.decisions import Decision
from streams.app import EXAMPLE_POLICIES
from streams.cli.demo import demo_settings, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker
from streams.runtime.settings import Settings
from tests.benchmarks import memory
from tests.benchmarks.pipeline import wait_ready

PROBE_POLICY = """
version: 1
escalations:
  timer-probe:
    trigger: hardship.reported
    category: security
    case: customer
    ladders:
      - name: probe
        steps:
          - {after: 1m, handoff: agent}
"""
STEP = timedelta(minutes=1)


def pending_timers(settings: Settings) -> int:
    url = f"http://127.0.0.1:{settings.web_port}/ready"
    with urllib.request.urlopen(url, timeout=600) as response:
        return int(json.loads(response.read())["pending_timers"])


async def send_probes(settings: Settings, count: int, rate: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(count):
            cid = f"PROBE-{n:05d}"
            event = {
                "event_id": f"probe-{n}",
                "type": "hardship.reported",
                "schema_version": 1,
                "occurred_at": datetime.now(UTC).isoformat(),
                "customer_id": cid,
                "account_id": "A-PROBE",
                "source": "bench",
                "data": {"reason": "probe"},
            }
            await producer.send_and_wait(
                settings.topic(topics.ACCOUNT_EVENTS), json.dumps(event).encode(), key=cid.encode()
            )
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()


def lateness_ms(bootstrap: str, topic: str) -> list[float]:
    rows = asyncio.run(topics.read_all(bootstrap, topic))
    decisions = [Decision.model_validate_json(v) for _, v in rows]
    opened = {d.case_id: d.at for d in decisions if d.action == "opened" and d.case_id}
    return [
        (d.at - (opened[d.case_id] + STEP)).total_seconds() * 1000
        for d in decisions
        if d.action == "handoff" and d.case_id in opened
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pending", type=int, default=1_000_000, help="customers with a step due")
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5.0, help="probes per second")
    parser.add_argument("--store", choices=["memory", "rocksdb"], default="memory")
    args = parser.parse_args()
    # The background customers' steps fall due days from now: none during the run.
    memory.CLOCK = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        work = Path(tmp)
        shutil.copytree(EXAMPLE_POLICIES, work / "policies")
        (work / "policies" / "90-probe.yaml").write_text(PROBE_POLICY)
        settings = demo_settings(
            broker.bootstrap,
            work,
            app_id=f"late-{args.store}",
            partitions=4,
            log_format="json",
            log_level="warning",
            clock="wall",
            store="rocksdb://" if args.store == "rocksdb" else "memory://",
            policies_dir=work / "policies",
            templates_dir=EXAMPLE_POLICIES / "templates",
        )
        asyncio.run(topics.ensure_topics(settings))
        started = time.perf_counter()
        asyncio.run(memory.write_changelog(settings, args.pending))
        written = time.perf_counter() - started
        with (work / "worker.log").open("wb") as log:
            started = time.perf_counter()
            worker = start_worker(settings, log)
            try:
                wait_ready(settings.web_port, timeout=3600)
                recovered = time.perf_counter() - started
                # The ticker makes the worker build its index on the first tick.
                while pending_timers(settings) < args.pending:
                    time.sleep(1)
                indexed = time.perf_counter() - started - recovered
                asyncio.run(send_probes(settings, args.probes, args.rate))
                time.sleep(STEP.total_seconds() + 5)
                pending = pending_timers(settings)
            finally:
                stop_worker(worker)
        late = sorted(lateness_ms(broker.bootstrap, settings.topic(topics.DECISIONS)))
    print(
        f"pending steps          {args.pending:>12,}  ({args.store} store; {pending:,} at the end)"
    )
    print(f"changelog written in   {written:>12.1f} s")
    print(f"recovered in           {recovered:>12.1f} s; index built in {indexed:.1f} s")
    if not late:
        print("no probe fired: see the worker log")
        return
    q = statistics.quantiles(late, n=100, method="inclusive")
    print(f"probes fired           {len(late):>12,} of {args.probes:,}")
    print(f"lateness p50           {q[49]:>12.0f} ms")
    print(f"lateness p99           {q[98]:>12.0f} ms")
    print(f"lateness max           {late[-1]:>12.0f} ms  (target: under 1,000 ms)")


if __name__ == "__main__":
    main()
