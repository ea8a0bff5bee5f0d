"""One intake batch's view of the customer tables: read once, written once.

A batch may hold several inputs for one customer (and timers falling due for
others). Each customer's state is read from the table the first time the batch
needs it, changed in memory by every input after that, and written back once
when the batch ends. Same for the dedupe memory. Written back means one
changelog message per customer per batch, where there used to be one per input.

Decoded states are not kept from one batch to the next. A cache of them (until
2026-11-30) saved decoding, but a decoded state is about 20 objects that Python's
collector walks on every full collection: with it, a worker stopped for up to
200 ms at a time, and p99 latency at 500 events/s was 290 ms against 110 ms
without it, at no lower CPU per event (docs/performance.md, "Latency";
docs/operations.md, "Garbage collector pauses").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import faust

from policies.state import CustomerState
from streams.intake import stored
from streams.intake.dedupe import RecentIds


class Table(Protocol):
    """What a batch needs of a table: `streams.kafka.transport.ClarionTable`."""

    def get(self, key: str) -> Any: ...

    async def write(self, key: str, value: Any) -> None: ...


@dataclass
class _Entry:
    state: CustomerState
    partition: int
    event: faust.EventT[bytes]
    """An input of this batch from the customer's partition: the table write belongs to it."""
    dirty: bool = False


class Working:
    def __init__(
        self,
        customers: Table,
        seen: Table,
        window: timedelta,
        max_ids: int,
        enter: Callable[[faust.EventT[bytes]], None],
    ) -> None:
        self._customers, self._seen = customers, seen
        self._window, self._max_ids, self._enter = window, max_ids, enter
        self._states: dict[str, _Entry] = {}
        self._recent: dict[str, tuple[RecentIds, faust.EventT[bytes]]] = {}

    def state(self, customer: str, partition: int, event: faust.EventT[bytes]) -> CustomerState:
        entry = self._states.get(customer)
        if entry is None:
            entry = _Entry(self._load(customer), partition, event)
            self._states[customer] = entry
        return entry.state

    def put(self, customer: str, state: CustomerState) -> None:
        entry = self._states[customer]
        entry.state, entry.dirty = state, True

    def due(self, customer: str) -> str | None:
        """The customer's next due instant as stored (ISO), as this batch sees it."""
        entry = self._states.get(customer)
        if entry is not None:
            due = entry.state.due
            return due.isoformat() if due else None
        found = stored.head(self._customers.get(customer))
        return found.due if found else None

    def recent(self, customer: str, event: faust.EventT[bytes]) -> RecentIds:
        found = self._recent.get(customer)
        if found is None:
            ids = RecentIds.from_json(self._seen.get(customer), self._window, self._max_ids)
            found = self._recent[customer] = (ids, event)
        return found[0]

    async def flush(self) -> list[tuple[faust.EventT[bytes], Exception]]:
        """Write back every customer the batch changed: one table write each.

        A customer whose write fails does not stop the others; the failures come
        back with an input of that customer's, for the caller to dead-letter.
        """
        failed: list[tuple[faust.EventT[bytes], Exception]] = []
        for customer, entry in self._states.items():
            if not entry.dirty:
                continue
            try:
                self._enter(entry.event)
                due = entry.state.due
                value = stored.encode(entry.partition, due, entry.state)
                await self._customers.write(customer, value)
            except Exception as exc:  # reported to the caller, never swallowed
                failed.append((entry.event, exc))
        for customer, (ids, event) in self._recent.items():
            if not ids.changed:
                continue  # a duplicate, or nothing accepted: nothing new to remember
            try:
                self._enter(event)
                await self._seen.write(customer, ids.to_json())
            except Exception as exc:
                failed.append((event, exc))
        return failed

    def _load(self, customer: str) -> CustomerState:
        return stored.state(self._customers.get(customer)) or CustomerState(customer_id=customer)
