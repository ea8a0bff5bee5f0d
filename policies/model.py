"""The policy language as data (``docs/policy-language.md``).

Unknown keys are errors everywhere (``extra="forbid"``): a typo such as
``stop_onn`` must fail the check, not silently switch a guard off.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events import EVENT_TYPES
from schemas.types import Channel, LocalTime, Priority, TimeZoneName

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OPERATORS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists"})
PATH_ROOTS = ("data.", "customer.", "case.")

VOICEMAIL_TEMPLATE = "voicemail"
"""The template every call needs: what an answering machine may hear (channels/templates.py)."""

_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION = re.compile(r"^(\d+)(m|h|d|w|bd)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Duration(_Strict):
    """`30m`, `4h`, `3d`, `2w`, or `3bd` (business days: Mon-Fri minus holidays)."""

    amount: int
    unit: Literal["m", "h", "d", "w", "bd"]

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _DURATION.match(value.strip())
            if not match:
                raise ValueError(f"{value!r} is not a duration such as 30m, 4h, 3d, 2w or 3bd")
            return {"amount": int(match.group(1)), "unit": match.group(2)}
        return value

    @cached_property
    def fixed(self) -> timedelta | None:
        """The length, when it does not depend on the calendar (all but business days)."""
        unit = _UNITS.get(self.unit)
        return None if unit is None else unit * self.amount

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists"]
Condition = dict[str, dict[Operator, Any]]
"""`{data.amount_due: {gte: 1000}}`: every path's test must hold."""


def _check_condition(cond: Condition) -> Condition:
    for path, tests in cond.items():
        if not path.startswith(PATH_ROOTS):
            raise ValueError(f"condition path {path!r} must start with data., customer. or case.")
        if len(tests) != 1:
            raise ValueError(f"condition on {path!r} takes exactly one operator, got {len(tests)}")
        ((op, operand),) = tests.items()
        if op in ("in", "not_in") and not isinstance(operand, list):
            raise ValueError(f"{op} on {path!r} takes a list")
        if op == "exists" and not isinstance(operand, bool):
            raise ValueError(f"exists on {path!r} takes true or false")
    return cond


CheckedCondition = Annotated[Condition, Field(json_schema_extra={"format": "condition"})]


CategoryKind = Literal["debt_collection", "servicing", "security", "marketing", "notice"]
"""What a category's messages are, in the rules' terms: the lints and guards follow it.

`debt_collection` is Reg F's "communication" (caps, contact windows, the work-email
rule, opt-out text, limited-content voicemails); `marketing` needs consent and
opt-out text; `security` and `servicing` are the account's own business; `notice`
is a notice the law or the contract requires that is not about a debt.
"""

KINDS_BY_NAME: dict[str, CategoryKind] = {
    "collections": "debt_collection",
    "marketing": "marketing",
    "fraud": "security",
    "security": "security",
    "notices": "notice",
}
"""What a category without `kind` is read as (with a warning): the names the examples use."""


class Category(_Strict):
    kind: CategoryKind | None = Field(
        default=None, description="what the messages are; read from the name (warned) if unset"
    )
    contact_windows: Literal["enforce", "ignore"] = "enforce"
    frequency_caps: Literal["enforce", "exempt"] = "enforce"
    honours_cease: bool = True
    consent: Literal["transactional", "opt_in"] = "transactional"
    required: bool = False
    priority: Priority = Field(
        default="normal", description="urgent, normal or bulk: its escalations' unless they say"
    )

    @property
    def collects_debt(self) -> bool:
        """Reg F's "communication": the work-email rule, caps, voicemails follow from it."""
        return self.kind == "debt_collection"


class Window(_Strict):
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start >= self.end:
            raise ValueError(f"window start {self.start} must be before its end {self.end}")
        return self


