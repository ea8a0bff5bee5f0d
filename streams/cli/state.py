"""`clarion state show|repair CUSTOMER`: an operator's view and repair of a stored state.

A customer whose stored state no longer reads (an older version or a bug wrote
it) has every input refused as `state_unreadable` until it is repaired. `show`
reads the state from the customers table's changelog, says whether it reads and
why not, and what a repair would leave out. `repair` sends the repaired state
to the worker that owns the customer (`state-repairs`, streams/intake/repairs.py
says why there) and waits for its answer: a `repaired` row on the ledger, or a
dead letter saying why not. Then the refused inputs can be replayed.

The proposal is `policies.repair.salvage`: free-form data may be left out, a
case that does not read is closed, and nothing a guard reads is ever dropped.
When that is not enough, the operator writes the state by hand (`--from`),
starting from `show --raw`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from policies.repair import Salvage, reads_back, salvage
from policies.state import CustomerState
from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from schemas.intake import field_errors
from schemas.repairs import StateRepair
from streams.intake import stored
from streams.kafka import topics
from streams.runtime import security
from streams.runtime.settings import Settings


class RepairError(Exception):
    """Why a repair cannot be made or was refused, in words for the operator."""


@dataclass(frozen=True, slots=True)
class Stored:
    """A customer's latest value on the customers changelog."""

    customer: str
    partition: int
    value: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value).hexdigest()

    def problem(self) -> str | None:
        """Why the state does not read; None when it does."""
        return stored.unreadable(self.value)


async def read_stored(settings: Settings, customer: str) -> Stored | None:
    """The customer's value as the worker stored it last; None when none is stored."""
    partition = topics.home_partition(customer.encode(), settings.partitions)
    tp = TopicPartition(stored.changelog_topic(settings.app_id), partition)
    keys = stored.changelog_keys(customer)
    async with topics.connected(settings, AIOKafkaConsumer) as consumer:
        if tp.topic not in await consumer.topics():
            return None
        options = security.for_settings(settings)
        found = await topics.read_to_end(consumer, settings.kafka_bootstrap, [tp], options)
    values = [value for key, value in found[tp] if key in keys]
    return Stored(customer, partition, values[-1]) if values else None


def proposal(found: Stored, by_hand: Path | None) -> Salvage:
    """The state a repair would store: the operator's file, or what `salvage` keeps."""
    if by_hand is None:
        try:
            return salvage(found.customer, stored.decoded(found.value))
        except ValueError as exc:
            return Salvage(None, refused=(f"{exc}: nothing of it can be read",))
    try:
        given: Any = json.loads(by_hand.read_text())
    except (OSError, ValueError) as exc:
        return Salvage(None, refused=(f"{by_hand}: {exc}",))
    if isinstance(given, dict) and "state" in given and "customer_id" not in given:
        given = given["state"]  # the whole stored value, as `show --raw` prints it
    try:
        state = CustomerState.model_validate(given)
    except ValidationError as exc:
        return Salvage(None, refused=(f"{by_hand}: {field_errors(exc)}",))
    if state.customer_id != found.customer:
        return Salvage(None, refused=(f"{by_hand}: the state of {state.customer_id!r}",))
    problem = reads_back(state)
    return Salvage(None, refused=(problem,)) if problem else Salvage(state)


def show(found: Stored | None, customer: str, raw: bool, out: TextIO) -> int:
    """What is stored for the customer, whether it reads, and what a repair would do."""
    if found is None:
        out.write(f"{customer}: no state stored\n")
        return 1
    if raw:
        try:
            out.write(json.dumps(json.loads(found.value), indent=2, ensure_ascii=False) + "\n")
        except (ValueError, RecursionError):
            out.write(found.value.decode(errors="replace") + "\n")
        return 0
    out.write(
        f"{customer}: {len(found.value):,} bytes stored on partition {found.partition}, "
        f"sha256 {found.sha256[:16]}\n"
    )
    problem = found.problem()
    if problem is None:
        state = stored.state(found.value)
        assert state is not None
        due = state.due.isoformat() if state.due else "none"
        out.write(f"reads: yes; {len(state.cases)} open case(s), next step due {due}\n")
        return 0
    out.write(f"reads: no: {problem}\n")
    _plan(proposal(found, None), customer, out)
    return 0


def _plan(found: Salvage, customer: str, out: TextIO) -> None:
    if found.state is None:
        out.write("a repair cannot be proposed, because:\n")
        out.writelines(f"  - {why}\n" for why in found.refused)
        out.write(
            f"write the state by hand (start from `clarion state show {customer} --raw`) "
            f"and give it to `clarion state repair {customer} --from FILE`\n"
        )
        return
    if not found.dropped:
        out.write("a repair keeps all of it\n")
        return
    out.write("a repair keeps the rest and leaves out:\n")
    out.writelines(f"  - {what}\n" for what in found.dropped)


async def repair(
    settings: Settings,
    found: Stored,
    plan: Salvage,
    operator: str,
    reason: str,
    wait_s: float,
) -> Decision:
    """Send the repair to the customer's worker; its ledger row once applied.

    RepairError when the worker refuses it (with its reason), or none answers in time."""
    assert plan.state is not None
    request = StateRepair(
        repair_id=f"repair-{uuid.uuid4()}",
        customer_id=found.customer,
        requested_at=datetime.now(UTC),
        operator=operator,
        reason=reason,
        replaces_sha256=found.sha256,
        state=plan.state.model_dump(mode="json"),
        dropped=list(plan.dropped),
    )
    answers = [
        TopicPartition(settings.topic(name), found.partition)
        for name in (topics.DECISIONS, topics.DEAD_LETTERS)
    ]
    async with topics.connected(settings, AIOKafkaConsumer) as consumer:
        ends = await topics.read_past(
            settings.kafka_bootstrap,
            await consumer.end_offsets(answers),
            security.for_settings(settings),
        )
        async with topics.connected(settings, AIOKafkaProducer) as producer:
            await producer.send_and_wait(
                settings.topic(topics.STATE_REPAIRS),
                request.model_dump_json().encode(),
                key=found.customer.encode(),
                partition=found.partition,
            )
        answer = await _answer(consumer, answers, ends, request.repair_id, wait_s)
    if answer is None:
        raise RepairError(
            f"no worker answered within {wait_s:g} s; the repair waits on "
            f"{settings.topic(topics.STATE_REPAIRS)} and is applied when the customer's "
            "worker runs (`clarion ledger` then shows its `repaired` row)"
        )
    return answer


async def _answer(
    consumer: AIOKafkaConsumer,
    answers: list[TopicPartition],
    ends: dict[TopicPartition, int],
    repair_id: str,
    wait_s: float,
) -> Decision | None:
    """The worker's answer to one repair: its ledger row, RepairError with its refusal, or
    None when none comes in time."""
    consumer.assign(answers)
    for tp in answers:
        consumer.seek(tp, ends[tp])
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(*answers, timeout_ms=500)
        for tp, messages in batch.items():
            for message in messages:
                if message.value is None:
                    continue
                if tp.topic == answers[0].topic:
                    row = Decision.model_validate_json(message.value)
                    if row.action == "repaired" and row.extra.get("repair_id") == repair_id:
                        return row
                    continue
                letter = DeadLetter.model_validate_json(message.value)
                if letter.code == "invalid_repair" and repair_id.encode() in (
                    letter.original_value()
                ):
                    raise RepairError(f"the worker refused the repair: {letter.reason}")
    return None
