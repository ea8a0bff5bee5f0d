"""Stores that read a newly assigned changelog partition in bulk, before Faust's recovery.

Faust replays a changelog a record at a time through its consumer, its
conductor and a task per message: about 3,000 records a second here, 30 s for
100,000 customers and 400 s for a million (docs/performance.md). Its main
thread is 87% busy doing it (py-spy). Read directly with aiokafka, the same
records come at tens of thousands a second.

So when a worker is given an active partition, these stores first read that
partition of the changelog from where they stand to its end, straight into the
table, and report the last offset read as the partition's persisted offset.
Faust's recovery then starts there and replays only what was written since.

- The memory store holds nothing of a new partition, so it reads from the
  start. Faust's own memory store reports no persisted offset, which is why
  Faust replays everything for it.
- RocksDB keeps its data and offset on disk, so it reads from its offset on: the
  records written while this worker was away, or all of them on a new disk.

Standby partitions are left to Faust, as before. On the memory store a revoked
partition is forgotten, so if it comes back it is read again from the start. If
a bulk read fails, the store forgets what it read and Faust replays it all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Set
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import memory, rocksdb
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from streams.kafka.topics import read_past
from streams.runtime.security import client_options

log = structlog.get_logger()

Apply = Callable[[int, bytes | None, bytes | None], None]
"""One record: its partition, raw key and raw value (None: a deletion)."""


class _BulkLoaded:
    """What both stores share: which partitions to read, and the read itself."""

    app: Any
    table: Any

    async def on_rebalance(
        self,
        assigned: Set[TP],
        revoked: Set[TP],
        newly_assigned: Set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(  # type: ignore[misc]
            assigned, revoked, newly_assigned, generation_id
        )
        self._forget(revoked)
        fresh = self._fresh(newly_assigned)
        if not fresh:
            return
        try:
            await self._catch_up(fresh)
        except Exception as exc:  # the store keeps the offsets it had: Faust's replay still works
            log.warning("table.read_in_bulk_failed", table=self.table.name, error=repr(exc))

    def _forget(self, revoked: Set[TP]) -> None:
        """What to drop of partitions this worker no longer owns."""

    def _fresh(self, newly_assigned: Set[TP]) -> list[TP]:
        """The newly assigned active changelog partitions of this table."""
        changelogs = self.table.changelog_topic.topics
        actives = self.app.assignor.assigned_actives()
        return [tp for tp in newly_assigned if tp.topic in changelogs and tp in actives]

    async def _catch_up(self, fresh: list[TP]) -> None:
        """Read these partitions into the store, and note how far: each store its own way."""
        raise NotImplementedError

    async def _read(
        self, starts: dict[TP, int], apply: Apply, flush: Callable[[], None]
    ) -> dict[TP, int]:
        """Each partition from its start offset to its end; returns the last offset read."""
        parts = {TopicPartition(tp.topic, tp.partition): tp for tp in starts}
        transport = self.app.transport
        bootstrap = driver.server_list(transport.url, transport.default_port)
        options = client_options(self.app.conf.broker_credentials)
        started = time.perf_counter()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            fetch_max_wait_ms=10,  # a fetch in flight holds `stop` for this long (Tansu)
            **options,
        )
        await consumer.start()
        last: dict[TP, int] = {}
        records = 0
        try:
            consumer.assign(list(parts))
            ends = await read_past(bootstrap, await consumer.end_offsets(list(parts)), options)
            for part, tp in parts.items():
                consumer.seek(part, starts[tp])
            left = {part for part in parts if ends[part] > starts[parts[part]]}
            while left:
                batch = await consumer.getmany(*left, timeout_ms=1000)
                for part, messages in batch.items():
                    for message in messages:
                        apply(part.partition, message.key, message.value)
                    if messages:
                        records += len(messages)
                        last[parts[part]] = messages[-1].offset
                flush()
                for part in list(left):
                    if await consumer.position(part) >= ends[part]:
                        left.discard(part)
        finally:
            await consumer.stop()
        log.info(
            "table.read_in_bulk",
            table=self.table.name,
            partitions=sorted(tp.partition for tp in starts),
            records=records,
            elapsed_ms=round((time.perf_counter() - started) * 1000),
        )
        return last


class BulkLoadedStore(_BulkLoaded, memory.Store[Any, Any]):
    """The memory store, reading a new partition's changelog in bulk from its start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_to: dict[TP, int] = {}
        """Per changelog partition: the last offset applied here, by the bulk read or since."""

    def persisted_offset(self, tp: TP) -> int | None:
        return self._read_to.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Faust's own writes: kept only for partitions read in bulk."""
        if tp in self._read_to:
            self._read_to[tp] = max(self._read_to[tp], offset)

    def _forget(self, revoked: Set[TP]) -> None:
        for tp in revoked:
            self._read_to.pop(tp, None)  # read again from the start if it comes back

    def _fresh(self, newly_assigned: Set[TP]) -> list[TP]:
        return [tp for tp in super()._fresh(newly_assigned) if tp not in self._read_to]

    async def _catch_up(self, fresh: list[TP]) -> None:
        last = await self._read(dict.fromkeys(fresh, 0), self._apply, lambda: None)
        for tp in fresh:
            self._read_to[tp] = last.get(tp, -1)

    def _apply(self, partition: int, raw_key: bytes | None, raw_value: bytes | None) -> None:
        """One changelog record, decoded as Faust's recovery decodes it."""
        topic = self.table.changelog_topic
        serializers = self.app.serializers
        key = serializers.loads_key(topic.key_type, raw_key, serializer=topic.key_serializer)
        if raw_value is None:
            self.data.pop(key, None)
            self._key_partition.pop(key, None)
            return
        value = serializers.loads_value(
            topic.value_type, raw_value, serializer=topic.value_serializer
        )
        self.data[key] = value
        self._key_partition[key] = partition


class BulkLoadedRocksDBStore(_BulkLoaded, rocksdb.Store):
    """The RocksDB store, catching up on a new partition's changelog in bulk from its offset.

    RocksDB holds the raw key and value bytes, as Faust's own replay writes
    them, so nothing is decoded.
    """

    _BATCH = 10_000

    async def _catch_up(self, fresh: list[TP]) -> None:
        """From each partition's offset on disk; what was written stays if the read fails."""
        starts = {tp: (self.persisted_offset(tp) or -1) + 1 for tp in fresh}
        batches: dict[int, Any] = {}
        pending = [0]

        def apply(partition: int, raw_key: bytes | None, raw_value: bytes | None) -> None:
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = self._new_write_batch()
            if raw_value is None:
                batch.delete(raw_key)
            else:
                batch.put(raw_key, raw_value)
            pending[0] += 1

        def flush() -> None:
            if pending[0] < self._BATCH:
                return
            self._write(batches)
            pending[0] = 0

        last = await self._read(starts, apply, flush)
        self._write(batches)
        for tp, offset in last.items():
            self.set_persisted_offset(tp, offset)

    def _new_write_batch(self) -> Any:
        if self.use_rocksdict:
            # faust imports whichever binding is installed under these names
            return rocksdb.rocksdict.WriteBatch(raw_mode=True)  # type: ignore[attr-defined]
        return rocksdb.rocksdb.WriteBatch()  # type: ignore[attr-defined]

    def _write(self, batches: dict[int, Any]) -> None:
        for partition, batch in batches.items():
            self._db_for_partition(partition).write(batch)
        batches.clear()
