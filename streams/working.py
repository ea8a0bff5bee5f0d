"""One intake batch's view of the customer tables: read once, written once.

A batch may hold several inputs for one customer (and timers falling due for
others). Each customer's state is read from the table the first time the batch
needs it, changed in memory by every input after that, and written back once
when the batch ends. Same for the dedupe memory. Written back means one
changelog message per customer per batch, where there used to be one per input.

Decoding a customer's stored state is the costly part of a read, so the
decoded state of recently written customers is kept (`StateCache`). It is used
only while the table still holds the very object it was decoded from. A value
recovered from the changelog, or read back from RocksDB, is a new object and
is decoded afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import faust

from policies.state import CustomerState
from streams import stored
from streams.dedupe import RecentIds


class StateCache:
    """Decoded states by customer, for the table values they were decoded from (bounded)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[object, CustomerState]] = OrderedDict()

    def get(self, customer: str, value: object) -> CustomerState | None:
        found = self._entries.get(customer)
        if found is None or found[0] is not value:
            return None
        self._entries.move_to_end(customer)
        return found[1]

    def put(self, customer: str, value: object, state: CustomerState) -> None:
        self._entries[customer] = (value, state)
        self._entries.move_to_end(customer)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class Table(Protocol):
    """What a batch needs of a table: `streams.transport.ClarionTable`."""

    def get(self, key: str) -> Any: ...

    async def write(self, key: str, value: Any) -> None: ...


@dataclass
class _Entry:
    state: CustomerState
    partition: int
    event: faust.EventT
    """An input of this batch from the customer's partition: the table write belongs to it."""
    dirty: bool = False


class Working:
    def __init__(
        self,
        customers: Table,
        seen: Table,
        cache: StateCache,
        window: timedelta,
        max_ids: int,
        enter: Callable[[faust.EventT], None],
    ) -> None:
        self._customers, self._seen, self._cache = customers, seen, cache
        self._window, self._max_ids, self._enter = window, max_ids, enter
        self._states: dict[str, _Entry] = {}
        self._recent: dict[str, tuple[RecentIds, faust.EventT]] = {}

    def state(self, customer: str, partition: int, event: faust.EventT) -> CustomerState:
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

    def recent(self, customer: str, event: faust.EventT) -> RecentIds:
        found = self._recent.get(customer)
        if found is None:
            ids = RecentIds.from_json(self._seen.get(customer), self._window, self._max_ids)
            found = self._recent[customer] = (ids, event)
        return found[0]

    async def flush(self) -> list[tuple[faust.EventT, Exception]]:
        """Write back every customer the batch changed: one table write each.

        A customer whose write fails does not stop the others; the failures come
        back with an input of that customer's, for the caller to dead-letter.
        """
        failed: list[tuple[faust.EventT, Exception]] = []
        for customer, entry in self._states.items():
            if not entry.dirty:
                continue
            try:
                self._enter(entry.event)
                due = entry.state.due
                value = stored.encode(entry.partition, due, entry.state)
                await self._customers.write(customer, value)
                self._cache.put(customer, value, entry.state)
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
        value = self._customers.get(customer)
        cached = self._cache.get(customer, value) if value else None
        if cached is not None:
            return cached
        return stored.state(value) or CustomerState(customer_id=customer)
