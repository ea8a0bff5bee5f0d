"""What the engine remembers per customer, between one input and the next.

One value per customer, stored by the driver (a Faust table in the worker, a
dict in the simulator): the engine gets it, and returns the next one. Timers
are part of it (`Case.due`), so they survive whatever the driver survives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    waiting_since: AwareDatetime | None = None
    """Since when the step has waited for a contact point (`awaiting_contact`)."""


@_RECORD
@dataclass(frozen=True, slots=True)
class SentRef:
    step: int
    group: int
    channel: Channel


@_RECORD
@dataclass(slots=True)
class Case:
    """One open escalation for one account (or customer).

    Not frozen, unlike the records above: the engine changes a case several
    times in one input (a step fires, a message goes, a deferral is added),
    and a copy per change cost a third of its time. Only the engine writes a
    case, and only its own copy of it (`copy`, made on the first change in a
    `decide` call), so a state once returned never changes. Fields are
    replaced, never changed in place: a copy may share their values.
    """

    case_id: str
    escalation: str
    ladder: str
    account_id: str | None
    opened_at: AwareDatetime
    cause_event_id: str
    origin: AwareDatetime
    """What `after` counts from; moved by pauses."""
    pending: tuple[Pending, ...] = ()
    paused_at: AwareDatetime | None = None
    resume_on: str | None = None
    received: tuple[str, ...] = ()
    """Event types seen on this case."""
    steps_sent: int = 0
    sent: dict[str, SentRef] = field(default_factory=dict)
    """By notification id."""
    data: dict[str, object] = field(default_factory=dict)
    """The trigger's data."""
    experiment: str | None = None
    arm: str | None = None
    """The experiment and the arm its customer is in, when its escalation runs one."""
    version: str | None = None
    """The policy version it opened under: its ladders stay that version's until it closes
    (None: opened before versions were pinned, runs on the set in force)."""

    def copy(self) -> Case:
        """A shallow copy (the fields' values are shared, and never changed in place)."""
        return Case(
            self.case_id,
            self.escalation,
            self.ladder,
            self.account_id,
            self.opened_at,
            self.cause_event_id,
            self.origin,
            self.pending,
            self.paused_at,
            self.resume_on,
            self.received,
            self.steps_sent,
            self.sent,
            self.data,
            self.experiment,
            self.arm,
            self.version,
        )

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
