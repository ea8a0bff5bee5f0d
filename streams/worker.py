"""Running a worker process: topics first, then the Faust worker until a signal stops it."""

from __future__ import annotations

import asyncio
import logging

import faust

from streams.app import create_app
from streams.logging import configure
from streams.settings import Settings
from streams.topics import ensure_topics


def run_worker(settings: Settings) -> None:
    configure(settings.log_format, settings.log_level)
    asyncio.run(ensure_topics(settings))
    app = create_app(settings)
    # Faust's own logs (stdlib logging) at warning and above; ours go through structlog.
    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True)
    worker.execute_from_commandline()
