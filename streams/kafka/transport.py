"""Faust's Kafka transport, with a settable fetch wait and eight fixes to its consumer.

Also two shortcuts past Faust's per-message cost, which keep what its own path
promises: `ClarionTable.write` (a table write's changelog record sent straight
to the producer) and the consumer's delivery of a message in its own task
(`streams/kafka/handoff.py`). docs/operations.md, "Two shortcuts", has both.

**Fetch wait.** Faust 0.15 fixes the consumer's `fetch_max_wait_ms` at 1500.
Kafka answers a fetch as soon as data arrives, so that wait costs nothing there.
Tansu, the embedded broker, holds each fetch for the whole wait. On Tansu every
hop between agents was 0.4 to 1.5 s late: p50 376 ms at 1500 ms against 4 ms at
10 ms, in a raw aiokafka check. The demo and the tests set it low. Production
leaves it unset and keeps Faust's value.

**Restarts lost messages** (the crash test's "stall", put down to Tansu until
stop 11). Faults 1, 2 and 4 are Faust 0.15.3's and aiokafka's and would hit
Kafka too; 3 is Tansu's:

1. After recovering its tables, Faust resumes the stream partitions, then reads
   the committed offsets one partition at a time (`perform_seek`), then resumes
   the flow, which *clears every stream's queue*. Messages fetched in between
   were cleared unprocessed, though the consumer had read past them; later acks
   then left a hole that Faust's commit logic never crosses. Here the stream
   partitions' resume is held until the flow resumes, so nothing of theirs is
   fetched before the seek or cleared after it.
2. Faust hands the fetcher thread its *live* set of active partitions. When the
   main thread empties it during a fetch (recovery pauses the changelogs),
   aiokafka reads the empty set as "all partitions", returns records of paused
   stream partitions, and Faust drops them after their positions moved on. Here
   the fetcher gets a copy: Faust only fetches when the set is not empty.
3. (Tansu only.) Recovery reads each changelog up to its end as ListOffsets
   reports it, and Tansu reports the last batch's base offset + 1. A table then
   came back without its last writes (the dispatcher's "done" marks among them)
   and a restarted worker sent those messages again. The highwaters here are
   read past the reported end (`streams.kafka.topics.read_past`).

4. (The take-over test's flake, stop 12.) Faust drops records it has fetched
   when a rebalance begins mid-batch (its generation changes, or the flow
   stops), after aiokafka's positions have moved past them. The seek back to
   the committed offsets is what brings them back, but aiokafka's
   `seek_to_committed` skips a partition whose committed offset is None or 0.
   A partition that had never committed lost its first messages for good: in
   the failed take-over runs, the clock message on each of the surviving
   worker's own `timer-ticks` partitions, so their timers never fired. Here
   such stream partitions go back to the beginning, as `earliest` says
   (`rewind_uncommitted`).

Before: the crash test failed 4 runs in 4 with the outbox short by hundreds of
messages. After: see docs/operations.md, "Restarts".

**A partition never read** (Apache Kafka, once the producer was idempotent):

6. The stream partitions' resume of fault 1 was held whenever a rebalance was
   running, also when Faust had already resumed the flow: nothing released
   them, and a partition was never read (the take-over test on Kafka failed 6
   runs in 11 with 82 to 220 inputs left; the producer's slower start made
   the overlap likely). A resume is now held only while the flow is stopped.
   In the same runs, Faust's livelock check read the position of a partition
   assigned but not yet sought, and aiokafka's assertion crashed the worker;
   such a partition is skipped (`verify_event_path`). Since: 16 runs in 16.

**A worker that had nothing lost what it was given** (the three-node
cluster's take-over test, stop 35):

7. Faust stops the flow and suspends its flow control at a rebalance only
   when the consumer has an assignment. A worker that joined and got no
   partition (the third of three on four partitions) went into its next
   rebalance with both running, so its new partitions were fetched and handed
   to the agents all through recovery (seen in the debugging timer's log: the
   flow active, no partition, then records handed on before the seek). Now
   every rebalance stops the flow and suspends flow control first, with or
   without an assignment (`ClarionApp._on_partitions_revoked`). This alone
   did not end the losses; fault 8 did.

8. At the end of a rebalance, recovery resumes the stream partitions, seeks
   them to their committed offsets, and only then resumes flow control, which
   *clears every agent's queue*; and it resumes the flow and flow control
   earlier to read the changelogs. Stream records fetched in between were
   handed to the agents' queues and cleared there, unacknowledged, while the
   consumer read on past them. In a failed take-over run, 109 requests handed
   on just after the seek never reached the dispatcher, and the 61 after them
   did; the commit then stopped for good, or Faust took the jump for a gap and
   committed across it (18 to 44 requests a run never sent). Now no stream
   record is handed on while a rebalance runs (from the revocation to the end
   of recovery): its partition is sought back to it, and it is read again once
   the queues are cleared for the last time. Table changelogs go on as
   recovery needs them. The take-over test failed 12 runs in about 25
   before this (some with fault 7 or other tries in); 11 in 11 passed after.

**A fetch stall after each assignment** (latency, stop 16):

5. Faust "pauses" a partition only in its own books: it
   stops taking its records, but aiokafka goes on fetching it. After recovery
   Faust pauses the tables' changelog partitions, and the worker's own table
   writes land there. aiokafka fetched them, nobody took them, and it sends no
   new fetch to a broker while any partition holds untaken records, for up to
   its `prefetch_backoff` (100 ms). So the first write to each changelog
   partition after every assignment stopped all fetching for about 100 ms:
   p99 61 ms at 200 events/s, most of it the first 0.3 s of the run. Here a
   pause or resume of a changelog partition is also made in aiokafka, in the
   consumer's thread. Stream partitions are left as Faust has them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust import stores
from faust.exceptions import ProducerSendError
from faust.stores import memory, rocksdb
from faust.transport.conductor import Conductor
from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, TransportT
from mode.services import WaitResults

from streams.kafka.bulk_load import BulkLoadedRocksDBStore, BulkLoadedStore
from streams.kafka.guard import Guard
from streams.kafka.handoff import CutShort, FlowSuspended, FlowWait
from streams.kafka.ordering import CrossTopicOrder, OrderedScheduling
from streams.kafka.room import Room
from streams.kafka.topics import read_past
from streams.runtime.security import client_options

log = structlog.get_logger()


class ClarionApp(faust.App):
    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int | None = None,
        changelog_prefix: str | None = None,
        input_order: CrossTopicOrder | None = None,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> None:
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self.idempotent = idempotent
        """The producer asks the broker for a producer id, so a retried send is written once."""
        self.input_order = input_order
        """Intake's input topics merged in time order per partition (kafka/ordering.py)."""
        self.changelog_prefix = changelog_prefix
        self.guard = Guard()
        """Halts the worker on an agent's crash or a refused write (kafka/guard.py)."""
        if input_order is not None:
            kwargs.setdefault("ConsumerScheduler", OrderedScheduling)
        super().__init__(*args, Table=ClarionTable, **kwargs)

    def _new_transport(self) -> TransportT:
        transport = _transport(self._fetch_max_wait_ms)
        return transport(self.conf.broker_consumer, self)

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Stop the flow at every rebalance, also one that finds this worker with nothing
        assigned (fault 7 in the module doc)."""
        consumer = self.consumer
        if not self.should_stop and not consumer.assignment():
            consumer.stop_flow()
            self.flow_control.suspend()
            self.flow_control.clear()
        await super()._on_partitions_revoked(revoked)


class ClarionTable(faust.Table[Any, Any]):
    """A table whose changelog is named after the deployment, whatever the process's role.

    Faust names it after the app id, which is the consumer group. The dispatch
    role is a group of its own, and its tables must keep their changelogs when a
    deployment moves from one `all` process to separate roles.
    """

    def _changelog_topic_name(self) -> str:
        prefix = getattr(self.app, "changelog_prefix", None) or self.app.conf.id
        return f"{prefix}-{self.name}-changelog"

    async def write(self, key: Any, value: Any) -> None:
        """`table[key] = value`, with the changelog record sent straight to the producer.

        Faust's own write goes through `Topic.send_soon` and its producer
        buffer: a future message, a pending message and a hop through the
        buffer's task per write. In an intake profile at 1,000 events/s that
        path was a fifth of the worker's time, four times what the same record
        costs sent directly (docs/performance.md). This sends the same record
        (the same key and value bytes, to the partition of the event being
        handled) and keeps the same bookkeeping: the store's persisted offset
        follows the offsets the broker acknowledges. The consumer's commit
        flushes the producer first, as it does for Faust's own writes.

        Write a table one way only: Faust's buffered write can reach the
        changelog after a later direct one, and the older value would win.
        """
        partition = self.partition_for_key(key)  # the event's, as Faust's own write sends it
        topic = self.changelog_topic
        raw_key, _ = topic.prepare_key(key, self.key_serializer)
        raw_value, _ = topic.prepare_value(value, self.value_serializer)
        name = topic.get_topic_name()
        sent = await self.app.producer.send(name, raw_key, raw_value, partition, None, None)
        self.data[key] = value  # after the send is queued: if it raises, neither is written
        assert isinstance(sent, asyncio.Future)
        sent.add_done_callback(self._written)

    def _written(self, done: asyncio.Future[Any]) -> None:
        """Faust's `_on_changelog_sent`: RocksDB notes the offset it holds data up to."""
        if done.cancelled() or done.exception() is not None:
            error = "cancelled" if done.cancelled() else repr(done.exception())
            log.error("table.changelog_not_written", table=self.name, error=error)
            return
        self.data.set_persisted_offset(done.result().topic_partition, done.result().offset)

    def _new_store_by_url(self, url: Any) -> Any:
        """Faust's stores, reading a new partition's changelog in bulk (kafka/bulk_load.py)."""
        store = _BULK.get(stores.by_url(url))
        if store is None:
            return super()._new_store_by_url(url)
        return store(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


def table(app: faust.App, name: str, **options: Any) -> ClarionTable:
    """`app.Table(name, ...)`, typed as what it is: a `ClarionTable` (ClarionApp makes it one)."""
    made = app.Table(name, **options)
    assert isinstance(made, ClarionTable)
    return made


_BULK: dict[type, type] = {memory.Store: BulkLoadedStore, rocksdb.Store: BulkLoadedRocksDBStore}


class Consumer(driver.Consumer):
    _held: set[TP] | None = None
    """Stream partitions whose resume waits until the flow resumes (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.suspend_flow = FlowSuspended()
        self._delivery = CutShort()
        self.room = Room(self._queues)
        """Fetched records waiting for room in their agent's queue (kafka/room.py)."""

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """The consumer loop's delivery of one message, in its own task (kafka/handoff.py)."""
        if timeout is not None or len(coros) != 2 or not isinstance(coros[1], FlowWait):
            return await super().wait_first(*coros, timeout=timeout)
        callback = coros[0]
        if self.suspend_flow.is_set() or self.should_stop or self._crashed.is_set():
            callback.close()
            return WaitResults([], [], True)
        finished, result = await self._delivery.run(callback)
        return WaitResults([callback], [result], False) if finished else WaitResults([], [], True)

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        """Faust's commit, but only of offsets whose inputs' outputs were all delivered.

        The offsets are taken first, then every record produced so far must be
        delivered (`Guard.settled`); a halted worker commits nothing (kafka/guard.py).
        """
        offsets = self._filter_committable_offsets(tps)
        if not offsets or not await cast(ClarionApp, self.app).guard.settled():
            return False
        try:
            await self._handle_attached(offsets)
        except ProducerSendError as exc:
            await self.crash(exc)
            return False
        committed: bool = await self._commit_offsets(
            offsets, start_new_transaction=start_new_transaction
        )
        return committed

    def stop_flow(self) -> None:
        super().stop_flow()
        if self._delivery.cut():
            log.info("consumer.delivery_cut_short")  # Faust fetches the message again

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tps = ensure_TPset(tps)
        super().pause_partitions(tps)
        self._pause_changelogs_in_client(tps, paused=True)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        wanted = ensure_TPset(tps)
        if self.app.rebalancing and not self.flow_active:
            streams = {tp for tp in wanted if not self._is_changelog_tp(tp)}
            if streams:
                self._held = (self._held or set()) | streams
                wanted -= streams
        super().resume_partitions(wanted)
        self._pause_changelogs_in_client(wanted, paused=False)

    def _pause_changelogs_in_client(self, tps: set[TP], *, paused: bool) -> None:
        """Pause (or resume) changelog partitions in aiokafka too: fault 5 in the module doc."""
        changelogs = [
            TopicPartition(tp.topic, tp.partition) for tp in tps if self._is_changelog_tp(tp)
        ]
        client = self._thread._consumer
        if changelogs and client is not None:
            self._thread.thread_loop.call_soon_threadsafe(
                set_paused_in_client, client, changelogs, paused
            )

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """The fetcher thread gets a copy of the active set (fault 2 in the module doc);
        only what its agents' queues have room for is handed on (kafka/room.py); intake's
        inputs come back in time order across topics (kafka/ordering.py)."""
        wanted = None if active_partitions is None else set(active_partitions)
        generation = self.app.consumer_generation_id
        fetched = await super()._getmany(wanted, timeout)
        if self.app.rebalancing:
            fetched = self._too_early(fetched)
        if self.app.consumer_generation_id != generation:
            self._forget_held()  # a rebalance came during the fetch: Faust sorts this batch out
            return fetched
        order = cast(ClarionApp, self.app).input_order
        fetched = self.room.take(fetched)
        if order is None:
            return fetched
        return order.take(
            fetched, time.monotonic(), ensure_TPset(self.assignment()), self._caught_up
        )

    def _too_early(self, fetched: Mapping[TP, list[Any]]) -> dict[TP, list[Any]]:
        """Stream records fetched while a rebalance runs go back (fault 8 in the module doc):
        each such partition is sought back to its first one, to be read again once the
        agents' queues are cleared for the last time."""
        kept: dict[TP, list[Any]] = {}
        assigned = ensure_TPset(self.assignment())
        for tp, records in fetched.items():
            if not records or self._is_changelog_tp(tp):
                kept[tp] = records
            elif tp in assigned:
                self._thread.seek(tp, records[0].offset)
        return kept

    def _queues(self, tp: TP) -> list[Any]:
        """The queues of the agents that read `tp` (none for a table's changelog, which
        recovery reads on its own path)."""
        if self._is_changelog_tp(tp):
            return []
        conductor = cast(Conductor, self.app.topics)
        return [channel.queue for channel in conductor._topic_name_index.get(tp.topic, ())]

    def _caught_up(self, tp: TP) -> bool:
        """Whether this consumer has fetched all the broker held of `tp` at its last fetch."""
        state = partition_state(self._thread._consumer, tp)
        if state is None or state.highwater is None or not state.has_valid_position:
            return False
        return bool(state.position >= state.highwater)

    def lag(self) -> dict[tuple[str, ...], float]:
        """Per stream partition: what the broker held at the last fetch past the commit.

        The commit is this worker's last one; before its first, the position it
        resumed from. Changelog partitions are left out: a table's standby
        readers are not behind on work.
        """
        client = self._thread._consumer
        found: dict[tuple[str, ...], float] = {}
        for tp in ensure_TPset(self.assignment()):
            state = partition_state(client, tp)
            if self._is_changelog_tp(tp) or state is None or state.highwater is None:
                continue
            done = self._committed_offset.get(tp)
            if done is None:
                done = state.position if state.has_valid_position else None
            if done is not None:
                found[(tp.topic, str(tp.partition))] = float(max(0, state.highwater - done))
        return found

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._forget_held()  # read again from the commits once assigned
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._forget_held()
        await super().on_partitions_assigned(assigned, generation_id)

    def _forget_held(self) -> None:
        """Drop what waits for room and for its turn in time order: after a rebalance the
        consumer reads again from the commits."""
        self.room.forget()
        order = cast(ClarionApp, self.app).input_order
        if order is not None:
            order.forget()

    def resume_flow(self) -> None:
        super().resume_flow()
        held, self._held = self._held, None
        if held:
            super().resume_partitions(held & ensure_TPset(self.assignment()))


def partition_state(client: AIOKafkaConsumer | None, tp: TP) -> Any:
    """aiokafka's own state of an assigned partition (position, highwater); None if it has
    none: no client yet, no assignment, or a partition not assigned."""
    subscription = None if client is None else client._subscription.subscription
    if subscription is None or subscription.assignment is None:
        return None
    return subscription.assignment.state_value(TopicPartition(tp.topic, tp.partition))


def set_paused_in_client(client: AIOKafkaConsumer, tps: list[TopicPartition], paused: bool) -> None:
    """In the consumer thread: each partition still assigned paused or resumed."""
    assigned = client.assignment()
    changed = [tp for tp in tps if tp in assigned]
    (client.pause if paused else client.resume)(*changed)
    if changed:
        log.info(
            "consumer.changelogs_paused" if paused else "consumer.changelogs_resumed",
            partitions=len(changed),
        )


async def rewind_uncommitted(
    consumer: AIOKafkaConsumer, skip: Callable[[TopicPartition], bool]
) -> Mapping[TopicPartition, int | None]:
    """Seek every assigned partition to its committed offset, and to the beginning when none.

    aiokafka's `seek_to_committed` leaves a partition alone when its committed
    offset is None or 0, wherever its position has got to (fault 4). `skip`
    names the partitions never to rewind: table changelogs, which the group
    does not commit and recovery positions itself.
    """
    committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
    unread = [tp for tp, offset in committed.items() if not offset and not skip(tp)]
    if unread:
        await consumer.seek_to_beginning(*unread)
    return committed


class IdempotentProducer(driver.Producer):
    """Faust's producer, idempotent when the app says the broker grants producer ids.

    Faust turns idempotence on only in its exactly-once mode. Without it, a send
    whose answer was lost is sent again and written twice: a decision row twice
    in the ledger, a request twice on `notifications-outbound` (the dispatcher's
    claim catches that one). `clarion worker` asks the broker first
    (`topics.grants_producer_ids`): Tansu refuses InitProducerId, and a producer
    that cannot get an id cannot send at all.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        if cast(ClarionApp, self.app).idempotent:
            return {"acks": "all", "enable_idempotence": True}
        return super()._settings_extra()


def _transport(wait_ms: int | None) -> type[driver.Transport]:
    class ConsumerThread(driver.AIOKafkaConsumerThread):
        async def seek_to_committed(self) -> Mapping[TP, int]:
            """Stream partitions never committed go back to the start (fault 4, module doc)."""
            if self.app.conf.consumer_auto_offset_reset != "earliest":
                return await super().seek_to_committed()
            consumer = self._ensure_consumer()
            changelog = self.consumer._is_changelog_tp
            offsets: Mapping[TP, int] = await self.call_thread(
                rewind_uncommitted, consumer, changelog
            )
            return offsets

        async def _highwaters(self, partitions: list[TP]) -> Any:
            """Recovery reads a changelog up to here: the real end (fault 3 in the module doc)."""
            reported = await super()._highwaters(partitions)
            if self.consumer.in_transaction:
                return reported
            port = self.transport.default_port  # type: ignore[attr-defined]  # TransportT omits it
            bootstrap = driver.server_list(self.transport.url, port)
            options = client_options(self.app.conf.broker_credentials)
            return await read_past(bootstrap, reported, options)

        def verify_event_path(self, now: float, tp: TP) -> None:
            """Faust's livelock check, skipped for a partition not yet given a position.

            Faust reads aiokafka's `position`, which asserts it has one; a partition
            assigned a moment ago and not yet sought has none, and the check crashed
            the worker at start-up (seen on Apache Kafka, 2 runs in 14 of the
            take-over test). There is nothing to check until it has one.
            """
            state = partition_state(self._consumer, tp)
            if state is not None and not state.has_valid_position:
                return None
            return super().verify_event_path(now, tp)

        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            if wait_ms is not None:
                consumer._fetch_max_wait_ms = wait_ms  # read when it starts, which is later
            return consumer

    class WaitingConsumer(Consumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = WaitingConsumer
        Producer = IdempotentProducer

    return Transport
