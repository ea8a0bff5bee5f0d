"""The customer as Clarion knows them: contact points, zones, preferences, consents.

These shapes are both the `data` of profile, preference and consent events and
what the worker keeps per customer, so what a producer sent is what the engine
reads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import E164, Channel, EmailAddress, Identifier, LocalTime, TimeZoneName


class _Open(BaseModel):
    """Event data keeps unknown fields: producers may add some before we read them."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Phone(_Open):
    number: E164
    type: Literal["mobile", "landline", "work"] = "mobile"
    sms_consent: bool = False


class Email(_Open):
    address: EmailAddress
    type: Literal["personal", "work"] = "personal"
    # Collections email may reach a work address only with this consent.
    consented: bool = False


class Profile(_Open):
    """`customer.profile.updated` data: a full replacement of the profile."""

    phones: list[Phone] = Field(default_factory=list)
    emails: list[Email] = Field(default_factory=list)
    time_zones: list[TimeZoneName] = Field(
        default_factory=list,
        description="candidate zones; empty means unknown (the policy's fallback zones apply)",
    )
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    segment: str | None = None
    postal_region: str | None = Field(default=None, description="e.g. a US state: MA")
    name: str | None = None


class QuietHours(_Open):
    """Local hours the customer asked not to be contacted in; may wrap midnight."""

    start: LocalTime
    end: LocalTime


class Preferences(_Open):
    """`customer.preferences.updated` data: a field present replaces, absent keeps."""

    preferred_channel: Channel | None = None
    channels: dict[Channel, bool] | None = None
    categories: dict[Identifier, bool] | None = None
    category_channels: dict[Identifier, dict[Channel, bool]] | None = Field(
        default=None,
        description="a channel turned off for one category only (e.g. an email unsubscribe group)",
    )
    quiet_hours: QuietHours | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")

    def merged_into(self, stored: Preferences) -> Preferences:
        """What is stored after this update: fields present here win, the rest stay."""
        update = {name: getattr(self, name) for name in self.model_fields_set}
        if self.category_channels and stored.category_channels:
            # Channel by channel: an unsubscribe from one group's email keeps every other choice.
            merged = {k: dict(v) for k, v in stored.category_channels.items()}
            for category, choices in self.category_channels.items():
                merged[category] = {**merged.get(category, {}), **choices}
            update["category_channels"] = merged
        return stored.model_copy(update=update)


class ConsentChange(_Open):
    """`consent.changed` data: consent for one channel at one address."""

    channel: Channel
    address: str = Field(min_length=1, description="the phone number or email address")
    status: Literal["granted", "revoked"]
    source: Identifier = Field(
        description="sms_keyword, sms_reply, api, agent, preference_page, ..."
    )
    reply: str | None = Field(
        default=None, max_length=1600, description="the customer's words, when a reply changed it"
    )
    certain: bool = Field(
        default=True,
        description="false for a reply that may be a revocation: consent is revoked all the "
        "same, and an agent reads the words",
    )
    case_id: Identifier | None = Field(
        default=None, description="the case whose message the reply answered, when known"
    )
    confirm: bool = Field(
        default=False,
        description="send the one-time confirmation of a revocation (to the customer whose "
        "message was answered: one text per number)",
    )


class Reply(_Open):
    """`reply.received` data: what a customer wrote back, on the case that messaged them."""

    channel: Channel
    text: str = Field(max_length=1600)
    case_id: Identifier | None = Field(
        default=None, description="the case whose message was answered, when known"
    )