class FrequencyCap(_Strict):
    channel: Channel | Literal["any"] | list[Channel] = "any"
    max: int | None = Field(default=None, ge=1)
    per: Duration | None = None
    after_conversation: Duration | None = None
    scope: Literal["account", "customer"] = "customer"
    categories: list[str] | None = None
    when: CheckedCondition | None = None
    counting: Literal["calendar_days", "rolling"] | None = Field(
        default=None,
        description="calendar_days: whole days in the customer's zone, the day of a contact "
        "or conversation as day 1, as Reg F counts them; rolling: a fixed length back from "
        "now. Default: calendar_days for a length in days or weeks, rolling for hours or "
        "minutes",
    )

    @cached_property
    def calendar_days(self) -> int | None:
        """The length in whole local days when this cap counts calendar days, else None."""
        length = self.per or self.after_conversation
        if length is None or length.unit not in ("d", "w") or self.counting == "rolling":
            return None
        return length.amount * (7 if length.unit == "w" else 1)

    @cached_property
    def channels(self) -> tuple[str, ...] | None:
        """The channels whose sends this cap counts; None for every channel."""
        if self.channel == "any":
            return None
        return tuple(self.channel) if isinstance(self.channel, list) else (self.channel,)

    def matches_channel(self, channel: str) -> bool:
        """Whether a send on `channel` is one this cap counts."""
        return self.channels is None or channel in self.channels

    @model_validator(mode="after")
    def _shape(self) -> FrequencyCap:
        counting = self.max is not None and self.per is not None
        if counting == (self.after_conversation is not None):
            raise ValueError("a cap has either max and per, or after_conversation")
        for length in (self.per, self.after_conversation):
            if length is not None and length.fixed is None:
                raise ValueError("a cap looks back a fixed time: use m, h, d or w, not bd")
        if self.when is not None:
            _check_condition(self.when)
        length = self.per or self.after_conversation
        if self.counting == "calendar_days" and length is not None and length.unit in "mh":
            raise ValueError("counting: calendar_days needs a length in days or weeks (d, w)")
        return self


ChannelSpec = Literal["preferred", "sms", "email", "voice"] | list[Channel]


Recipient = Literal["current", "previous"]


class Send(_Strict):
    channel: ChannelSpec
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    fallback: list[Channel] = Field(default_factory=list)
    to: list[Recipient] = Field(default_factory=lambda: list[Recipient](["current"]))


class Step(_Strict):
    name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="what `on_policy_change: restart` knows a step by across versions "
        "(unnamed: by its position)",
    )
    after: Duration
    send: Send | None = None
    handoff: Literal["agent", "letter"] | None = None
    when: CheckedCondition | None = None
    unless_received: list[str] = Field(default_factory=list)
    on_blocked: Literal["defer", "skip", "fallback"] = "defer"
    deadline: Duration | None = Field(
        default=None,
        description="the step goes by then, counted from the case's opening: by another "
        "channel the guards allow, else as a letter (a notice the law times)",
    )

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.send is None) == (self.handoff is None):
            raise ValueError("a step has exactly one of send or handoff")
        if self.deadline is not None and self.send is None:
            raise ValueError("a deadline belongs on a step that sends")
        if self.when is not None:
            _check_condition(self.when)
        _known_types(self.unless_received)
        return self


def _twice(names: list[str]) -> list[str]:
    """The names that come more than once, in order."""
    return sorted({n for n in names if names.count(n) > 1})


