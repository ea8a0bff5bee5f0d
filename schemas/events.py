"""Account events: the envelope and every v1 event type (``docs/events.md``).

`AccountEvent` is a discriminated union on ``type``, so a payload is checked
against exactly one shape and an error names the field that broke it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, create_model

from schemas.customer import ConsentChange, Preferences, Profile, Reply
from schemas.types import Currency, CustomerId, Identifier, Instant, Money

SCHEMA_VERSION = 1
"""The highest envelope version this code understands."""


class EventData(BaseModel):
    """Unknown fields in ``data`` are kept (forward compatibility)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class PaymentDueSoon(EventData):
    amount_due: Money
    currency: Currency
    due_date: date


class PaymentMissed(EventData):
    amount_due: Money
    currency: Currency
    due_date: date
    days_past_due: int = Field(ge=0)
    minimum_payment: Money | None = None


class BalanceOverdue(EventData):
    amount_overdue: Money
    currency: Currency
    days_past_due: int = Field(ge=0)


class PaymentReceived(EventData):
    amount: Money
    currency: Currency


class PaymentPlanAgreed(EventData):
    plan_id: Identifier
    first_installment_date: date


class HardshipReported(EventData):
    reason: str | None = None


class DisputeRef(EventData):
    reference: Identifier


class CeaseRequested(EventData):
    scope: Literal["all", "channel"]
    channel: Literal["sms", "email", "voice"] | None = None
    received_via: str


class TransactionLarge(EventData):
    transaction_id: Identifier
    amount: Money
    currency: Currency
    merchant: str
    country: str = Field(pattern=r"^[A-Z]{2}$")


class TransactionAnswer(EventData):
    transaction_id: Identifier
    via: str


class FraudSuspected(EventData):
    transaction_id: Identifier | None = None
    reason: str


class AddressChanged(EventData):
    previous: str
    current: str
    via: str


class ContactChanged(EventData):
    field: Literal["phone", "email"]
    previous: str
    current: str


class PasswordResetRequested(EventData):
    via: str
    ip_country: str | None = None


class PolicyChanged(EventData):
    policy: Identifier
    effective_date: date
    summary_url: HttpUrl


class OfferAvailable(EventData):
    offer_id: Identifier
    summary: str


class Event(BaseModel):
    """The envelope every account event travels in.

    Parsing goes through `parse_event`, which returns the subclass for the
    event's ``type`` with ``data`` checked against that type's model.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Identifier
    type: str
    schema_version: Literal[1] = 1
    occurred_at: Instant
    customer_id: CustomerId
    account_id: Identifier | None = None
    source: str = Field(min_length=1)
    data: BaseModel


EVENT_DATA: dict[str, type[BaseModel]] = {
    "payment.due_soon": PaymentDueSoon,
    "payment.missed": PaymentMissed,
    "balance.overdue": BalanceOverdue,
    "payment.received": PaymentReceived,
    "payment_plan.agreed": PaymentPlanAgreed,
    "hardship.reported": HardshipReported,
    "dispute.opened": DisputeRef,
    "dispute.resolved": DisputeRef,
    "cease.requested": CeaseRequested,
    "transaction.large": TransactionLarge,
    "transaction.confirmed": TransactionAnswer,
    "transaction.rejected": TransactionAnswer,
    "fraud.suspected": FraudSuspected,
    "address.changed": AddressChanged,
    "contact.changed": ContactChanged,
    "password.reset_requested": PasswordResetRequested,
    "policy.changed": PolicyChanged,
    "offer.available": OfferAvailable,
    "customer.profile.updated": Profile,
    "customer.preferences.updated": Preferences,
    "consent.changed": ConsentChange,
    "reply.received": Reply,
}
"""Every v1 event type and the model of its ``data``."""

EVENT_TYPES: frozenset[str] = frozenset(EVENT_DATA)


def _class_name(type_name: str) -> str:
    words = type_name.replace("_", ".").split(".")
    return "".join(word.title() for word in words) + "Event"


EVENT_CLASSES: dict[str, type[Event]] = {
    type_name: create_model(
        _class_name(type_name),
        __base__=Event,
        type=(Literal[type_name], ...),  # type: ignore[arg-type]
        data=(data_model, ...),
    )
    for type_name, data_model in EVENT_DATA.items()
}
"""One envelope class per type, so the union can discriminate on ``type``."""

_EventUnion: Any = Annotated[Union[tuple(EVENT_CLASSES.values())], Field(discriminator="type")]  # noqa: UP007
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(_EventUnion)


def parse_event(raw: bytes | str) -> Event:
    """Validate one JSON event; raises `pydantic.ValidationError` when it is not one."""
    return EVENT_ADAPTER.validate_json(raw)


def event_from_dict(obj: dict[str, Any]) -> Event:
    """Validate an already-decoded event (for tests and the simulator)."""
    return EVENT_ADAPTER.validate_python(obj)
