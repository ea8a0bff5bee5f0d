from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.events import EVENT_DATA, event_from_dict, parse_event
from tests import samples
from tests.conftest import STORIES


@pytest.mark.parametrize("type_name", sorted(EVENT_DATA))
def test_every_event_type_round_trips(type_name: str) -> None:
    event = parse_event(samples.raw(type_name))
    assert event.type == type_name
    assert isinstance(event.data, EVENT_DATA[type_name])
    again = parse_event(event.model_dump_json())
    assert again == event
    assert json.loads(again.model_dump_json()) == json.loads(event.model_dump_json())


def test_there_is_a_sample_for_every_type() -> None:
    assert set(samples.DATA) == set(EVENT_DATA)


def test_every_story_event_validates() -> None:
    lines = [line for line in STORIES.read_text().splitlines() if line.strip()]
    assert len(lines) == 33
    for line in lines:
        parse_event(line)


def test_money_is_decimal_and_keeps_its_digits() -> None:
    event = parse_event(samples.raw("payment.missed"))
    assert event.data.amount_due == Decimal("125.40")  # type: ignore[attr-defined]
    assert json.loads(event.model_dump_json())["data"]["amount_due"] == "125.40"


def test_money_as_a_json_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="decimal string"):
        event_from_dict(samples.event("payment.received", data={"amount": 12.5, "currency": "USD"}))


def test_unknown_data_fields_are_kept() -> None:
    data = {**samples.DATA["payment.received"], "channel_hint": "branch"}
    event = event_from_dict(samples.event("payment.received", data=data))
    assert json.loads(event.model_dump_json())["data"]["channel_hint"] == "branch"


@pytest.mark.parametrize("stamp", ["2026-11-20T14:00:00", "2026-11-20 14:00"])
def test_timestamps_must_carry_a_zone(stamp: str) -> None:
    with pytest.raises(ValidationError):
        event_from_dict(samples.event("payment.received", occurred_at=stamp))


def test_time_zone_names_are_checked() -> None:
    data = {**samples.DATA["customer.profile.updated"], "time_zones": ["America/Chicgo"]}
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        event_from_dict(samples.event("customer.profile.updated", data=data))
