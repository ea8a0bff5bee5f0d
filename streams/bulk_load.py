"""A memory store that reads a newly assigned changelog partition in bulk, before Faust's recovery.

Faust replays a changelog a record at a time through its consumer, its
conductor and a task per message: about 3,000 records a second here, 30 s for
100,000 customers and 400 s for a million (docs/performance.md). Its main
thread is 87% busy doing it (py-spy). Read directly with aiokafka, the same
records come at tens of thousands a second.

So when a worker is given an active partition its memory holds nothing of,
this store reads that partition of the changelog from the start to its end,
straight into the table, and reports the last offset it read as the
partition's persisted offset. Faust's recovery then starts there and replays
only what was written since. The memory store reports no persisted offset of
its own, which is why Faust replays everything for it.

Standby partitions are left to Faust, as before. A partition revoked is
forgotten, so if it comes back it is read again from the start.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Set
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import memory
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from streams.topics import read_past

log = structlog.get_logger()


class BulkLoadedStore(memory.Store):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_to: dict[TP, int] = {}
        """Per changelog partition: the last offset applied here, by the bulk read or since."""

    def persisted_offset(self, tp: TP) -> int | None:
        return self._read_to.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Faust's own writes and replays: kept only for partitions read in bulk."""
        if tp in self._read_to:
            self._read_to[tp] = max(self._read_to[tp], offset)

    async def on_rebalance(
        self,
        assigned: Set[TP],
        revoked: Set[TP],
        newly_assigned: Set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        changelogs = self.table.changelog_topic.topics
        for tp in revoked:
            self._read_to.pop(tp, None)
        actives = self.app.assignor.assigned_actives()
        fresh = [
            tp
            for tp in newly_assigned
            if tp.topic in changelogs and tp in actives and tp not in self._read_to
        ]
        if fresh:
            try:
                await self._read(fresh)
            except Exception as exc:  # Faust's own replay still works
                for tp in fresh:
                    self._read_to.pop(tp, None)  # so Faust replays it all, over what was read
                log.warning("table.read_in_bulk_failed", table=self.table.name, error=repr(exc))

    async def _read(self, tps: Iterable[TP]) -> None:
        parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        transport = self.app.transport
        bootstrap = driver.server_list(transport.url, transport.default_port)
        started = time.perf_counter()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            fetch_max_wait_ms=10,  # a fetch in flight holds `stop` for this long (Tansu)
        )
        await consumer.start()
        records = 0
        try:
            consumer.assign(parts)
            ends = await read_past(bootstrap, await consumer.end_offsets(parts))
            await consumer.seek_to_beginning(*parts)
            left = {tp for tp in parts if ends[tp] > 0}
            while left:
                batch = await consumer.getmany(*left, timeout_ms=1000)
                for tp, messages in batch.items():
                    for message in messages:
                        self._apply(tp.partition, message.key, message.value)
                    records += len(messages)
                    if messages:
                        self._read_to[TP(tp.topic, tp.partition)] = messages[-1].offset
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
            for tp in parts:
                self._read_to.setdefault(TP(tp.topic, tp.partition), -1)
        finally:
            await consumer.stop()
        log.info(
            "table.read_in_bulk",
            table=self.table.name,
            partitions=sorted(tp.partition for tp in parts),
            records=records,
            elapsed_ms=round((time.perf_counter() - started) * 1000),
        )

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
