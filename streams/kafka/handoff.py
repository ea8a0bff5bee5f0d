"""Handing each fetched message to Faust's conductor without four tasks a message.

Faust's consumer loop delivers every message as
`await self.wait_first(callback(message), self.suspend_flow.wait())`, so that a
rebalance (which sets `suspend_flow`) cuts a delivery short. mode's
`wait_first` makes a task of the callback, of that wait, and of waits on the
consumer's stopped and crashed events, then cancels the three losers: four
tasks and three cancellations for every message, where the callback almost
never waits at all. Awaiting the callback directly took a quarter off the
worker's CPU per event from intake to receipts (docs/performance.md), but loses
the cut.

`CutShort` keeps the cut the way `asyncio.timeout` does: the callback runs in
the loop's own task, and `cut()` cancels that task; the `CancelledError` that
comes back is turned into a plain "cut short" answer, unless someone else
cancelled the task too, in which case it goes on up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from typing import Any


class FlowWait:
    """`suspend_flow.wait()`, recognisable: the consumer's `wait_first` knows the call by it."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def __await__(self) -> Generator[Any, None, bool]:
        return asyncio.Event.wait(self.event).__await__()


class FlowSuspended(asyncio.Event):
    """The consumer's `suspend_flow` event, whose `wait()` is a `FlowWait`."""

    def wait(self) -> FlowWait:  # type: ignore[override]
        return FlowWait(self)


class CutShort:
    """Awaits one delivery at a time in the caller's task; `cut()` ends it from outside."""

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self._cut = False

    async def run(self, delivery: Awaitable[Any]) -> tuple[bool, Any]:
        """`(True, result)` when the delivery finished, `(False, None)` when it was cut short."""
        task = asyncio.current_task()
        assert task is not None, "run() is awaited from a task"
        self._task, self._cut = task, False
        cancelling = task.cancelling()
        try:
            result = await delivery
        except asyncio.CancelledError:
            if self._cut and task.uncancel() <= cancelling:
                return False, None
            raise
        finally:
            self._task = None
        if self._cut:  # cut as it finished, and the delivery swallowed the cancellation
            task.uncancel()
        return True, result

    def cut(self) -> bool:
        """Whether a delivery was running (and is now being cut short)."""
        if self._task is None or self._cut:
            return False
        self._cut = True
        self._task.cancel()
        return True
