"""Topic names, and creating them with the partition count the app expects.

Every topic is keyed by customer_id and has the same number of partitions, so a
customer's events, profile, cases and ledger meet on one worker. Topics are
created explicitly: a broker that auto-creates (Tansu does, with 4 partitions)
would otherwise pick a count that breaks the co-partitioning.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition, errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from aiokafka.protocol.transaction import InitProducerIdRequest

from streams.runtime import security
from streams.runtime.settings import BrokerUnreachable, Settings

log = structlog.get_logger(__name__)

Client = TypeVar("Client", AIOKafkaConsumer, AIOKafkaProducer)

ACCOUNT_EVENTS = "account-events"
ACCOUNT_EVENTS_URGENT = "account-events-urgent"
"""Urgent events (fraud, security): intake reads them in a lane of their own, never
behind a backlog on `account-events` (docs/operations.md, "Lanes")."""
CUSTOMER_PROFILES = "customer-profiles"
PREFERENCE_UPDATES = "preference-updates"
NOTIFICATIONS_OUTBOUND = "notifications-outbound"
NOTIFICATIONS_URGENT = "notifications-outbound-urgent"
"""Urgent notification requests, dispatched by an agent of their own (CLARION_LANES)."""
DELIVERY_RECEIPTS = "delivery-receipts"
DECISIONS = "decisions"
AGENT_TASKS = "agent-tasks"
DEAD_LETTERS = "dead-letters"
TIMER_TICKS = "timer-ticks"
NOTIFICATION_RETRIES = "notification-retries"
SMS_CONVERSATIONS = "sms-conversations"
"""Keyed by phone number, not customer: SMS sent marks and replies (streams/dispatch/replies.py)."""
STATE_REPAIRS = "state-repairs"
"""An operator's replacement for a customer's unreadable state (`clarion state repair`)."""
POLICIES = "policies"
"""Published policy sets (`clarion policy publish`): one partition, one order for all
workers; keyed by publication, not by customer, and compacted without loss."""

INPUTS = (ACCOUNT_EVENTS, CUSTOMER_PROFILES, PREFERENCE_UPDATES)
"""The producers' topics merged in time order per partition (streams/kafka/ordering.py)."""
OUTBOUND = (NOTIFICATIONS_OUTBOUND, NOTIFICATIONS_URGENT)
"""Where notification requests are: read both to see every request."""
ALL = (
    *INPUTS,
    ACCOUNT_EVENTS_URGENT,
    *OUTBOUND,
    DELIVERY_RECEIPTS,
    DECISIONS,
    AGENT_TASKS,
    DEAD_LETTERS,
    TIMER_TICKS,
    NOTIFICATION_RETRIES,
    SMS_CONVERSATIONS,
    STATE_REPAIRS,
)
CREATED = (*ALL, POLICIES)
"""Every topic a worker creates: those above with `CLARION_PARTITIONS` each, and `policies`
with one."""
COMPACTED = frozenset({CUSTOMER_PROFILES, POLICIES})
AUDIT = frozenset({DECISIONS, DEAD_LETTERS})
"""What explains a message sent or not, to a customer or a regulator: kept for
`CLARION_LEDGER_RETENTION_DAYS`, forever by default, never the broker's default week."""


class TopicLayoutError(RuntimeError):
    """A topic exists with another partition count than configured, or cannot be created."""


