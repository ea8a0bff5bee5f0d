"""A worker that cannot go on stops, loudly, before it commits past what it did not do.

Faust logs an agent's crash and lets the rest of the worker live: the process
answers its probes, the consumer commits the offsets of the crashed batch
(take_events acks them when its generator is closed), and intake has stopped
for good. An orchestrator never restarts it, and what was in flight is lost.
The same happens to a write the broker refuses after `send` returned: Faust
hands back the delivery's future and nobody looks at it.

The guard closes both holes:

- `run_agent` wraps an agent's body. An exception that escapes it halts the
  worker; Faust never sees it, so it acks nothing on the crash's account.
- `watch` follows the delivery of every record an agent produces; a refused
  one halts the worker too.
- `settled` is awaited before every commit (`kafka/transport.py`): the offsets
  are taken first, then every delivery in flight must have succeeded, so an
  offset is never committed past an input whose output the broker did not take.
- `halt` refuses every commit from then on, turns `/live` and `/ready` to 503,
  logs `worker.halted` with the cause, and ends the process with exit code 70
  after `GRACE_S`, without Faust's graceful stop (which would commit). The
  orchestrator restarts it, and the uncommitted inputs are read again.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

EXIT_CODE = 70
"""EX_SOFTWARE: the worker stopped itself on an internal failure."""
GRACE_S = 1.0
"""Between the halt and the exit: the log line is written and the probes answer 503."""


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Guard:
    def __init__(
        self,
        exit_code: int = EXIT_CODE,
        grace_s: float = GRACE_S,
        exit: Callable[[int], None] = _exit_now,
    ) -> None:
        """`exit` ends the process (the unit tests pass one that records the code)."""
        self._pending: set[asyncio.Future[Any]] = set()
        self._exit_code, self._grace_s, self._exit = exit_code, grace_s, exit
        self.halted: str | None = None
        """Why the worker halted; None while it runs."""

    def watch(self, delivery: Awaitable[Any]) -> None:
        """Follow one record's delivery: a refusal halts the worker."""
        future = asyncio.ensure_future(delivery)
        self._pending.add(future)
        future.add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.halt("the broker refused a record this worker produced", exc)

    async def settled(self) -> bool:
        """Whether everything produced so far was delivered (waits for what is in flight)."""
        if self._pending and self.halted is None:
            await asyncio.wait(list(self._pending))
        return self.halted is None

    async def run_agent(self, name: str, body: Awaitable[None]) -> None:
        """An agent's body; if it fails, the worker halts and this never returns."""
        try:
            await body
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.halt(f"agent {name} crashed", exc)
            await asyncio.Event().wait()  # until the exit: Faust must not see it and ack

    def halt(self, why: str, exc: BaseException) -> None:
        if self.halted is not None:
            return
        self.halted = why
        log.critical(
            "worker.halted",
            why=why,
            error=type(exc).__name__,
            detail=str(exc)[:500],
            exit_code=self._exit_code,
            exit_in_s=self._grace_s,
        )
        asyncio.get_running_loop().call_later(self._grace_s, self._exit, self._exit_code)
