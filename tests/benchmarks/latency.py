"""Latency: from producing an event to its notification request on its lane's topic.

Run: `make bench-latency` (or `python -m tests.benchmarks.latency --rate 1000`).
One embedded broker and one `clarion worker` (with `--apart`, an intake and a
dispatch worker: the roles as two processes). First every customer gets a
profile, and the benchmark waits until intake has taken them all. Then
`transaction.large` events go out at a steady rate, one per customer, each on
a fresh account. Their first step is an immediate SMS (fraud ignores contact
windows) on the urgent lane (`notifications-outbound-urgent`, since a large
transaction opens an urgent case). A consumer there matches each request to its
event by `cause_event_id`. Both clocks are this process's. Prints
percentiles; asserts nothing. The load's producer lingers 5 ms, as Kafka's
clients do by default (`PRODUCER_LINGER_MS`; `--linger-ms 0` for one produce
request per event), and that wait counts in every figure.

First, in the same run and at the same rate, two floors are measured the same
way, each on topics of its own, from producing an event to its copy on the
forwarder's sink: a raw aiokafka forwarder (`tests/benchmarks/raw_forward.py`)
and the bare Faust agent of the pipeline benchmark (`tests/benchmarks/bare_faust.py`:
decode and forward, no table, no engine). The worker's figures are read against
them. Every measurement also prints the CPU per event of each process: the
forwarder or worker, the broker and the benchmark itself.
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
from contextlib import ExitStack
from pathlib import Path
from statistics import quantiles

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.cli.demo import demo_settings, start_process, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker, free_port
from tests.benchmarks.pipeline import (
    _msg,
    cpu_seconds,
    machine_busy,
    produce,
    wait_ready,
    wait_taken,
)


def profiles(customers: int) -> list[tuple[bytes, bytes]]:
    data = {
        "phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}],
        "emails": [{"address": "a@example.com"}],
        "time_zones": ["America/Chicago"],
    }
    return [
        _msg(_base(n), "customer.profile.updated", f"p-{n}", "2026-11-02T12:00:00Z", None, data)
        for n in range(customers)
    ]


def transaction(n: int) -> tuple[bytes, bytes]:
    data = {
        "transaction_id": f"T-{n}",
        "amount": "3200.00",
        "currency": "USD",
        "merchant": "Electronics Ltd",
        "country": "GB",
    }
    return _msg(_base(n), "transaction.large", f"t-{n}", "2026-11-20T15:00:00Z", f"A-{n}", data)


def _base(n: int) -> dict[str, object]:
    return {"customer_id": f"C-{n:07d}", "schema_version": 1, "source": "bench"}


PRODUCER_LINGER_MS = 5
"""The load's producer batches for up to this long, as Kafka's Java producer does by
default since 4.0 (KIP-1030) and librdkafka's since 1.5. The time is counted: an event's
latency starts when it is handed to `send`."""


async def measure(
    bootstrap: str, source: str, outbound: str, count: int, rate: float, linger_ms: int
) -> None:
    """Produce `count` events at `rate`; print how late each one came out on `outbound`."""
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    consumer = AIOKafkaConsumer(
        outbound, bootstrap_servers=bootstrap, auto_offset_reset="latest", fetch_max_wait_ms=10
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    await consumer.start()
    await producer.start()
    await consumer.seek_to_end()

    async def collect() -> None:
        while len(latencies) < count:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    doc = json.loads(message.value or b"{}")
                    cause = doc.get("cause_event_id") or doc.get("event_id")  # bare: the event
                    if cause in sent_at:
                        latencies.append(now - sent_at.pop(cause))

    collector = asyncio.create_task(collect())
    started = time.perf_counter()
    try:
        for n in range(count):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = transaction(n)
            sent_at[f"t-{n}"] = time.perf_counter()
            await producer.send(source, key=key, value=value)
        offered = count / (time.perf_counter() - started)
        await asyncio.wait_for(collector, timeout=120)
    finally:
        collector.cancel()
        await consumer.stop()
        await producer.stop()
    cuts = quantiles(latencies, n=100)
    print(f"offered rate                {offered:>10,.0f} events/s over {count:,} events")
    print(f"load's producer linger      {linger_ms:>10} ms")
    print(f"latency p50                 {cuts[49] * 1000:>10.1f} ms")
    print(f"latency p90                 {cuts[89] * 1000:>10.1f} ms")
    print(f"latency p99                 {cuts[98] * 1000:>10.1f} ms   (target: under 50 ms)")
    print(f"latency max                 {max(latencies) * 1000:>10.1f} ms")


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


def floors(
    broker: EmbeddedBroker, work: Path, load: tuple[int, float, int], partitions: int
) -> None:
    """The same rate through a raw aiokafka forwarder, then through the bare Faust agent."""
    bootstrap = broker.bootstrap
    port, ready = free_port(), work / "raw.ready"
    forwarders = [
        ("raw aiokafka forwarder", "raw_forward", [str(ready)]),
        ("bare Faust agent", "bare_faust", [str(port), str(work / "bare-data")]),
    ]
    for label, module, extra in forwarders:
        source, sink = f"{module}-source", f"{module}-sink"
        asyncio.run(create_topics(bootstrap, [source, sink], partitions))
        command = [sys.executable, "-m", f"tests.benchmarks.{module}", bootstrap, source, sink]
        with (work / f"{module}.log").open("wb") as log:
            proc = start_process([*command, *extra], log)
            try:
                if module == "raw_forward":
                    wait_file(ready, proc)
                else:
                    wait_ready(port)
                    time.sleep(2)  # its partitions assigned and fetching
                print(f"{label} (decode and forward only):")
                run(broker, {"forwarder": proc.pid}, measure_args=(source, sink, *load))
            finally:
                stop_worker(proc)
    print("clarion:")


def wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the forwarder never became ready (exit {proc.poll()})")
        time.sleep(0.05)


def run(
    broker: EmbeddedBroker,
    pids: dict[str, int],
    measure_args: tuple[str, str, int, float, int],
) -> None:
    """One measurement, then the CPU each process used per event while it ran."""
    source, sink, count, rate, linger_ms = measure_args
    watched = {**pids, "broker": broker.pid or 0, "benchmark": os.getpid()}
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    machine = machine_busy()
    asyncio.run(measure(broker.bootstrap, source, sink, count, rate, linger_ms))
    busy, total = (now - then for now, then in zip(machine_busy(), machine, strict=True))
    cores = os.cpu_count() or 1
    print(f"machine busy                {busy / total * 100:>10.0f} %  of {cores} cores")
    for name, pid in watched.items():
        used = (cpu_seconds(pid) - before[name]) / count * 1e6
        label = f"{name} CPU per event"
        print(f"  {label:<26}{used:>10,.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=PRODUCER_LINGER_MS,
        help="the load producer's linger (0: one produce request per event, as before stop 17)",
    )
    parser.add_argument(
        "--apart", action="store_true", help="intake and dispatch as two processes (roles)"
    )
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        settings = demo_settings(broker.bootstrap, Path(tmp), partitions=4, log_format="json")
        unpaced = {f"rate_{channel}_per_s": 100_000.0 for channel in ("sms", "voice", "email")}
        settings = settings.model_copy(
            update={"log_level": "warning", "commit_interval_s": 2.8, **unpaced}
        )
        asyncio.run(topics.ensure_topics(settings))
        load = (count, args.rate, args.linger_ms)
        floors(broker, Path(tmp), load, settings.partitions)
        source = settings.topic(topics.ACCOUNT_EVENTS)
        asyncio.run(produce(broker.bootstrap, source, profiles(count)))
        roles = [settings]
        if args.apart:
            dispatch = {"role": "dispatch", "web_port": free_port(), "data_dir": Path(tmp) / "d"}
            roles = [
                settings.model_copy(update={"role": "intake"}),
                settings.model_copy(update=dispatch),
            ]
        with ExitStack() as running:
            workers = []
            for role in roles:
                log = running.enter_context((Path(tmp) / f"{role.role}.log").open("wb"))
                workers.append(start_worker(role, log))
                running.callback(stop_worker, workers[-1])
            for role in roles:
                wait_ready(role.web_port)
            wait_taken(settings.kafka_bootstrap, settings.app_id, [source], workers[0])
            outbound = settings.topic(topics.NOTIFICATIONS_URGENT)
            pids = {f"{role.role} worker": w.pid for role, w in zip(roles, workers, strict=True)}
            run(broker, pids, measure_args=(source, outbound, *load))


if __name__ == "__main__":
    main()
