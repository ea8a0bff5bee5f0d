"""What an orchestrator and a scraper ask a worker: `/health`, `/ready` and `/metrics`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

from streams.runtime.metrics import CONTENT_TYPE, Metrics


def install(app: faust.App, metrics: Metrics, pending: Callable[[], int] | None) -> None:
    """`pending`: how many timers this worker holds (None in a dispatch-only worker)."""

    def is_ready() -> bool:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]  # faust's TableManagerT omits it
        return bool(recovered and not app.rebalancing)

    metrics.gauge("clarion_ready", "1 when tables are recovered and no rebalance runs.", is_ready)
    if pending is not None:
        metrics.gauge("clarion_pending_timers", "Timers this worker holds.", pending)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Liveness: the worker's event loop answers."""
        return web.json({"status": "ok"})

    @app.page("/metrics")
    async def scraped(web: Any, request: Any) -> Any:
        """Prometheus' text format (streams/runtime/metrics.py)."""
        return web.text(metrics.render(), content_type=CONTENT_TYPE)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Readiness: tables recovered and no rebalance in progress; 503 until then."""
        state = {
            "ready": is_ready(),
            "recovered": app.tables.recovery.completed.is_set(),  # type: ignore[attr-defined]
            "rebalancing": app.rebalancing,
            "pending_timers": pending() if pending else 0,
        }
        return web.json(state, status=200 if state["ready"] else 503)
