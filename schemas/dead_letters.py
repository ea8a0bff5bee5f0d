"""An input Clarion could not accept, with the reason (topic `dead-letters`).

A dead letter keeps the input whole up to a size the deployment chooses
(`CLARION_DEAD_LETTER_MAX_BYTES`), so that it always fits the producer's and
the broker's limits however large the input was. Above it, the letter keeps
the first `PREVIEW_BYTES`, the length and the SHA-256 of the value, and points
to the original by topic, partition and offset, as Kafka Connect's dead-letter
headers do; `clarion dead-letters --replay` reads the original from there
while the broker still holds it.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RejectCode = Literal[
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "invalid_field",
    "naive_timestamp",
    "too_large",
    "too_deep",
    "number_out_of_range",
    "invalid_text",
    "key_mismatch",
    "wrong_partition",
    "unsupported_schema_version",
    "invalid_notification",
    "invalid_clock",
    "invalid_receipt",
    "invalid_reply",
    "unknown_sender",
    "state_unreadable",
    "invalid_repair",
    "internal_error",
]


PREVIEW_BYTES = 4096
"""How much of a value too large to keep whole a dead letter keeps (at most)."""
KEY_BYTES = 1024
"""Keys are customer ids: a longer one is cut to this, and the letter marked truncated."""
REASON_CHARS = 1000
"""A reason longer than this is cut: it is a sentence for a person, not a copy of the input."""


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: RejectCode
    reason: str
    topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str
    received_at: AwareDatetime
    value_bytes: int | None = Field(
        default=None, description="the original value's length (absent in older letters)"
    )
    value_sha256: str | None = Field(default=None, description="hex SHA-256 of the original")
    truncated: bool = Field(
        default=False,
        description="key_b64 and value_b64 hold only the first bytes: the original is at "
        "topic, partition, offset for as long as the broker keeps it",
    )

    @classmethod
    def of(
        cls,
        *,
        code: RejectCode,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        received_at: datetime,
        whole_max_bytes: int,
    ) -> DeadLetter:
        """The letter for one refused message: whole if the value is at most `whole_max_bytes`,
        else its first bytes, its length and its hash."""
        value = value or b""
        cut = len(value) > whole_max_bytes or (key is not None and len(key) > KEY_BYTES)
        kept = (
            value if len(value) <= whole_max_bytes else value[: min(PREVIEW_BYTES, whole_max_bytes)]
        )
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 1] + "\u2026"
        return cls(
            code=code,
            reason=reason,
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=cls.encode(key[:KEY_BYTES] if key is not None else None),
            value_b64=cls.encode(kept) or "",
            received_at=received_at,
            value_bytes=len(value),
            value_sha256=hashlib.sha256(value).hexdigest(),
            truncated=cut,
        )

    @staticmethod
    def encode(raw: bytes | None) -> str | None:
        return None if raw is None else base64.b64encode(raw).decode("ascii")

    def original_value(self) -> bytes:
        """The bytes exactly as they arrived, for a replay once the producer is fixed.

        A truncated letter holds only the first bytes: read the original from the topic."""
        if self.truncated:
            raise ValueError("a truncated dead letter: the original is at its topic and offset")
        return base64.b64decode(self.value_b64)

    def original_key(self) -> bytes | None:
        """The key exactly as it arrived (None: it had none)."""
        if self.truncated:
            raise ValueError("a truncated dead letter: the original is at its topic and offset")
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    def kept_key(self) -> bytes | None:
        """The key as the letter keeps it: whole, or its first `KEY_BYTES` when truncated."""
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    def matches(self, value: bytes) -> bool:
        """Whether `value` is the original this letter describes (a replay's check)."""
        if self.value_sha256 is None:
            return not self.truncated and value == base64.b64decode(self.value_b64)
        return hashlib.sha256(value).hexdigest() == self.value_sha256
