"""`clarion demo`: the whole pipeline on a laptop, start to finish, then a timeline.

Starts the embedded broker, one worker process against it (sandbox channel,
example policies, the event-time clock), feeds `deploy/demo/`, waits until the
worker has committed every input and every notification, prints what happened
to each customer, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TextIO

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from policies.simulator import default_until
from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from schemas.intake import Rejection, check_event
from streams.app import BUNDLED
from streams.cli import timeline
from streams.intake.timers import clock_message
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker, die_with_parent, free_port
from streams.runtime.settings import Settings

DEMO_DIR = BUNDLED / "demo"


class DemoError(RuntimeError):
    """The demo could not run to the end; the message says where to look."""


@dataclass(frozen=True)
class DemoResult:
    decisions: list[Decision]
    dead_letters: list[DeadLetter]
    outbox: Path


def demo_settings(bootstrap: str, workdir: Path, **overrides: Any) -> Settings:
    """Settings for a worker on the embedded broker (the demo and the tests).

    Tansu holds a group join for half the session timeout, hence the short one.
    """
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "app_id": "clarion-demo",
        "partitions": 2,
        "clock": "event",
        "outbox_path": workdir / "outbox.jsonl",
        "data_dir": workdir / "worker-data",
        "web_port": free_port(),
        "session_timeout_s": 2.0,
        "heartbeat_interval_s": 0.5,
        "commit_interval_s": 0.2,
        "fetch_max_wait_ms": 10,
        "log_format": "console",
    }
    return Settings(**{**values, **overrides})


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a worker process needs to run with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARION_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"CLARION_{name.upper()}"] = str(value)
    return env


def start_worker(settings: Settings, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A `clarion worker` process with these settings that cannot outlive us."""
    return start_process(
        [sys.executable, "-m", "streams.cli", "worker"], log, settings_env(settings)
    )


def start_process(
    command: list[str], log: IO[bytes], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A process that cannot outlive us: SIGKILLed by Linux if we die first.

    SIGKILL, not SIGTERM: a worker whose broker is gone can hang in shutdown
    (aiokafka #773), and at-least-once delivery makes a hard stop safe.
    """
    return subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=functools.partial(die_with_parent, signal.SIGKILL),
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def produce_lines(bootstrap: str, topic: str, lines: list[str]) -> int:
    """Send each JSONL line as it is, keyed by its customer_id where one can be read."""
    # acks="all": a line the broker answered for is on every in-sync replica, so a
    # leader lost right after (a cluster's fault tests do that) does not lose it.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        for line in lines:
            try:
                key = str(json.loads(line).get("customer_id", "")).encode() or None
            except (ValueError, AttributeError):
                key = None
            await producer.send(topic, key=key, value=line.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return len(lines)


def read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def settle(
    settings: Settings, timeout: float, alive: Callable[[], bool], apart: bool = False
) -> tuple[list[Decision], list[DeadLetter]]:
    """Wait until the workers have handled everything produced so far; return the ledger.

    Intake commits its inputs after it produced their notifications, so once the
    inputs are committed the outbound topic holds all it ever will for them; then
    the outbound topic itself is waited for, and the retry topic, where the
    dispatcher parks a send its rate limit would hold. `apart`: intake and
    dispatch run as separate roles, each in its own consumer group.
    """
    bootstrap = settings.kafka_bootstrap
    inputs = [
        settings.topic(t)
        for t in (*topics.INPUTS, topics.ACCOUNT_EVENTS_URGENT, topics.TIMER_TICKS)
    ]
    outbound = [settings.topic(t) for t in (*topics.OUTBOUND, topics.NOTIFICATION_RETRIES)]
    dispatch_group = settings.group("dispatch") if apart else settings.app_id
    for group, wanted in (
        (settings.app_id, inputs),
        (dispatch_group, outbound),
        (settings.app_id, inputs),  # again: what dispatch fed back in (SMS replies)
    ):
        await topics.wait_until_consumed(bootstrap, group, wanted, timeout=timeout, alive=alive)
    decisions = [
        Decision.model_validate_json(v)
        for _, v in await topics.read_all(bootstrap, settings.topic(topics.DECISIONS))
    ]
    letters = [
        DeadLetter.model_validate_json(v)
        for _, v in await topics.read_all(bootstrap, settings.topic(topics.DEAD_LETTERS))
    ]
    return decisions, letters


async def advance_clock(settings: Settings, to: datetime) -> None:
    """Move the virtual clock of every partition to `to`: every timer due by then fires."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(settings.partitions):
            await producer.send(
                settings.topic(topics.TIMER_TICKS), value=clock_message(to), partition=partition
            )
        await producer.flush()
    finally:
        await producer.stop()


def horizon(files: list[Path]) -> datetime | None:
    """What `policy simulate` runs to by default, over the files' valid events."""
    checked = (
        check_event(line.encode(), None, keyed=False) for p in files for line in read_lines(p)
    )
    return default_until(e for e in checked if not isinstance(e, Rejection))


async def feed_and_settle(
    settings: Settings, files: list[Path], timeout: float, alive: Callable[[], bool]
) -> tuple[list[Decision], list[DeadLetter]]:
    for path in files:
        await produce_lines(
            settings.kafka_bootstrap, settings.topic(topics.ACCOUNT_EVENTS), read_lines(path)
        )
    await settle(settings, timeout, alive)
    until = horizon(files)
    if until is not None:
        await advance_clock(settings, until)
    return await settle(settings, timeout, alive)


def run_demo(
    files: list[Path], workdir: Path, out: TextIO, timeout: float = 120.0, fmt: str = "table"
) -> DemoResult:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        settings = demo_settings(broker.bootstrap, workdir)
        asyncio.run(topics.ensure_topics(settings))
        with (workdir / "worker.log").open("wb") as log:
            worker = start_worker(settings, log)
            try:
                decisions, letters = asyncio.run(
                    feed_and_settle(settings, files, timeout, lambda: worker.poll() is None)
                )
            except RuntimeError as exc:
                raise DemoError(f"{exc}; see {workdir / 'worker.log'}") from None
            finally:
                stop_worker(worker)
    zones = _zones(files)
    if fmt == "jsonl":
        ordered = sorted(decisions, key=lambda d: d.at)  # stable: each customer's order stays
        out.writelines(json.dumps(timeline.row(d)) + "\n" for d in ordered)
        out = sys.stderr
    else:
        out.write(timeline.render(decisions, zones, letters))
    sent = sum(1 for d in decisions if d.action == "sent")
    out.write(
        f"{len(decisions)} decisions ({sent} messages sent), {len(letters)} dead-letters "
        f"in {time.monotonic() - started:.1f}s. Outbox: {settings.outbox_path}; "
        f"worker log: {workdir / 'worker.log'}\n"
    )
    return DemoResult(decisions, letters, settings.outbox_path)


def _zones(files: list[Path]) -> dict[str, list[str]]:
    zones: dict[str, list[str]] = {}
    for path in files:
        for line in read_lines(path):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("type") == "customer.profile.updated":
                zones[obj["customer_id"]] = obj.get("data", {}).get("time_zones", [])
    return zones
