"""Work beside the agents that must outlive its own failures.

The lanes' router copies and the policy follower reads; a failure of either
loses nothing (the originals stay where they are, the topic keeps every
publication), so it must not halt the worker as an agent's crash does
(`kafka/guard.py`). Nor may it end quietly: each failure is logged, with the
traceback when it is not the broker's, and the work starts again a second later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import faust
import structlog
from aiokafka.errors import KafkaError

log = structlog.get_logger(__name__)


def _uncounted(error: str) -> None:
    return None


async def keep_running(
    service: faust.Service,
    body: Callable[[], Awaitable[None]],
    event: str,
    retry_s: float,
    failed: Callable[[str], None] = _uncounted,
) -> None:
    """Run `body` until `service` stops; after a failure, `failed(error name)`, a log line
    (`<event>_error` for the broker's, `<event>_failed` with the traceback for the
    rest), and again `retry_s` later."""
    while not service.should_stop:
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except (KafkaError, OSError) as exc:
            failed(type(exc).__name__)
            log.warning(f"{event}_error", error=type(exc).__name__, detail=str(exc))
        except Exception as exc:
            failed(type(exc).__name__)
            log.exception(f"{event}_failed", error=type(exc).__name__)
        else:
            continue
        await service.sleep(retry_s)
