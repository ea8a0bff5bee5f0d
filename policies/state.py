"""What the engine remembers per customer, between one input and the next.

One value per customer, stored by the driver (a Faust table in the worker, a
dict in the simulator): the engine gets it, and returns the next one.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.customer import Preferences, Profile
from schemas.types import Channel


class ConsentRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    address: str
    status: str
    source: str
    at: AwareDatetime


class Case(BaseModel):
    """One open escalation for one account (or customer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    escalation: str
    ladder: str
    account_id: str | None
    opened_at: AwareDatetime
    cause_event_id: str
    next_step: int = 0
    data: dict[str, object] = Field(default_factory=dict, description="the trigger's data")


class CustomerState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str
    profile: Profile = Field(default_factory=Profile)
    preferences: Preferences = Field(default_factory=Preferences)
    consents: dict[str, ConsentRecord] = Field(
        default_factory=dict, description="by 'channel:address'; the latest change wins"
    )
    cases: dict[str, Case] = Field(default_factory=dict)

    @staticmethod
    def consent_key(channel: str, address: str) -> str:
        return f"{channel}:{address.lower()}"
