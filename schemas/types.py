"""Field types shared by every contract.

Money travels as a decimal string and never as a float, because a float cannot
say 0.10 exactly and a ledger must. Time zones are IANA names, checked against
the zone database so a typo is an error at the door and not a wrong contact hour.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema

_MONEY_RE = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string such as "125.40", not a JSON number')
    if not _MONEY_RE.match(value):
        raise ValueError(f'{value!r} is not a decimal amount such as "125.40"')
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already guards
        raise ValueError(f"{value!r} is not a decimal amount") from exc


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema({"type": "string", "pattern": _MONEY_RE.pattern, "examples": ["125.40"]}),
]

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]

E164 = Annotated[str, Field(pattern=r"^\+[1-9]\d{6,14}$", description="phone number in E.164 form")]

EmailAddress = Annotated[
    str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254, description="email address")
]


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. America/Chicago)") from exc
    return name


TimeZoneName = Annotated[str, AfterValidator(_zone)]

LocalTime = Annotated[
    str,
    Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="local time HH:MM, 24-hour clock"),
]

Channel = Literal["sms", "email", "voice"]
CHANNELS: tuple[Channel, ...] = ("sms", "email", "voice")

Identifier = Annotated[str, Field(min_length=1, max_length=128)]

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""A customer id: letters, digits and . _ : - (what fits a URL path and a Kafka key as is),
the same at intake, in the preferences API and on the page."""

CustomerId = Annotated[
    str, Field(pattern=CUSTOMER_ID_PATTERN, description="letters, digits and . _ : -, 1-128")
]

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Instants outside these are refused: a ladder adds days to them, and a year near 9999
(or 0001 with an offset) would overflow once converted to UTC."""


def _instant_text(value: Any) -> Any:
    if isinstance(value, int | float):  # bool included: never an instant
        raise ValueError(
            "must be an ISO-8601 string with a time zone (2026-11-20T09:00:00Z), not a number"
        )
    return value


def _instant_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 1970-01-01 and 9000-01-01 once converted to UTC")
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_instant_text),
    AfterValidator(_instant_range),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""An instant a producer sends: an ISO-8601 string with an offset, in a range the engine
can add days to."""


Priority = Literal["urgent", "normal", "bulk"]
"""How soon a message must go beside others on the same sender: urgent ones (a fraud
alert) are served before waiting normal and bulk ones (reminders, offers)."""
