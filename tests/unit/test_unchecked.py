"""Contract models the engine builds without validating them again (`schemas.unchecked`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from policies.engine import Tick, decide
from policies.model import PolicySet
from policies.state import CustomerState
from schemas.decisions import Decision
from schemas.events import event_from_dict
from schemas.notifications import NotificationRequest
from schemas.unchecked import replaced, unchecked
from tests.conftest import STORIES

AT = datetime(2026, 11, 20, 15, tzinfo=UTC)
FIELDS: dict[str, Any] = {
    "at": AT,
    "customer_id": "C-1",
    "action": "sent",
    "reason": "step_due",
    "case_id": "collections/A-1/evt-1",
    "step": 0,
    "channel": "sms",
    "policy_version": "pol-1",
}


def test_the_same_model_as_a_validated_one_down_to_its_json() -> None:
    built, validated = unchecked(Decision, FIELDS), Decision(**FIELDS)
    assert built == validated
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_fields_set == validated.model_fields_set


def test_a_default_made_by_a_factory_is_new_for_every_model() -> None:
    one, two = unchecked(Decision, FIELDS), unchecked(Decision, FIELDS)
    assert one.extra == {} and one.extra is not two.extra


def test_an_unknown_or_a_missing_field_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"unknown fields \['chanel'\]"):
        unchecked(Decision, {**FIELDS, "chanel": "sms"})
    without = {k: v for k, v in FIELDS.items() if k != "policy_version"}
    with pytest.raises(TypeError, match=r"missing fields \['policy_version'\]"):
        unchecked(Decision, without)


def test_replaced_is_model_copy_and_leaves_the_original_alone() -> None:
    state = CustomerState(customer_id="C-1")
    changed = replaced(state, ceases=())
    expected = state.model_copy(update={"ceases": ()})
    assert changed == expected and changed.model_fields_set == expected.model_fields_set
    assert changed.model_dump_json() == expected.model_dump_json()
    assert changed is not state and changed.__dict__ is not state.__dict__
    with pytest.raises(TypeError, match="unknown fields"):
        replaced(state, cease=())


def test_every_row_and_request_the_engine_makes_for_the_stories_validates(
    policy: PolicySet,
) -> None:
    """The checks the engine skips would all have passed: validated again, nothing changes."""
    states: dict[str, CustomerState] = {}
    made: list[Decision | NotificationRequest] = []
    raws = [json.loads(line) for line in STORIES.read_text().splitlines() if line.strip()]
    for event in sorted((event_from_dict(r) for r in raws), key=lambda e: e.occurred_at):
        state = states.get(event.customer_id) or CustomerState(customer_id=event.customer_id)
        outcome = decide(state, event, event.occurred_at, policy)
        made += outcome.decisions + outcome.notifications
        states[event.customer_id] = outcome.state
    for customer, state in states.items():  # and every timer to its end
        while state.due is not None:
            outcome = decide(state, Tick(customer), state.due, policy)
            made += outcome.decisions + outcome.notifications
            state = outcome.state
    assert sum(isinstance(m, NotificationRequest) for m in made) > 20
    for model in made:
        again = type(model).model_validate(model.model_dump())
        assert again == model
        assert again.model_dump_json() == model.model_dump_json()
