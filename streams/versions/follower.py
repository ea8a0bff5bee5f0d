"""Every worker follows the `policies` topic and adds each publication as it arrives.

A publication takes effect at its own instant, set by the publisher a little
ahead of the wall clock (`clarion policy publish --in`), so every worker has it
before any input needs it. A worker that reads one after its instant (it was
down, or the lead was too short) logs `policy.version_late`: inputs it decided
in between were decided under the version before, and a replay would not be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust
import structlog

from streams.kafka.restarting import keep_running
from streams.runtime.settings import Settings
from streams.versions import catalog
from streams.versions.in_force import Versions

log = structlog.get_logger(__name__)

RETRY_S = 1.0


class Follower(faust.Service):
    def __init__(self, settings: Settings, versions: Versions, start: int, **kw: Any) -> None:
        """`start`: the first offset not yet applied (the worker read the rest before it
        started its agents)."""
        super().__init__(**kw)
        self.settings, self.versions, self.position = settings, versions, start

    async def on_started(self) -> None:
        self.add_future(self._run())

    async def _run(self) -> None:
        await keep_running(self, self._follow, "policy.follow", RETRY_S)

    async def _follow(self) -> None:
        async for entry in catalog.follow(self.settings, self.position):
            late = datetime.now(UTC) - entry.published.effective_at
            applied = self.versions.apply(entry.published)
            if applied and late.total_seconds() > 0 and self.settings.clock == "wall":
                log.warning(
                    "policy.version_late",
                    version=entry.published.version,
                    late_s=round(late.total_seconds(), 3),
                )
            self.position = entry.offset + 1
