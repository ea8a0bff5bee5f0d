"""Pipeline throughput: events per second through one worker, against a raw aiokafka loop.

Run: `make bench-pipeline` (or `python -m tests.benchmarks.pipeline --customers 5000`).
One embedded broker, one run, three measurements on the same input:

- baseline: a plain aiokafka consumer -> json.loads -> producer loop, in this process;
- bare Faust: an agent that only decodes and forwards (tests/benchmarks/bare_faust.py),
  in its own process and timed the same way: the framework's floor;
- pipeline: one `clarion worker` process (event clock, sandbox channel with the
  providers' rate limits lifted), from the moment it reports ready to the
  moment every input offset is committed; and on to the moment its requests
  are sent and their receipts taken ("drained").

Each customer gets a profile, a preference and a missed payment (the stories'
most common shapes), so a third of the events open a case and send two
messages. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.cli.demo import demo_settings, start_process, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.runtime.settings import Settings
from tests.benchmarks import bare_faust as bare_faust_app


def events(customers: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for n in range(customers):
        cid = f"C-{n:07d}"
        base = {"customer_id": cid, "schema_version": 1, "source": "bench"}
        out.append(
            _msg(
                base,
                "customer.profile.updated",
                f"p-{n}",
                "2026-11-02T12:00:00Z",
                None,
                {
                    "phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}],
                    "emails": [{"address": "a@example.com"}],
                    "time_zones": ["America/Chicago"],
                },
            )
        )
        out.append(
            _msg(
                base,
                "customer.preferences.updated",
                f"q-{n}",
                "2026-11-02T12:00:00Z",
                None,
                {"preferred_channel": "sms"},
            )
        )
        out.append(
            _msg(
                base,
                "payment.missed",
                f"m-{n}",
                "2026-11-20T15:00:00Z",
                f"A-{n}",
                {
                    "amount_due": "125.40",
                    "currency": "USD",
                    "due_date": "2026-11-15",
                    "days_past_due": 5,
                },
            )
        )
    return out


def _msg(
    base: dict[str, object],
    kind: str,
    eid: str,
    at: str,
    account: str | None,
    data: dict[str, object],
) -> tuple[bytes, bytes]:
    body = {
        **base,
        "event_id": eid,
        "type": kind,
        "occurred_at": at,
        "account_id": account,
        "data": data,
    }
    return str(base["customer_id"]).encode(), json.dumps(body).encode()


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def baseline(bootstrap: str, source: str, sink: str, count: int) -> float:
    """Seconds for a raw consume -> decode -> produce loop over `count` messages."""
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id="raw-bench"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batch.values():
                for message in messages:
                    decoded = json.loads(message.value or b"{}")
                    await producer.send(sink, key=message.key, value=json.dumps(decoded).encode())
                    seen += 1
        await producer.flush()
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far: steadier than wall time here."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core, from /proc/stat."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def wait_ready(port: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/ready"
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError("the worker never became ready")


def wait_taken(
    bootstrap: str, group: str, sources: list[str], worker: subprocess.Popen[bytes]
) -> None:
    """Until the consumer group has committed every message on `sources` (or its process died)."""
    asyncio.run(
        topics.wait_until_consumed(
            bootstrap,
            group,
            sources,
            timeout=1800,
            poll=0.1,
            alive=lambda: worker.poll() is None,
        )
    )


def downstream(settings: Settings) -> list[str]:
    """What the worker makes of the inputs and consumes again: requests, then their receipts."""
    names = (
        *topics.OUTBOUND,
        topics.NOTIFICATION_RETRIES,
        topics.DELIVERY_RECEIPTS,
        topics.SMS_CONVERSATIONS,
    )
    return [settings.topic(name) for name in names]


def bare_faust(bootstrap: str, source: str, work: Path) -> tuple[float, float]:
    """Seconds, and the process's CPU seconds, for the bare Faust agent to take every
    message on `source`, from its /ready."""
    port = free_port()
    command = [sys.executable, "-m", "tests.benchmarks.bare_faust", bootstrap, source]
    command += ["bare-sink", str(port), str(work / "bare-data")]
    with (work / "bare.log").open("wb") as log:
        proc = start_process(command, log)
        try:
            ready = wait_ready(port)
            cpu_ready = cpu_seconds(proc.pid)
            wait_taken(bootstrap, bare_faust_app.APP_ID, [source], proc)
            return time.perf_counter() - ready, cpu_seconds(proc.pid) - cpu_ready
        finally:
            stop_worker(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=5000)
    args = parser.parse_args()
    messages = events(args.customers)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        work = Path(tmp)
        settings = demo_settings(broker.bootstrap, work, partitions=4, log_format="json")
        # The providers' rate limits off: they would measure the sandbox's pacing, not ours.
        unpaced = {f"rate_{channel}_per_s": 100_000.0 for channel in ("sms", "voice", "email")}
        settings = settings.model_copy(
            update={"log_level": "warning", "commit_interval_s": 2.8, **unpaced}
        )
        asyncio.run(topics.ensure_topics(settings))
        source = settings.topic(topics.ACCOUNT_EVENTS)
        asyncio.run(produce(broker.bootstrap, source, messages))

        raw = asyncio.run(baseline(broker.bootstrap, source, "raw-sink", len(messages)))
        floor, floor_cpu = bare_faust(broker.bootstrap, source, work)

        with (work / "worker.log").open("wb") as log:
            worker = start_worker(settings, log)
            try:
                ready = wait_ready(settings.web_port)
                cpu_ready = cpu_seconds(worker.pid)
                wait_taken(broker.bootstrap, settings.app_id, [source], worker)
                ours = time.perf_counter() - ready
                cpu_taken = cpu_seconds(worker.pid) - cpu_ready
                wait_taken(broker.bootstrap, settings.app_id, downstream(settings), worker)
                drained = time.perf_counter() - ready
                cpu_drained = cpu_seconds(worker.pid) - cpu_ready
            finally:
                stop_worker(worker)
    n = len(messages)
    print(f"events                      {n:>10,}  ({args.customers:,} customers)")
    print(f"raw aiokafka loop           {n / raw:>10,.0f} events/s")
    print(f"bare Faust agent            {n / floor:>10,.0f} events/s  (decode and forward only)")
    print(f"clarion worker (intake)     {n / ours:>10,.0f} events/s")
    print(f"  and drained               {n / drained:>10,.0f} events/s  (sent, receipts taken)")
    print(f"worker CPU per event        {cpu_taken / n * 1e6:>10,.0f} µs  (to intake done)")
    print(f"  and drained               {cpu_drained / n * 1e6:>10,.0f} µs")
    print(f"bare Faust CPU per event    {floor_cpu / n * 1e6:>10,.0f} µs")
    print(f"bare Faust against raw      {floor / raw:>10.1f}x slower")
    print(f"clarion worker against raw  {ours / raw:>10.1f}x slower")
    print(
        f"clarion CPU per event against bare Faust's  {cpu_taken / floor_cpu:.1f}x to intake "
        f"done, {cpu_drained / floor_cpu:.1f}x drained (issue 23's target: 2x or less)"
    )


if __name__ == "__main__":
    main()
