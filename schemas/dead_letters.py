"""An input Clarion could not accept, kept whole with the reason (topic `dead-letters`)."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

RejectCode = Literal[
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "invalid_field",
    "naive_timestamp",
    "too_large",
    "key_mismatch",
    "wrong_partition",
    "unsupported_schema_version",
    "invalid_notification",
    "invalid_clock",
    "invalid_receipt",
    "invalid_reply",
    "unknown_sender",
    "internal_error",
]


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

    @staticmethod
    def encode(raw: bytes | None) -> str | None:
        return None if raw is None else base64.b64encode(raw).decode("ascii")

    def original_value(self) -> bytes:
        """The bytes exactly as they arrived, for a replay once the producer is fixed."""
        return base64.b64decode(self.value_b64)

    def original_key(self) -> bytes | None:
        """The key exactly as it arrived (None: it had none)."""
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)
