"""Nothing lost to a hostile input: a dead letter always fits, and a worker that cannot
go on stops before it commits past what it did not do (issue 26)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from streams.cli import dead_letters
from streams.cli.demo import start_worker, stop_worker
from streams.kafka import topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.guard import EXIT_CODE
from streams.runtime.settings import Settings
from tests import samples
from tests.conftest import Broker, run_settings
from tests.integration.test_partitioning import clarion, wait
from tests.kafka_gateway import KafkaGateway

pytestmark = pytest.mark.integration


def test_an_input_too_large_to_keep_whole_is_dead_lettered_by_pointer_and_replayed(
    on_both: Broker, tmp_path: Path
) -> None:
    """An 800 kB input in base64 is over the producer's 1 MB limit: today's letter keeps
    4 KiB, the length and the hash, and the replay reads the original back."""
    settings = run_settings(on_both.bootstrap, tmp_path, "big", **on_both.settings)
    profile = samples.event("customer.profile.updated", account_id=None)
    large = samples.event("transaction.large", event_id="evt-big", account_id="A-1")
    large["data"]["merchant"] = "M" * 800_000
    value = json.dumps(large).encode()
    after = samples.event("transaction.large", event_id="evt-after", account_id="A-1")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            asyncio.run(send(settings, [profile, value, after]))
            letters, sent = wait(settings, lambda letters, sent: bool(letters) and bool(sent))
            [letter] = letters
            assert letter.code == "too_large" and letter.truncated
            assert letter.value_bytes == len(value)
            assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
            assert base64.b64decode(letter.value_b64) == value[:4096]
            assert len(letter.model_dump_json()) < 16 * 1024
            assert (letter.topic, letter.partition) == (
                settings.topic(topics.ACCOUNT_EVENTS),
                topics.home_partition(b"C-1", settings.partitions),
            )
            assert [d.cause_event_id for d in sent] == ["evt-after"]  # intake went on
            replayed = clarion(settings, "dead-letters", "--code", "too_large", "--replay")
            assert (replayed.returncode, replayed.stdout) == (
                0,
                "sent 1 too_large dead letters again\n",
            )
            letters, _ = wait(settings, lambda letters, sent: len(letters) == 2)
            assert letters[1].value_sha256 == letter.value_sha256  # the original, whole
            assert letters[1].offset > letter.offset
        finally:
            stop_worker(worker)
        assert worker.returncode == 0


def test_a_truncated_letter_whose_original_is_gone_is_named_and_not_sent(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Past the input topic's retention the original cannot be read back: `read_at` says
    None, and the replay names the letter instead of sending its preview."""
    settings = run_settings(broker.bootstrap, tmp_path, "gone", partitions=1)
    asyncio.run(send(settings, [samples.event("transaction.large", account_id="A-1")]))
    letter = DeadLetter.of(
        code="too_large",
        reason="r",
        topic=settings.topic(topics.ACCOUNT_EVENTS),
        partition=0,
        offset=500,  # never written
        key=b"C-1",
        value=b"x" * 2048,
        received_at=datetime.now(UTC),
        whole_max_bytes=1024,
    )
    sent, missing = asyncio.run(dead_letters.send_again(settings, [letter]))
    assert sent == 0
    assert missing == [f"{letter.topic}[0]@500: the broker no longer holds the original"]
    end = asyncio.run(topics.end_offsets(settings.kafka_bootstrap, [letter.topic]))
    assert list(end.values()) == [1]  # nothing was sent in its place


def test_a_worker_whose_dead_letters_are_refused_exits_without_committing_past_the_input(
    tmp_path: Path,
) -> None:
    """The dead-letter topic's ACL is missing: the broker refuses the letter. The worker
    halts: /live answers 503, it exits 70, and the input's offset is not committed,
    so a worker that can write dead letters reads it again and loses nothing."""
    port = free_port()
    with (
        EmbeddedBroker(advertised_port=port) as broker,
        KafkaGateway(port, broker.port, tls=None) as door,
    ):
        settings = run_settings(f"127.0.0.1:{port}", tmp_path, "acl", partitions=1)
        door.refuse_produce_to = frozenset({settings.topic(topics.DEAD_LETTERS)})
        profile = samples.event("customer.profile.updated", account_id=None)
        good = samples.event("transaction.large", event_id="evt-good", account_id="A-1")
        later = samples.event(
            "transaction.large",
            event_id="evt-later",
            account_id="A-1",
            occurred_at="2026-11-21T14:00:00Z",
        )
        with (tmp_path / "first.log").open("wb") as log:
            worker = start_worker(settings, log)
            try:
                asyncio.run(send(settings, [profile, good]))
                wait(settings, lambda letters, sent: bool(sent))  # up and deciding
                probe = LiveProbe(settings.web_port)
                asyncio.run(send(settings, [b"{not json"]))
                exit_code = worker.wait(timeout=60)
                probe.stop()
            finally:
                stop_worker(worker)
        assert exit_code == EXIT_CODE
        assert any(settings.topic(topics.DEAD_LETTERS) in r for r in door.refused_produce)
        halted = [
            json.loads(line)
            for line in (tmp_path / "first.log").read_text().splitlines()
            if '"worker.halted"' in line
        ]
        assert [h["why"] for h in halted] == ["the broker refused a record this worker produced"]
        assert probe.saw_halted, "/live never answered 503 before the exit"
        tp = TopicPartition(settings.topic(topics.ACCOUNT_EVENTS), 0)
        [committed] = asyncio.run(
            topics.committed(settings.kafka_bootstrap, settings.app_id, [tp])
        ).values()
        assert committed <= 2, "an offset was committed past the input whose letter was refused"

        door.refuse_produce_to = frozenset()  # the ACL is fixed
        with (tmp_path / "second.log").open("wb") as log:
            worker = start_worker(settings, log)
            try:
                asyncio.run(send(settings, [later]))
                # The letter and the later decision are on two topics: wait for both.
                letters, sent = wait(
                    settings, lambda letters, sent: "evt-later" in causes(sent) and bool(letters)
                )
            finally:
                stop_worker(worker)
    assert [letter.code for letter in letters] == ["invalid_json"]
    assert {d.cause_event_id for d in sent} == {"evt-good", "evt-later"}
    assert len({d.notification_id for d in sent}) == len(sent)  # nothing sent twice


