"""An operator's repair of one customer's unreadable state (topic `state-repairs`).

`clarion state repair` writes one; the intake worker that owns the customer
applies it, because only that worker may write the customer's state. It names
the stored value it replaces by SHA-256, so a repair made against one value is
never applied over another (a second repair, or a replay of the first).
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.types import CustomerId, Identifier


class StateRepair(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repair_id: Identifier
    customer_id: CustomerId
    requested_at: AwareDatetime
    operator: str = Field(min_length=1, max_length=200, description="who repairs it")
    reason: str = Field(min_length=1, max_length=1000, description="why, e.g. a ticket")
    replaces_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the stored value this replaces"
    )
    state: dict[str, Any] = Field(description="the customer's state as it is to be stored")
    dropped: list[str] = Field(
        default_factory=list, description="what of the old state the new one leaves out"
    )