def home_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key`: murmur2, as the Java client,
    aiokafka and Faust compute it (`toPositive(murmur2(key)) % partitions`).

    Every Clarion topic is keyed by customer_id and co-partitioned, so this is
    where a customer's state lives. librdkafka's default (CRC32) puts a key
    elsewhere; intake refuses such a message rather than split the state.
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def unreachable(settings: Settings) -> BrokerUnreachable:
    return BrokerUnreachable(
        f"cannot reach the broker at {settings.kafka_bootstrap} over "
        f"{settings.kafka_security_protocol} (aiokafka's reason is logged above; check "
        "CLARION_KAFKA_BOOTSTRAP and the CLARION_KAFKA_SECURITY_PROTOCOL settings)"
    )


@asynccontextmanager
async def connected(settings: Settings, client: type[Client]) -> AsyncIterator[Client]:
    """A started consumer or producer for the CLI's readers and writers, connected as the
    workers are (`streams.runtime.security`); `BrokerUnreachable` when the broker will not
    have it."""
    made = client(bootstrap_servers=settings.kafka_bootstrap, **security.for_settings(settings))
    try:
        await made.start()
    except KafkaConnectionError:
        await stop_client(made)
        raise unreachable(settings) from None
    try:
        yield made
    finally:
        await stop_client(made)


async def ensure_topics(settings: Settings) -> None:
    """Create every Clarion topic that is missing; check the partition count of the rest."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **security.for_settings(settings)
    )
    try:
        await admin.start()
    except KafkaConnectionError:
        await admin.close()
        raise unreachable(settings) from None
    try:
        wanted = [
            NewTopic(
                settings.topic(name),
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=_configs(name, settings),
            )
            for name in ALL
        ]
        policies = NewTopic(
            settings.topic(POLICIES),
            num_partitions=1,
            replication_factor=settings.replication_factor,
            topic_configs=_configs(POLICIES, settings),
        )
        for topic in (*wanted, policies):
            await _create(admin, topic)
        for info in await _described(admin, [t.name for t in (*wanted, policies)]):
            count = len(info["partitions"])
            if info["topic"] == policies.name and count != 1:
                raise TopicLayoutError(
                    f"topic {info['topic']} has {count} partitions; it needs one, so every "
                    "worker reads the publications in one order"
                )
            if info["topic"] != policies.name and count != settings.partitions:
                raise TopicLayoutError(
                    f"topic {info['topic']} has {count} partitions but CLARION_PARTITIONS is "
                    f"{settings.partitions}; every Clarion topic needs the same count"
                )
        await _check_retention(admin, settings)
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topic: NewTopic) -> None:
    """Create `topic` unless it exists. Apache Kafka answers an error in the response
    rather than raising it: an existing topic is not logged as created, and a refusal
    (a replication factor over the broker count, a policy) stops the worker naming it."""
    try:
        answer = await admin.create_topics([topic])
    except TopicAlreadyExistsError:
        return
    for name, code, *rest in answer.topic_errors:
        error = errors.for_code(code)
        if error is errors.NoError:
            log.info("topic.created", topic=name, partitions=topic.num_partitions)
        elif error is not errors.TopicAlreadyExistsError:
            said = next((r for r in rest if isinstance(r, str) and r), error.__name__)
            raise TopicLayoutError(f"the broker would not create topic {name}: {said}")


async def grants_producer_ids(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Whether the broker hands out producer ids (InitProducerId), as an idempotent producer
    needs: Apache Kafka does; Tansu 0.6 answers UNKNOWN_SERVER_ERROR. Asked, not guessed
    from the version: a producer that cannot get an id sends nothing at all. A cluster
    whose transaction log is still loading (the first ask creates it) says so, and is
    asked again."""
    client = AIOKafkaClient(
        bootstrap_servers=settings.kafka_bootstrap, **security.for_settings(settings)
    )
    try:
        await client.bootstrap()
    except KafkaConnectionError:
        await client.close()
        raise unreachable(settings) from None
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while True:
            answer = await client.send(
                client.get_random_node(),
                InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000),
            )
            error = errors.for_code(answer.error_code)
            if error is errors.NoError:
                return True
            if not error.retriable or asyncio.get_running_loop().time() >= deadline:
                log.info("producer.ids_not_granted", error=error.__name__)
                return False
            await asyncio.sleep(0.5)
    except KafkaError as exc:
        log.info("producer.ids_not_granted", error=type(exc).__name__)
        return False
    finally:
        await client.close()


async def _described(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    """The topics as the broker describes them, once each has its partitions: Apache Kafka
    answers a topic created a moment ago with none until its metadata has spread."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described: list[dict[str, Any]] = list(await admin.describe_topics(names))
        settled = all(info["partitions"] and not info["error_code"] for info in described)
        if settled or asyncio.get_running_loop().time() >= deadline:
            return described
        await asyncio.sleep(0.2)


def _configs(name: str, settings: Settings) -> dict[str, str]:
    if name in COMPACTED:
        return {"cleanup.policy": "compact"}
    if name in AUDIT:
        return {"retention.ms": str(_retention_ms(settings))}
    return {}


def _retention_ms(settings: Settings) -> int:
    days = settings.ledger_retention_days
    return -1 if days is None else int(days * 86_400_000)


async def _check_retention(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    """Warn when an audit topic that already existed keeps less than the setting asks.

    It is not changed: how long records are kept is the operator's decision, and
    an archive may hold them. The warning says what the topic has.
    """
    wanted = _retention_ms(settings)
    names = [settings.topic(name) for name in sorted(AUDIT)]
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    for response in await admin.describe_configs(resources):
        for _code, _message, _type, name, entries in response.resources:
            kept = next((int(e[1]) for e in entries if e[0] == "retention.ms"), None)
            if kept is None or kept < 0 or (wanted >= 0 and kept >= wanted):
                continue
            log.warning(
                "topic.retention_shorter",
                topic=name,
                retention_days=kept / 86_400_000,
                wanted_days="forever" if wanted < 0 else wanted / 86_400_000,
                fix="raise the topic's retention.ms, or set CLARION_LEDGER_RETENTION_DAYS "
                "to what an archive downstream keeps",
            )


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, whether the consumer follows it or not.

    aiokafka's `partitions_for_topic` knows only the topics its metadata tracks:
    Tansu's metadata answer names every topic, Apache Kafka's only those asked
    for, so on Kafka it is None for a topic this consumer never subscribed to.
    """
    known = consumer.partitions_for_topic(topic)
    if not known:
        cluster = await consumer._client.fetch_all_metadata()  # no public call asks for all
        known = cluster.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(known or ())]


async def stop_client(client: Any) -> None:
    """`client.stop()`, without aiokafka issue 647: a consumer stopped right after `start()`
    can raise CancelledError from its coordinator's task (seen on Apache Kafka). A
    cancellation of the caller's own task still goes on up."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("client.stop_cancelled")


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The offset after the last message of each partition (read, not only asked: `read_past`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [tp for t in topics for tp in await partitions_of(consumer, t)]
        if not parts:
            return {}
        reported = dict(await consumer.end_offsets(parts))
    finally:
        await stop_client(consumer)
    return await read_past(bootstrap, reported)


async def read_past(
    bootstrap: str | list[str],
    reported: Mapping[TopicPartition, int],
    options: Mapping[str, Any] | None = None,
) -> dict[TopicPartition, int]:
    """End offsets as the records say, given what ListOffsets answered.

    Tansu 0.6 answers ListOffsets with the last record batch's base offset + 1,
    which is short of the end whenever that batch holds more than one record. So
    each partition is read from the reported offset on. On Kafka this finds
    nothing more and changes nothing. `options`: how to connect (`streams.runtime.security`).
    """
    ends = dict(reported)
    parts = [tp for tp, end in ends.items() if end > 0]
    if not parts:
        return ends
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **(options or {})
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, ends[tp] - 1)
        while batch := await consumer.getmany(*parts, timeout_ms=100):
            for tp, messages in batch.items():
                if messages:
                    ends[tp] = max(ends[tp], messages[-1].offset + 1)
        return ends
    finally:
        await stop_client(consumer)


async def committed(
    bootstrap: str, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The consumer group's committed offset per partition (0 when nothing is committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {tp: (await consumer.committed(tp)) or 0 for tp in partitions}
    finally:
        await stop_client(consumer)


async def wait_until_consumed(
    bootstrap: str,
    group: str,
    topics: Iterable[str],
    *,
    timeout: float,
    poll: float = 0.25,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Return once `group` has committed everything now in `topics`.

    TimeoutError if it does not within `timeout`; RuntimeError as soon as
    `alive()` says the consumer is gone, rather than waiting out the timeout.
    """
    topics = list(topics)
    deadline = asyncio.get_running_loop().time() + timeout
    ends = await end_offsets(bootstrap, topics)
    while True:
        if not alive():
            raise RuntimeError(f"the consumer of group {group} stopped before it was done")
        # The commits first, then the ends: a worker commits an input only once what it
        # produced for it was delivered (kafka/guard.py), so ends read after the commits
        # hold everything those inputs caused, and none of it can slip past this check.
        # (The previous round's ends name the partitions to ask about.)
        done = await committed(bootstrap, group, ends)
        ends = await end_offsets(bootstrap, topics)
        if all(done.get(tp, 0) >= end for tp, end in ends.items()):
            return
        if asyncio.get_running_loop().time() > deadline:
            behind = {
                f"{tp.topic}[{tp.partition}]": end - done.get(tp, 0)
                for tp, end in ends.items()
                if done.get(tp, 0) < end
            }
            raise TimeoutError(f"group {group} still has unprocessed messages: {behind}")
        await asyncio.sleep(poll)


async def read_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every message in `topic` up to its current end, as (key, value), partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partitions_of(consumer, topic)
        found = await read_to_end(consumer, bootstrap, parts)
        return [message for tp in parts for message in found[tp]]
    finally:
        await stop_client(consumer)


async def read_at(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, timeout_s: float = 10.0
) -> tuple[bytes | None, bytes] | None:
    """The (key, value) at one offset, with a started consumer this assigns; None when the
    partition no longer holds it (retention, compaction) or it cannot be read in time."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
        for message in batch.get(tp, []):
            if message.offset == offset and message.value is not None:
                return message.key, message.value
            return None  # past it: the offset is gone
    return None


async def read_to_end(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    parts: list[TopicPartition],
    options: Mapping[str, Any] | None = None,
) -> dict[TopicPartition, list[tuple[bytes | None, bytes]]]:
    """Each partition from its start to its end now, as (key, value), with a started
    consumer that this assigns; `options` as for `read_past`."""
    found: dict[TopicPartition, list[tuple[bytes | None, bytes]]] = {tp: [] for tp in parts}
    if not parts:
        return found
    ends = await read_past(bootstrap, await consumer.end_offsets(parts), options)
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    remaining = {tp for tp in parts if ends[tp] > 0}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500)
        for tp, messages in batch.items():
            found[tp] += [(m.key, m.value) for m in messages if m.value is not None]
            if messages and messages[-1].offset + 1 >= ends[tp]:
                remaining.discard(tp)
    return found