def test_refused_requests_halt_intake_before_any_decision_names_them(tmp_path: Path) -> None:
    """The requests' topic refuses writes (the urgent lane's: a large transaction opens an
    urgent case): the batch's requests are awaited before its
    decisions, so the worker halts with no `sent` row for a message that was never
    requested, commits nothing past the input, and decides it once the door opens."""
    port = free_port()
    with (
        EmbeddedBroker(advertised_port=port) as broker,
        KafkaGateway(port, broker.port, tls=None) as door,
    ):
        settings = run_settings(f"127.0.0.1:{port}", tmp_path, "req", partitions=1)
        outbound = settings.topic(topics.NOTIFICATIONS_URGENT)
        door.refuse_produce_to = frozenset({outbound})
        profile = samples.event("customer.profile.updated", account_id=None)
        good = samples.event("transaction.large", event_id="evt-good", account_id="A-1")
        with (tmp_path / "first.log").open("wb") as log:
            worker = start_worker(settings, log)
            try:
                asyncio.run(send(settings, [profile, good]))
                exit_code = worker.wait(timeout=60)
            finally:
                stop_worker(worker)
        assert exit_code == EXIT_CODE
        assert any(outbound in r for r in door.refused_produce)
        rows = asyncio.run(
            topics.read_all(settings.kafka_bootstrap, settings.topic(topics.DECISIONS))
        )
        assert not [r for _, r in rows if b"evt-good" in r], "a row for a request never made"
        tp = TopicPartition(settings.topic(topics.ACCOUNT_EVENTS), 0)
        [committed] = asyncio.run(
            topics.committed(settings.kafka_bootstrap, settings.app_id, [tp])
        ).values()
        assert committed <= 1

        door.refuse_produce_to = frozenset()
        with (tmp_path / "second.log").open("wb") as log:
            worker = start_worker(settings, log)
            try:
                _, sent = wait(settings, lambda _, sent: "evt-good" in causes(sent))
                made = asyncio.run(topics.read_all(settings.kafka_bootstrap, outbound))
            finally:
                stop_worker(worker)
    requested = {json.loads(v)["notification_id"] for _, v in made}
    assert sent and all(d.notification_id in requested for d in sent)


def causes(sent: list[Decision]) -> set[str | None]:
    return {d.cause_event_id for d in sent}


def test_the_issues_reproductions_are_refused_and_nothing_after_them_is_lost(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A profile nested 250 deep poisoned its customer for good; a lone surrogate left
    `opened` and `sent` rows for a message never produced. Both are refused now, leave
    no row, and the customer's next input is decided."""
    settings = run_settings(broker.bootstrap, tmp_path, "hostile")
    profile = samples.event("customer.profile.updated", account_id=None)
    deep: object = "leaf"
    for _ in range(250):
        deep = {"n": deep}
    poisoned = samples.event("customer.profile.updated", event_id="evt-deep", account_id=None)
    poisoned["data"]["extra"] = deep
    surrogate = json.dumps(
        samples.event("transaction.large", event_id="evt-surrogate", account_id="A-1")
    ).replace('"merchant": "', '"merchant": "Shop\\ud800')
    after = samples.event("transaction.large", event_id="evt-after", account_id="A-1")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = start_worker(settings, log)
        try:
            asyncio.run(send(settings, [profile, poisoned, surrogate.encode(), after]))
            letters, _ = wait(settings, lambda _, sent: "evt-after" in causes(sent))
            rows = asyncio.run(
                topics.read_all(settings.kafka_bootstrap, settings.topic(topics.DECISIONS))
            )
        finally:
            stop_worker(worker)
    assert [(letter.code, letter.offset) for letter in letters] == [
        ("too_deep", 1),
        ("invalid_text", 2),
    ]
    assert "data.extra" in letters[0].reason and "U+D800" in letters[1].reason
    refused = {"evt-deep", "evt-surrogate"}
    assert not [r for _, r in rows if any(e.encode() in r for e in refused)], "a phantom row"


class LiveProbe:
    """Asks `/live` every 50 ms in a thread; remembers whether it ever answered 503."""

    def __init__(self, port: int) -> None:
        self.saw_halted = False
        self._stopped = threading.Event()
        self._url = f"http://127.0.0.1:{port}/live"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                urllib.request.urlopen(self._url, timeout=1).close()
            except urllib.error.HTTPError as exc:
                self.saw_halted |= exc.code == 503
            except OSError:
                pass  # not listening (yet, or any more)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


async def send(settings: Settings, messages: list[dict[str, object] | bytes]) -> None:
    """Each message to account-events on its customer's partition (C-1's), in order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_request_size=2**21)
    await producer.start()
    try:
        topic = settings.topic(topics.ACCOUNT_EVENTS)
        for message in messages:
            value = message if isinstance(message, bytes) else json.dumps(message).encode()
            await producer.send_and_wait(topic, value, key=b"C-1")
    finally:
        await producer.stop()
