"""`ClarionTable.write` against Faust's own `table[key] = value`, on the real broker.

The direct write skips Faust's producer buffer (streams/kafka/transport.py says why).
What must not change is what lands in the changelog, since recovery, the bulk
read and a replacement worker all read it back: the same key and value bytes,
on the partition of the event being handled. And RocksDB must go on noting
the offsets it has written, or a restart would replay them all again.
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust.streams as faust_streams
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP
from structlog.testing import capture_logs

from streams.kafka import transport
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.transport import ClarionApp


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(topic="write-test-source", partition=partition)


def _handling(partition: int) -> Any:
    """Make an event of `partition` the one being handled, as the intake agent does."""
    event = _Event(partition)
    faust_streams._current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    return event  # the caller holds it: the context keeps only a weak reference


async def _changelog(bootstrap: str, topic: str, partition: int) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[Any] = []
        while len(records) < 4:
            batch = await consumer.getmany(tp, timeout_ms=2000)
            if not batch:
                break
            records += batch[tp]
        return records
    finally:
        await consumer.stop()


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_a_direct_write_sends_what_fausts_own_write_sends(
    store: str, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    if store == "rocksdb://":
        pytest.importorskip("rocksdict")
    name = f"write-test-{store[:3]}"
    app = ClarionApp(name, broker=f"kafka://{broker.bootstrap}", store=store, datadir=str(tmp_path))
    table = transport.table(app, "things", partitions=2)
    changelog = table.changelog_topic.get_topic_name()
    await app.producer.start()
    try:
        await table.changelog_topic.maybe_declare()
        event = _handling(1)
        value = {"due": "2026-11-24T09:00:00+00:00", "ids": ["evt-1", "evt-2"]}
        table["C-1"] = value  # Faust's own write, through its buffer
        await app.producer.flush()  # so it goes first, and the offsets after it are ours
        await table.write("C-1", value)
        await table.write("C-2", {"other": True})
        await app.producer.flush()
        assert table["C-1"] == value and table["C-2"] == {"other": True}
        if store == "rocksdb://":
            assert table.data.persisted_offset(TP(changelog, 1)) == 2
        del event
    finally:
        await app.producer.stop()
    theirs, ours, other = await _changelog(broker.bootstrap, changelog, 1)
    assert (ours.key, ours.value) == (theirs.key, theirs.value), "the same bytes either way"
    assert [r.offset for r in (theirs, ours, other)] == [0, 1, 2]
    assert (theirs.key, other.key) == (b'"C-1"', b'"C-2"')
    assert await _changelog(broker.bootstrap, changelog, 0) == [], "the event's partition only"


def test_a_write_outside_an_event_is_refused(tmp_path: Path) -> None:
    app = ClarionApp("write-test-none", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    table = transport.table(app, "things", partitions=1)
    faust_streams._current_event.set(None)
    with pytest.raises(TypeError, match="outside of stream iteration"):
        asyncio.run(table.write("C-1", {}))
    assert "C-1" not in table


async def test_a_write_the_producer_refuses_is_not_kept(tmp_path: Path) -> None:
    app = ClarionApp("write-test-refused", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    table = transport.table(app, "things", partitions=1)

    async def refuse(*args: Any) -> Any:
        raise RuntimeError("producer not running")

    app.producer.send = refuse  # type: ignore[method-assign]
    event = _handling(0)
    with pytest.raises(RuntimeError, match="producer not running"):
        await table.write("C-1", {"n": 1})
    assert "C-1" not in table, "no value in the store without its changelog record"
    del event


async def test_a_record_the_broker_refuses_later_is_logged_and_not_noted(tmp_path: Path) -> None:
    app = ClarionApp("write-test-late", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    table = transport.table(app, "things", partitions=1)
    noted: list[Any] = []
    table.data.set_persisted_offset = lambda tp, offset: noted.append(offset)  # type: ignore[method-assign]
    refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    refused.set_exception(RuntimeError("NotLeaderForPartition"))
    with capture_logs() as logs:
        table._written(refused)
    assert [(e["event"], e["table"]) for e in logs] == [("table.changelog_not_written", "things")]
    assert "NotLeaderForPartition" in logs[0]["error"]
    assert noted == [], "no offset noted for a record the broker did not take"
