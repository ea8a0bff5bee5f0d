"""What an orchestrator and a scraper ask a worker: `/live`, `/ready` and `/metrics`.

`/live` turns 503 as soon as the worker halts (streams/kafka/guard.py), a
second before it exits, so a probe never reports a dead worker as alive.
`/health` is the same answer under its older name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from streams.kafka.transport import ClarionApp, Consumer
from streams.runtime.metrics import CONTENT_TYPE, Metrics


def install(app: ClarionApp, metrics: Metrics, pending: Callable[[], int] | None) -> None:
    """`pending`: how many timers this worker holds (None in a dispatch-only worker)."""

    def recovered() -> bool:
        return bool(app.tables.recovery.completed.is_set())  # type: ignore[attr-defined]  # faust's TableManagerT omits it

    def is_ready() -> bool:
        return recovered() and not app.rebalancing and app.guard.halted is None

    metrics.gauge("clarion_ready", "1 when tables are recovered and no rebalance runs.", is_ready)
    if pending is not None:
        metrics.gauge("clarion_pending_timers", "Timers this worker holds.", pending)
    metrics.gauges(
        "clarion_consumer_lag",
        "Messages on the broker past this worker's committed offset, by stream partition "
        "(as of the last fetch).",
        ("topic", "partition"),
        lambda: cast(Consumer, app.consumer).lag(),
    )

    def liveness(web: Any) -> Any:
        if app.guard.halted is not None:
            return web.json({"status": "halted", "why": app.guard.halted}, status=503)
        return web.json({"status": "ok"})

    @app.page("/live")
    async def live(web: Any, request: Any) -> Any:
        """Liveness: the event loop answers and the worker has not halted."""
        return liveness(web)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """`/live` under its older name."""
        return liveness(web)

    @app.page("/metrics")
    async def scraped(web: Any, request: Any) -> Any:
        """Prometheus' text format (streams/runtime/metrics.py)."""
        return web.text(metrics.render(), content_type=CONTENT_TYPE)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Readiness: tables recovered, no rebalance in progress, not halted; 503 until then."""
        state = {
            "ready": is_ready(),
            "recovered": recovered(),
            "rebalancing": app.rebalancing,
            "halted": app.guard.halted,
            "pending_timers": pending() if pending else 0,
        }
        return web.json(state, status=200 if state["ready"] else 503)