class Ladder(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    when: CheckedCondition | None = None
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_once(self) -> Ladder:
        twice = _twice([step.name for step in self.steps if step.name is not None])
        if twice:
            raise ValueError(f"step names must differ within a ladder: {', '.join(twice)}")
        return self

    def step_key(self, index: int) -> str:
        """A step's identity across versions: its name, else its position."""
        name = self.steps[index].name
        return name if name is not None else f"#{index}"

    @field_validator("when")
    @classmethod
    def _cond(cls, value: Condition | None) -> Condition | None:
        return None if value is None else _check_condition(value)


class Arm(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    weight: float = Field(gt=0, description="its share of customers, against the others' weights")
    ladder: str | None = Field(
        default=None,
        description="the ladder every case of this arm runs; none: the escalation as written",
    )
    escalation: str | None = Field(
        default=None,
        description="another escalation of the set that this arm's cases run instead, whole; "
        "it opens no case of its own",
    )

    @model_validator(mode="after")
    def _one_choice(self) -> Arm:
        if self.ladder is not None and self.escalation is not None:
            raise ValueError("an arm names a ladder or an escalation, not both")
        return self


class Experiment(_Strict):
    """Champion and challengers: customers split by a hash of their id, for good."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    arms: list[Arm] = Field(min_length=1, description="the first is the champion")
    holdout: float = Field(
        default=0,
        ge=0,
        description="the hold-out arm's weight: its cases send nothing (a required category's "
        "notices are never held out)",
    )

    @model_validator(mode="after")
    def _names_once(self) -> Experiment:
        names = [arm.name for arm in self.arms]
        if _twice(names) or HOLDOUT in names:
            raise ValueError(f"arm names must differ, and none may be {HOLDOUT!r}")
        return self


HOLDOUT = "holdout"
"""The arm whose customers get no message from the escalation: the baseline."""


class Escalation(_Strict):
    trigger: str
    category: str
    case: Literal["account", "customer"] = "account"
    on_retrigger: Literal["keep", "restart"] = "keep"
    on_policy_change: Literal["keep", "restart"] = Field(
        default="keep",
        description="when this set comes in force, open cases keep the ladder they opened "
        "under (keep), or move to this set's ladder of the same name from its first step "
        "not yet run, by step name (restart)",
    )
    stop_on: list[str] = Field(default_factory=list)
    pause_on: dict[str, str] = Field(default_factory=dict)
    switch_on: dict[str, str] = Field(default_factory=dict)
    priority: Priority | None = Field(
        default=None,
        description="urgent, normal or bulk; the category's when unset (docs/policies.md)",
    )
    on_reply: Literal["record", "agent"] = Field(
        default="record",
        description="a free-text reply to this case's message: recorded, or handed to an agent",
    )
    contact_wait: Duration | None = Field(
        default=None,
        description="how long a step waits for a contact point (the set's contact_wait if unset)",
    )
    ladders: list[Ladder] = Field(min_length=1)
    experiment: Experiment | None = Field(
        default=None,
        description="champion/challenger: each arm's customers run its ladder (docs/policies.md)",
    )

    @model_validator(mode="after")
    def _events_known(self) -> Escalation:
        _known_types(
            [self.trigger, *self.stop_on, *self.pause_on, *self.pause_on.values(), *self.switch_on]
        )
        return self


def _known_types(names: list[str]) -> None:
    for name in names:
        if name not in EVENT_TYPES:
            raise ValueError(f"{name!r} is not an event type (see docs/events.md)")


class Voicemail(_Strict):
    """What `policy check` holds the voicemail template to (Reg F 1006.2(j))."""

    person: str | None = Field(
        default=None,
        min_length=1,
        description="the name of a person the customer can ask for, which every voicemail says",
    )
    words: list[str] = Field(
        default_factory=list, description="more words that reveal a debt, beside the built-in list"
    )


class PolicyFile(_Strict):
    """One YAML file; the set is the union of its files' sections."""

    version: Literal[1]
    default_locale: str | None = None
    time_zone_fallback: list[TimeZoneName] | None = None
    holidays: list[date] | None = None
    contact_wait: Duration | None = None
    revocation_confirmation: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="the SMS template of the one-time confirmation of a revocation by reply",
    )
    voicemail: Voicemail | None = None
    categories: dict[str, Category] = Field(default_factory=dict)
    contact_windows: dict[str, Window] = Field(default_factory=dict)
    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    escalations: dict[str, Escalation] = Field(default_factory=dict)


class PolicySet(_Strict):
    """The merged, validated set, with the version every decision records."""

    version: str
    default_locale: str = "en"
    time_zone_fallback: list[TimeZoneName] = Field(default_factory=list)
    holidays: list[date] = Field(default_factory=list)
    contact_wait: Duration = Field(
        default=Duration(amount=1, unit="d"),
        description="how long a step that finds no contact point waits for a profile",
    )
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="each file of a template the set can send, with its digest: in the version",
    )
    revocation_confirmation: str | None = Field(
        default=None,
        description="the SMS template that confirms a revocation by reply, within five minutes "
        "(47 CFR 64.1200(a)(10)); none is sent without one",
    )
    voicemail: Voicemail = Field(default_factory=Voicemail)
    categories: dict[str, Category]
    contact_windows: dict[str, Window]
    frequency_caps: list[FrequencyCap]
    escalations: dict[str, Escalation]

    def alternatives(self) -> frozenset[str]:
        """Escalations an experiment's arm runs instead of its own: they open no case of
        their own on their trigger."""
        return frozenset(
            arm.escalation
            for esc in self.escalations.values()
            if esc.experiment is not None
            for arm in esc.experiment.arms
            if arm.escalation is not None
        )

    def urgent_triggers(self) -> frozenset[str]:
        """The event types that open an urgent case: what intake's lanes may route ahead
        (`CLARION_LANES_ROUTE_BY_TYPE`)."""
        return frozenset(
            esc.trigger
            for esc in self.escalations.values()
            if (esc.priority or self.categories[esc.category].priority) == "urgent"
        )
