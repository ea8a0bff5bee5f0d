"""Running a worker process: topics first, then the Faust worker until a signal stops it."""

from __future__ import annotations

import asyncio
import logging

import faust
import structlog

from streams.app import create_app
from streams.kafka.topics import ensure_topics, grants_producer_ids
from streams.runtime import collector
from streams.runtime.logging import configure
from streams.runtime.settings import Settings
from streams.versions import catalog

PAUSE_LOGGED_S = 0.1
"""A garbage collection that stops the loop this long is logged (`gc.pause`)."""


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """No terminal spinner: Faust sets the root logger to DEBUG for it.

        With the root at DEBUG, every debug call in aiokafka and Faust built a log
        record that the WARNING handler then dropped: about 8% of the worker's CPU
        in a py-spy profile of the pipeline benchmark.
        """
        self.spinner = None
        super().on_setup_root_logger(logger, level)

    async def on_startup_finished(self) -> None:
        """Ready: what is alive now lives as long as the worker, so the collector skips it."""
        await super().on_startup_finished()
        collector.freeze_startup()


def run_worker(settings: Settings) -> None:
    configure(settings.log_format, settings.log_level)
    collector.watch(PAUSE_LOGGED_S)
    asyncio.run(ensure_topics(settings))
    settings = asyncio.run(resolved_idempotence(settings))
    # Every published policy set before any input: the versions in force are the same
    # on every worker from the first input on.
    published = asyncio.run(catalog.read(settings))
    app = create_app(settings, published=published)
    # Faust's own logs (stdlib logging) at warning and above; ours go through structlog.
    worker = _Worker(app, loglevel=logging.WARNING, quiet=True)
    worker.execute_from_commandline()


async def resolved_idempotence(settings: Settings) -> Settings:
    """`auto` made `on` or `off` by asking the broker; logged either way."""
    wanted = settings.kafka_idempotence
    granted = wanted == "on" or (wanted == "auto" and await grants_producer_ids(settings))
    structlog.get_logger(__name__).info("producer.idempotence", enabled=granted, setting=wanted)
    return settings.model_copy(update={"kafka_idempotence": "on" if granted else "off"})
