"""The embedded broker manager starts a real broker and never leaves one behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka.broker import EmbeddedBroker, metadata_ok
from streams.kafka.topics import read_past
from streams.kafka.transport import rewind_uncommitted, set_paused_in_client

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_starts_answers_metadata_and_stops() -> None:
    with EmbeddedBroker() as broker:
        pid = broker.pid
        assert pid is not None and alive(pid)
        assert metadata_ok("127.0.0.1", broker.port)
    assert wait_gone(pid)
    assert not metadata_ok("127.0.0.1", broker.port)


def test_stops_when_the_block_fails() -> None:
    pid = None
    with pytest.raises(RuntimeError, match="boom"), EmbeddedBroker() as broker:
        pid = broker.pid
        raise RuntimeError("boom")
    assert pid is not None and wait_gone(pid)


def broker_in_a_child(body: str) -> tuple[subprocess.Popen[str], int]:
    """Run `body` (it starts a broker) in a child; return the child and the broker's pid."""
    # Ctrl-C as a user's own Python gets it: a child inherits an ignored SIGINT
    # (a shell ignores it for the commands it starts in the background), and
    # Python then leaves it ignored.
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from streams.kafka.broker import EmbeddedBroker\n"
        "from streams.runtime.logging import configure; configure()\n"
        f"{body}\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    assert alive(pid)
    return proc, pid


def test_stops_on_ctrl_c_in_the_parent() -> None:
    proc, pid = broker_in_a_child(
        "with EmbeddedBroker() as b:\n    print(b.pid, flush=True)\n    time.sleep(60)"
    )
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    assert wait_gone(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_dies_with_a_parent_killed_by_sigkill() -> None:
    proc, pid = broker_in_a_child(
        "b = EmbeddedBroker().start()\nprint(b.pid, flush=True)\ntime.sleep(60)"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert wait_gone(pid)


def test_a_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.kafka.broker import BrokerError, find_broker_binary

    monkeypatch.setenv("CLARION_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="CLARION_TANSU_BIN"):
        find_broker_binary()


def test_end_offsets_are_read_past_a_short_list_offsets_answer(broker: EmbeddedBroker) -> None:
    """Tansu answers ListOffsets with the last batch's base offset + 1; the records say 20."""

    async def run() -> tuple[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        await producer.start()
        try:
            for batch in range(2):  # two batches of ten records each
                for n in range(10):
                    await producer.send("read-past", f"{batch}-{n}".encode(), partition=0)
                await producer.flush()
        finally:
            await producer.stop()
        tp = TopicPartition("read-past", 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            reported = (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()
        return reported, (await read_past(broker.bootstrap, {tp: reported}))[tp]

    reported, ends = asyncio.run(run())
    assert ends == 20
    assert reported <= 20  # 11 on Tansu 0.6, 20 on Kafka: either way the records decide


def test_a_partition_never_committed_is_rewound_by_the_seek_back(broker: EmbeddedBroker) -> None:
    """aiokafka's seek to the committed offsets skips a partition with none; ours rewinds it.

    Faust drops records a rebalance interrupts, and relies on that seek to read
    them again: a partition that had never committed lost them (the take-over flake).
    """
    fresh, kept = TopicPartition("rewind", 0), TopicPartition("rewind", 1)

    async def run() -> dict[str, int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for n in range(3):
                for tp in (fresh, kept):
                    await producer.send(tp.topic, f"m{n}".encode(), partition=tp.partition)
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id="rewind-group",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign([fresh, kept])
            taken = 0
            while taken < 6:  # read everything: both positions move to 3
                batch = await consumer.getmany(timeout_ms=1000)
                taken += sum(len(records) for records in batch.values())
            await consumer.commit({kept: 2})
            await consumer.seek_to_committed()
            found = {"aiokafka, never committed": await consumer.position(fresh)}
            found["aiokafka, committed 2"] = await consumer.position(kept)
            await consumer.getmany(timeout_ms=500)  # positions back at 3
            await rewind_uncommitted(consumer, skip=lambda tp: tp == fresh)
            found["ours, skipped"] = await consumer.position(fresh)
            await rewind_uncommitted(consumer, skip=lambda tp: False)
            found["ours, never committed"] = await consumer.position(fresh)
            found["ours, committed 2"] = await consumer.position(kept)
            return found
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == {
        "aiokafka, never committed": 3,  # the fault: three unread records skipped
        "aiokafka, committed 2": 2,
        "ours, skipped": 3,  # as a table's changelog is: recovery positions it
        "ours, never committed": 0,
        "ours, committed 2": 2,
    }


def test_a_changelog_partition_paused_in_the_client_holds_up_no_fetch(
    broker: EmbeddedBroker,
) -> None:
    """Faust pauses a changelog only in its own books; ours pauses it in aiokafka too (fault 5).

    Records fetched for a partition nobody takes stay in aiokafka's buffer, and
    while they do it sends the broker no new fetch for up to 100 ms: after every
    assignment, the worker's first write to each changelog partition stalled
    intake that long. Paused in the client, the partition is not fetched at all.
    """
    stream, changelog, elsewhere = (TopicPartition("paused", n) for n in (0, 1, 2))

    async def run() -> dict[str, object]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=10)
        await producer.start()
        await consumer.start()
        try:
            await producer.send_and_wait("paused", b"first", partition=changelog.partition)
            consumer.assign([stream, changelog])
            await consumer.seek_to_beginning(stream, changelog)
            found: dict[str, object] = {}

            async def untaken() -> bool:
                """Whether the changelog's records sit fetched, untaken (500 ms to show up)."""
                for _ in range(50):
                    await consumer.getmany(stream, timeout_ms=10)  # taking the stream only
                    if changelog in consumer._fetcher._records:
                        return True
                return False

            found["as Faust leaves it: fetched, never taken"] = await untaken()
            consumer.seek(changelog, 0)  # drops what was fetched, as a rebalance does
            set_paused_in_client(
                consumer, [changelog, elsewhere], True
            )  # `elsewhere` is not assigned
            found["paused in the client"] = consumer.paused()
            await producer.send_and_wait("paused", b"second", partition=changelog.partition)
            found["ours: fetched"] = await untaken()
            set_paused_in_client(consumer, [changelog], False)
            batch = await consumer.getmany(changelog, timeout_ms=2000)
            found["resumed: read again"] = [r.value for r in batch.get(changelog, [])]
            return found
        finally:
            await consumer.stop()
            await producer.stop()

    assert asyncio.run(run()) == {
        "as Faust leaves it: fetched, never taken": True,
        "paused in the client": {changelog},
        "ours: fetched": False,
        "resumed: read again": [b"first", b"second"],
    }
