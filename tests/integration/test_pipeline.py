"""The stories and malformed input through a real worker on the real broker."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import get_args

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from channels.sandbox import read_outbox
from schemas.dead_letters import DeadLetter
from schemas.decisions import Action, Decision
from streams.cli.demo import demo_settings, settle, start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import free_port
from streams.runtime.settings import Settings
from tests import samples
from tests.conftest import ROOT, STORIES, Broker, metrics

pytestmark = pytest.mark.integration

# (key, value, expected dead-letter code)
MALFORMED: list[tuple[bytes | None, bytes, str]] = [
    (b"C-2001", b'{"event_id": "bad-1", "type": ', "invalid_json"),
    (b"C-2001", b"\xff\xfe not text", "invalid_json"),
    (b"C-2001", b"[1, 2, 3]", "not_an_object"),
    (
        b"C-1",
        samples.raw("payment.missed", type="payment.late"),
        "unknown_type",
    ),
    (
        b"C-1",
        json.dumps({**samples.event("payment.missed"), "data": {"currency": "USD"}}).encode(),
        "invalid_field",
    ),
    (b"C-1", samples.raw("payment.missed", occurred_at="2026-11-20T14:00:00"), "naive_timestamp"),
    (
        b"C-1",
        json.dumps(samples.event("hardship.reported", data={"reason": "x" * 70_000})).encode(),
        "too_large",
    ),
    (b"C-9", samples.raw("payment.missed"), "key_mismatch"),
    (b"C-1", samples.raw("payment.missed", schema_version=3), "unsupported_schema_version"),
]

# First-step messages of the stories whose first steps fall inside contact windows.
EXPECTED_OUTBOX = {
    ("C-1001", "sms", "+13125550101", "payment-missed"),
    ("C-1001", "email", "ana@example.com", "validation-notice"),
    ("C-1002", "email", "ben@example.com", "payment-missed"),
    ("C-1002", "email", "ben@example.com", "validation-notice"),
    ("C-1004", "sms", "+14155550104", "confirm-transaction"),
    ("C-1005", "email", "eve.new@example.com", "contact-changed"),
    ("C-1005", "email", "eve.old@example.com", "contact-changed"),
    ("C-1006", "email", "finn@example.com", "payment-missed"),
    ("C-1006", "email", "finn@example.com", "validation-notice"),
    ("C-1008", "email", "hal@example.com", "terms-changed"),
    ("C-1010", "sms", "+14045550110", "payment-missed"),
    ("C-1010", "email", "jay@example.com", "validation-notice"),
}


@pytest.fixture
def settings(on_both: Broker, tmp_path: Path) -> Settings:
    """Each test here runs on Tansu and on Apache Kafka (issue 20)."""
    run = uuid.uuid4().hex[:8]
    return demo_settings(
        on_both.bootstrap,
        tmp_path,
        app_id=f"clarion-it-{run}",
        topic_prefix=f"it{run}.",
        partitions=3,
        log_format="json",
        **on_both.settings,
    )


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[object]:
    asyncio.run(topics.ensure_topics(settings))
    with (tmp_path / "worker.log").open("wb") as log:
        proc = start_worker(settings, log)
        yield proc
        stop_worker(proc)


async def produce(settings: Settings, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=200_000
    )
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(settings.topic(topics.ACCOUNT_EVENTS), key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def test_stories_and_malformed_messages(settings: Settings, worker: object) -> None:
    alive = worker.poll  # type: ignore[attr-defined]
    decisions, letters = asyncio.run(settle_after(settings, lambda: alive() is None, mixed()))
    check_stories(settings, decisions, letters)

    # What the worker counted, as Prometheus scrapes it, agrees with the topics.
    scraped = metrics(settings.web_port)
    source = settings.topic(topics.ACCOUNT_EVENTS)
    assert scraped[f'clarion_inputs_total{{topic="{source}",outcome="duplicate"}}'] == 1
    assert scraped[f'clarion_inputs_total{{topic="{source}",outcome="dead_lettered"}}'] == len(
        MALFORMED
    )
    stories = [line for line in STORIES.read_text().splitlines() if line.strip()]
    assert scraped[f'clarion_inputs_total{{topic="{source}",outcome="accepted"}}'] >= len(stories)
    for code in {code for *_, code in MALFORMED}:
        expected = sum(1 for *_, c in MALFORMED if c == code)
        assert scraped[f'clarion_dead_letters_total{{code="{code}"}}'] == expected
    for action in ("opened", "sent", "suppressed", "dispatched"):
        counted = sum(
            v
            for k, v in scraped.items()
            if k.startswith(f'clarion_decisions_total{{action="{action}"')
        )
        assert counted == sum(1 for d in decisions if d.action == action), action
    assert scraped["clarion_ready"] == 1
    assert "clarion_pending_timers" in scraped
    calls = sum(v for k, v in scraped.items() if k.startswith("clarion_provider_calls_total{"))
    assert calls == sum(1 for d in decisions if d.action == "dispatched")
    assert scraped['clarion_circuit_state{provider="sandbox"}'] == 0
    # Everything on the inputs was committed: the lag of each of their partitions is 0.
    for partition in range(settings.partitions):
        assert scraped[f'clarion_consumer_lag{{topic="{source}",partition="{partition}"}}'] == 0

    # Every metric the Grafana dashboard queries is one this worker publishes.
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "clarion.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = {name for expr in queries for name in re.findall(r"\bclarion_\w+", expr)}
    published = {key.split("{")[0] for key in scraped}
    assert queried and queried <= published, sorted(queried - published)
    actions = {
        a for expr in queries for m in re.findall(r'action=~?"([^"]+)"', expr) for a in m.split("|")
    }
    assert actions <= set(get_args(Action)), sorted(actions - set(get_args(Action)))


# Tansu only; on Kafka each role runs as its pod in test_kubernetes_pods.py.
@pytest.mark.parametrize("on_both", ["tansu"], indirect=True)
def test_intake_and_dispatch_apart_give_the_same_answer(settings: Settings, tmp_path: Path) -> None:
    """The two roles as separate processes, each in its own consumer group."""
    asyncio.run(topics.ensure_topics(settings))
    intake = settings.model_copy(update={"role": "intake"})
    dispatch = settings.model_copy(
        update={"role": "dispatch", "web_port": free_port(), "data_dir": tmp_path / "dispatch"}
    )
    with (
        (tmp_path / "intake.log").open("wb") as intake_log,
        (tmp_path / "dispatch.log").open("wb") as dispatch_log,
    ):
        procs = [start_worker(intake, intake_log), start_worker(dispatch, dispatch_log)]  # type: ignore[arg-type]
        try:
            decisions, letters = asyncio.run(
                settle_after(
                    settings, lambda: all(p.poll() is None for p in procs), mixed(), apart=True
                )
            )
        finally:
            for proc in procs:
                stop_worker(proc)
    check_stories(settings, decisions, letters)
    # The tables' changelogs are named after the app id in both roles, as with one process.
    names = asyncio.run(topic_names(settings.kafka_bootstrap))
    changelogs = {n for n in names if n.startswith(settings.app_id) and n.endswith("-changelog")}
    tables = ("customers", "seen-event-ids", "dispatched-ids", "sms-numbers")
    assert changelogs == {f"{settings.app_id}-{table}-changelog" for table in tables}
    # Each role is its own group: dispatch read all the requests and no input; intake the
    # inputs and no request.
    bootstrap = settings.kafka_bootstrap
    requests = asyncio.run(
        topics.end_offsets(bootstrap, [settings.topic(t) for t in topics.OUTBOUND])
    )
    inputs = asyncio.run(topics.end_offsets(bootstrap, [settings.topic(topics.ACCOUNT_EVENTS)]))
    assert (
        asyncio.run(topics.committed(bootstrap, settings.group("dispatch"), requests)) == requests
    )
    assert asyncio.run(topics.committed(bootstrap, settings.group("intake"), inputs)) == inputs
    assert set(
        asyncio.run(topics.committed(bootstrap, settings.group("intake"), requests)).values()
    ) == {0}
    assert set(
        asyncio.run(topics.committed(bootstrap, settings.group("dispatch"), inputs)).values()
    ) == {0}


async def topic_names(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


def mixed() -> list[tuple[bytes | None, bytes]]:
    """The stories with malformed messages interleaved, and one producer retry at the end."""
    stories = [line for line in STORIES.read_text().splitlines() if line.strip()]
    story_msgs = [(json.loads(line)["customer_id"].encode(), line.encode()) for line in stories]
    duplicate = story_msgs[stories.index(next(s for s in stories if '"evt-0020"' in s))]
    messages: list[tuple[bytes | None, bytes]] = []
    for i, msg in enumerate(story_msgs):
        messages.append(msg)
        if i < len(MALFORMED):
            messages.append(MALFORMED[i][:2])
    messages.append(duplicate)  # a producer retry: must change nothing
    return messages


def check_stories(settings: Settings, decisions: list[Decision], letters: list[DeadLetter]) -> None:
    stories = [line for line in STORIES.read_text().splitlines() if line.strip()]

    # Every malformed message is in dead-letters, whole, with its reason; nothing else is.
    assert sorted(letter.code for letter in letters) == sorted(code for *_, code in MALFORMED)
    by_bytes = {letter.original_value(): letter for letter in letters}
    for key, value, code in MALFORMED:
        letter = by_bytes[value]
        assert letter.code == code and letter.reason
        assert letter.topic == settings.topic(topics.ACCOUNT_EVENTS)
        assert letter.key_b64 == (base64.b64encode(key).decode() if key else None)

    # The sandbox received the expected first-step messages, once each (the retry sent nothing).
    outbox = read_outbox(settings.outbox_path)
    got = {(m["customer_id"], m["channel"], m["recipient"], m["template"]) for m in outbox}
    assert got >= EXPECTED_OUTBOX
    assert len(outbox) == len({m["notification_id"] for m in outbox})
    assert all(m["body"] for m in outbox)

    # The engine's `sent` decisions and the dispatcher's `dispatched` rows match the outbox.
    sent = {d.notification_id for d in decisions if d.action == "sent"}
    dispatched = {d.notification_id for d in decisions if d.action == "dispatched"}
    failed = [d for d in decisions if d.action == "failed"]
    assert failed == []
    assert sent == dispatched == {m["notification_id"] for m in outbox}

    # No valid event lost: every triggering or stopping story event left a decision.
    causes = {d.cause_event_id for d in decisions}
    for line in stories:
        event = json.loads(line)
        if event["type"] not in (
            "customer.profile.updated",
            "customer.preferences.updated",
            "consent.changed",
            "dispute.opened",
            "dispute.resolved",
            "hardship.reported",
        ):
            assert event["event_id"] in causes, event["event_id"]
    assert ("C-1009", "opt_in_required") in {(d.customer_id, d.reason) for d in decisions}


async def settle_after(
    settings: Settings,
    alive: Callable[[], bool],
    messages: list[tuple[bytes | None, bytes]],
    apart: bool = False,
) -> tuple[list[Decision], list[DeadLetter]]:
    await produce(settings, messages)
    return await settle(settings, 60, alive, apart)


def test_health_and_readiness_and_no_table_page(settings: Settings, worker: object) -> None:
    import time
    import urllib.error

    base = f"http://127.0.0.1:{settings.web_port}"

    def get(path: str) -> tuple[int, dict[str, object] | None]:
        try:
            with urllib.request.urlopen(base + path, timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            return exc.code, json.loads(body) if body.startswith(b"{") else None

    deadline = time.monotonic() + 30
    status: tuple[int, dict[str, object] | None] = (0, None)
    while time.monotonic() < deadline:
        try:
            status = get("/ready")
        except OSError:  # the web server is not up yet
            status = (0, None)
        if status[0] == 200:
            break
        time.sleep(0.2)
    assert status[0] == 200 and status[1] and status[1]["ready"] is True
    assert get("/health") == get("/live") == (200, {"status": "ok"})
    assert status[1]["halted"] is None
    assert get("/table/customers")[0] == 404  # customer data is never served
    # Without their secrets, the API and the page say so rather than serve anything.
    assert get("/api/v1/customers/C-1001/preferences") == (
        503,
        {"error": "the API is not configured (CLARION_API_KEYS)"},
    )
    assert get("/p/some-token")[0] == 503
