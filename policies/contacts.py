"""Which channel, and which address, a step may use for this customer right now.

Resolved when a step falls due, not when it was scheduled, so a consent revoked
in between is honoured. A step that cannot be sent says why, as a stable code.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.model import Category, Send
from policies.state import CustomerState
from schemas.types import Channel


@dataclass(frozen=True, slots=True)
class Target:
    channel: Channel
    recipient: str


@dataclass(frozen=True, slots=True)
class Blocked:
    channel: Channel | None
    reason: str
    detail: str


def category_block(state: CustomerState, category_name: str, category: Category) -> Blocked | None:
    """A customer's category choice, and marketing's need for an explicit opt-in."""
    choice = (state.preferences.categories or {}).get(category_name)
    if category.consent == "opt_in" and choice is not True:
        return Blocked(
            None,
            "opt_in_required",
            f"{category_name} needs an opt-in and the customer has not given one",
        )
    if choice is False and not category.required:
        return Blocked(None, "opted_out", f"the customer turned {category_name} messages off")
    return None


def reachable(send: Send) -> list[Channel]:
    """Every channel a step can land on, whatever the customer: what its templates must cover."""
    found: list[Channel] = []
    if "current" in send.to:
        if send.channel == "preferred":
            found += ["sms", "email", "voice"]
        elif isinstance(send.channel, list):
            found += send.channel
        else:
            found.append(send.channel)
        found += send.fallback
    if "previous" in send.to:
        found += ["email", "sms"]
    return _unique(found)


def candidates(state: CustomerState, send: Send) -> list[list[Channel]]:
    """Groups of channels: each group is tried in order until one works; groups all go."""
    if isinstance(send.channel, list):
        return [[channel] for channel in send.channel]
    if send.channel == "preferred":
        preferred = state.preferences.preferred_channel
        first: list[Channel] = [preferred] if preferred else []
        return [_unique(first + list(send.fallback))]
    return [_unique([send.channel, *send.fallback])]


def resolve(
    state: CustomerState, channels: list[Channel], category_name: str, category: Category
) -> Target | Blocked:
    """The first channel in `channels` that can reach the customer, else why the first cannot."""
    if not channels:
        return Blocked(
            None, "no_channel", "no preferred channel is set and the step has no fallback"
        )
    first_block: Blocked | None = None
    for channel in channels:
        found = reach(state, channel, category_name, debt=category.collects_debt)
        if isinstance(found, Target):
            return found
        first_block = first_block or found
    assert first_block is not None
    return first_block


def reach(
    state: CustomerState, channel: Channel, category_name: str, *, debt: bool
) -> Target | Blocked:
    """The address for one channel, or why that channel cannot be used.

    `debt`: a debt collection message, which Reg F 1006.22(f)(3) keeps off a work
    email address the customer has not consented to."""
    if (state.preferences.channels or {}).get(channel) is False:
        return Blocked(channel, "opted_out", f"the customer turned {channel} off")
    by_category = (state.preferences.category_channels or {}).get(category_name) or {}
    if by_category.get(channel) is False:
        return Blocked(
            channel, "opted_out", f"the customer turned {channel} off for {category_name}"
        )
    if channel == "email":
        return _email(state, debt)
    return _phone(state, channel)


def _email(state: CustomerState, debt: bool) -> Target | Blocked:
    if not state.profile.emails:
        return Blocked("email", "no_contact_point", "no email address on file")
    for email in state.profile.emails:
        consent = state.consents.get(CustomerState.consent_key("email", email.address))
        if consent is not None and consent.status in ("revoked", "unusable"):
            continue
        if debt and email.type == "work" and not email.consented:
            continue
        return Target("email", email.address)
    return Blocked(
        "email",
        "no_consent",
        "every email address on file is revoked or a work "
        "address without consent for this category",
    )


def _phone(state: CustomerState, channel: Channel) -> Target | Blocked:
    phones = state.profile.phones
    if not phones:
        return Blocked(channel, "no_contact_point", "no phone number on file")
    if channel == "sms":
        mobiles = [p for p in phones if p.type == "mobile"]
        if not mobiles:
            return Blocked(
                "sms", "no_contact_point", "no mobile number on file (SMS cannot reach a landline)"
            )
        for phone in mobiles:
            consent = state.consents.get(CustomerState.consent_key("sms", phone.number))
            granted = phone.sms_consent if consent is None else consent.status == "granted"
            if granted:
                return Target("sms", phone.number)
        return Blocked("sms", "no_consent", "no mobile number with SMS consent")
    for phone in sorted(phones, key=lambda p: p.type != "mobile"):
        consent = state.consents.get(CustomerState.consent_key("voice", phone.number))
        if consent is None or consent.status == "granted":
            return Target("voice", phone.number)
    return Blocked("voice", "no_consent", "every number on file has voice consent revoked")


def _unique(channels: list[Channel]) -> list[Channel]:
    seen: list[Channel] = []
    for channel in channels:
        if channel not in seen:
            seen.append(channel)
    return seen
