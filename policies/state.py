"""What the engine remembers per customer, between one input and the next.

One value per customer, stored by the driver (a Faust table in the worker, a
dict in the simulator): the engine gets it, and returns the next one. Timers
are part of it (`Case.due`), so they survive whatever the driver survives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, with_config

from schemas.customer import Preferences, Profile
from schemas.types import Channel


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# The small records below are slotted dataclasses, not models: the engine makes
# several of them per input, and one costs about half what a frozen model's
# validation does (1 µs against 1.7-2.0). Pydantic still validates them (and
# forbids unknown keys) when a stored state is read back, because
# `CustomerState` is a model.
_RECORD = with_config(ConfigDict(extra="forbid"))


@_RECORD
@dataclass(frozen=True, slots=True)
class ConsentRecord:
    channel: Channel
    address: str
    status: str
    source: str
    at: AwareDatetime


@_RECORD
@dataclass(frozen=True, slots=True)
class Contact:
    """One message the engine decided to send: what frequency caps count."""

    at: AwareDatetime
    channel: Channel
    category: str
    account_id: str | None = None


@_RECORD
@dataclass(frozen=True, slots=True)
class Conversation:
    """A call a person answered: the after-conversation rule counts from it."""

    at: AwareDatetime
    account_id: str | None = None


@_RECORD
@dataclass(frozen=True, slots=True)
class Cease:
    """A cease-communication request: for one account (debt), or all when account_id is None."""

    at: AwareDatetime
    account_id: str | None = None
    channel: Channel | None = None
    """Only this channel, when set."""


@_RECORD
@dataclass(frozen=True, slots=True)
class Pending:
    """A step waiting for its instant: a later rung, or one a guard deferred."""

    step: int
    due: AwareDatetime
    groups: tuple[int, ...] | None = None
    """Candidate groups still to send (a partly sent step)."""
    tried: tuple[Channel, ...] = ()
    """Channels that failed permanently for this step."""


@_RECORD
@dataclass(frozen=True, slots=True)
class SentRef:
    step: int
    group: int
    channel: Channel


class Case(_Frozen):
    """One open escalation for one account (or customer)."""

    case_id: str
    escalation: str
    ladder: str
    account_id: str | None
    opened_at: AwareDatetime
    cause_event_id: str
    origin: AwareDatetime = Field(description="what `after` counts from; moved by pauses")
    pending: tuple[Pending, ...] = ()
    paused_at: AwareDatetime | None = None
    resume_on: str | None = None
    received: tuple[str, ...] = Field(default=(), description="event types seen on this case")
    steps_sent: int = 0
    sent: dict[str, SentRef] = Field(default_factory=dict, description="by notification id")
    data: dict[str, object] = Field(default_factory=dict, description="the trigger's data")

    @property
    def due(self) -> datetime | None:
        """When the next pending step falls due; None while paused or when none is left."""
        if self.paused_at is not None or not self.pending:
            return None
        return min(p.due for p in self.pending)


class CustomerState(_Frozen):
    customer_id: str
    profile: Profile = Field(default_factory=Profile)
    preferences: Preferences = Field(default_factory=Preferences)
    consents: dict[str, ConsentRecord] = Field(
        default_factory=dict, description="by 'channel:address'; the latest change wins"
    )
    cases: dict[str, Case] = Field(default_factory=dict)
    contacts: tuple[Contact, ...] = Field(
        default=(), description="recent sends, kept as long as the longest cap looks back"
    )
    conversations: tuple[Conversation, ...] = ()
    ceases: tuple[Cease, ...] = ()

    @staticmethod
    def consent_key(channel: str, address: str) -> str:
        return f"{channel}:{address.lower()}"

    @property
    def due(self) -> datetime | None:
        """The customer's next timer: the earliest due step over the open cases."""
        dues = [d for d in (c.due for c in self.cases.values()) if d is not None]
        return min(dues) if dues else None
