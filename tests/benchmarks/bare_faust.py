"""The framework's floor for the pipeline benchmark: a Faust agent that only decodes and forwards.

`tests/benchmarks/pipeline.py` runs this as its own process, on the same broker
and input as the worker, to show how much of the worker's time per event is
Faust's own. The agent is shaped like the worker's intake: the same app class
and transport, batches from `take_events` (500, 5 ms), one `json.loads` per
event, one produce per event straight to the producer. No table, no engine.

    python -m tests.benchmarks.bare_faust BOOTSTRAP SOURCE SINK WEB_PORT DATADIR
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import faust

from streams.kafka.transport import ClarionApp

APP_ID = "bare-faust-bench"


def create(bootstrap: str, source: str, sink: str, web_port: int, datadir: str) -> faust.App:
    app = ClarionApp(
        APP_ID,
        broker=f"kafka://{bootstrap}",
        fetch_max_wait_ms=10,
        broker_commit_interval=2.8,
        datadir=datadir,
        autodiscover=False,
        web_host="127.0.0.1",
        web_port=web_port,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )
    topic = app.topic(source, key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="forward", concurrency=1)
    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(500, within=0.005):
            for event in events:
                decoded = json.loads(event.message.value or b"{}")
                value = json.dumps(decoded).encode()
                await app.producer.send(sink, event.message.key, value, None, None, None)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """The worker's readiness rule, so the benchmark times both from the same moment."""
        ok = app.tables.recovery.completed.is_set() and not app.rebalancing
        return web.json({"ready": ok}, status=200 if ok else 503)

    return app


def main() -> None:
    bootstrap, source, sink, web_port, datadir = sys.argv[1:6]
    app = create(bootstrap, source, sink, int(web_port), datadir)
    faust.Worker(app, loglevel=logging.WARNING, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
