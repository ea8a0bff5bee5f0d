"""A policy set as published on the `policies` topic (`clarion policy publish`).

The record carries the whole set, its YAML files and every template file, so a
worker needs nothing but the topic to apply it, and a rollback is the same
record published again with a later `effective_at`. On the wire it is this
model's JSON, gzip-compressed (a set with HTML emails is a few hundred kB of
text and well under a tenth of that compressed).
"""

from __future__ import annotations

import gzip

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class PublishedPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(
        pattern=r"^pol-[0-9a-f]{12}$",
        description="the set's content version, as policy check says (and a folder name)",
    )
    effective_at: AwareDatetime = Field(
        description="from when inputs are decided under it, on the clock the workers run on"
    )
    published_at: AwareDatetime = Field(description="when it was published, wall clock")
    author: str = Field(description="who published it (`--author`, default the OS user)")
    rollback_of: str | None = Field(
        default=None, description="the version it replaced when published with --activate"
    )
    policies: dict[str, str] = Field(description="each YAML file's text, by file name")
    templates: dict[str, str] = Field(
        description="each template file's text, by its path under templates/"
    )

    @property
    def key(self) -> bytes:
        """Unique per publication, so compaction keeps every one: the history is the point."""
        return f"{self.published_at.isoformat()}/{self.version}".encode()

    def encode(self) -> bytes:
        return gzip.compress(self.model_dump_json().encode(), mtime=0)

    @classmethod
    def decode(cls, value: bytes) -> PublishedPolicy:
        return cls.model_validate_json(gzip.decompress(value))
