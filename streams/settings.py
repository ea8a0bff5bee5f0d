"""Worker settings, read from the environment (``CLARION_*``) and validated.

Secrets and addresses come only from the environment; a wrong value stops the
worker at start-up with the variable's name, not later with a stack trace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PREFIX = "CLARION_"


class SettingsError(RuntimeError):
    """A setting is missing or has a value that cannot be used."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="host:port[,host:port...] of any Kafka cluster"
    )
    app_id: str = Field(default="clarion", pattern=r"^[A-Za-z0-9._-]+$")
    topic_prefix: str = Field(default="clarion.", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    policies_dir: Path | None = Field(
        default=None, description="the ops teams' YAML; unset: the bundled example policies"
    )
    outbox_path: Path = Field(default=Path("var/outbox.jsonl"), description="sandbox channel")
    data_dir: Path = Field(default=Path("var/worker-data"))
    store: str = Field(default="memory://", description="memory:// or rocksdb://")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    dedupe_window_hours: float = Field(
        default=72.0, gt=0, description="how long an event id is remembered after it was seen"
    )
    dedupe_max_ids: int = Field(default=512, ge=1)
    tick_interval_s: float = Field(
        default=0.25, gt=0, description="how often a worker advances its timers (wall clock)"
    )
    session_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="consumer group session timeout; short values speed up joins on Tansu",
    )
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    commit_interval_s: float = Field(default=2.8, gt=0)
    clock: Literal["wall", "event"] = Field(
        default="wall", description="event: now is the time the input occurred (demo, replays)"
    )
    templates_dir: Path | None = Field(
        default=None, description="unset: templates/ beside the policies"
    )
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``CLARION_<FIELD>`` variables; explicit overrides win over the environment."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for name in cls.model_fields:
            var = PREFIX + name.upper()
            if var in source and source[var] != "":
                values[name] = source[var]
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            lines = []
            for err in exc.errors(include_url=False):
                field = str(err["loc"][0]) if err["loc"] else "?"
                lines.append(f"{PREFIX}{field.upper()}: {err['msg']} (got {err.get('input')!r})")
            raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
