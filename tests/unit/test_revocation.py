"""A revocation by reply, from the words to the ledger (issue 27, part 1).

The reply is resolved against the number's marks (streams/dispatch/replies.py),
and the `consent.changed` it becomes goes through the engine: consent revoked at
once, the words on the ledger, an agent for a reply that may be one, and the one
confirmation text the FCC allows, within five minutes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from policies.engine import Tick, decide
from policies.loader import PolicyLoadError, PolicySource, load_sources
from policies.model import PolicySet
from policies.state import CustomerState
from schemas.events import Event, event_from_dict
from streams.dispatch.replies import remember, reply_message, resolve
from tests.unit.test_engine import FRI_0900_CHI, GUARDS, ONE_SMS, customer, event, policy_of

NUMBER = "+13125550101"  # the sample profile's mobile
TWO_SMS = ONE_SMS.replace(
    "template: t, fallback: [email]}}",
    "template: t, fallback: [email]}}\n          - {after: 1d, send: {channel: sms, template: t}}",
)
CONFIRMING = GUARDS.replace("default_locale: en", "default_locale: en\nrevocation_confirmation: ok")


def _mark(cid: str, case: str, at: str) -> dict[str, Any]:
    return {"kind": "sent", "number": NUMBER, "customer_id": cid, "account_id": "A-1",
            "case_id": case, "transaction_id": None, "at": at}  # fmt: skip


def replied(
    body: str, *customers: str, minutes_late: int = 0, case: str | None = None
) -> list[Event]:
    """What `body` from NUMBER becomes, for each customer messaged there (the last one last)."""
    marks: list[dict[str, Any]] = []
    for n, cid in enumerate(customers):
        mark = _mark(cid, case or f"nudge/A-1/e{n}", f"2026-11-20T1{n}:00:00+00:00")
        marks = remember(marks, mark)
    at = FRI_0900_CHI - timedelta(minutes=minutes_late)
    return [event_from_dict(e) for _, e in resolve(marks, reply_message(NUMBER, body, "SM1", at))]


def opened(policy: PolicySet) -> CustomerState:
    return decide(
        customer(policy), event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, policy
    ).state


def test_a_shared_number_revokes_for_everyone_and_is_confirmed_once() -> None:
    events = replied("Please stop texting me!", "C-2", "C-1")
    assert [(e.customer_id, e.data.status, e.data.certain, e.data.confirm) for e in events] == [
        ("C-2", "revoked", True, False),
        ("C-1", "revoked", True, True),
    ]
    assert events[1].data.reply == "Please stop texting me!"
    assert events[1].data.case_id == "nudge/A-1/e1"


def test_a_certain_revocation_is_on_the_ledger_with_the_words_and_confirmed() -> None:
    policy = policy_of(ONE_SMS, CONFIRMING)
    [stop] = [e for e in replied("Opt out", "C-1")]
    out = decide(opened(policy), stop, FRI_0900_CHI + timedelta(minutes=1), policy)
    rows = [(d.action, d.reason, d.channel, d.recipient) for d in out.decisions]
    assert rows == [
        ("consent", "revoked", "sms", NUMBER),
        ("sent", "revocation_confirmation", "sms", NUMBER),
    ]
    assert out.decisions[0].detail == "sms consent revoked by sms_keyword: Opt out"
    assert out.state.consents[f"sms:{NUMBER}"].status == "revoked"
    [confirmation] = out.notifications
    assert (confirmation.template, confirmation.recipient, confirmation.category) == (
        "ok",
        NUMBER,
        "consent",
    )
    assert confirmation.notification_id == out.decisions[1].notification_id
    assert not any(c.channel == "sms" for c in out.state.contacts[1:]), "no cap counts it"
    # Nothing more by SMS: the next step on this number goes by email.
    later = decide(out.state, event("payment.missed", FRI_0900_CHI, "A-2"), FRI_0900_CHI, policy)
    assert [(d.action, d.channel) for d in later.decisions if d.action == "sent"] == [
        ("sent", "email")
    ]


def test_a_possible_revocation_revokes_too_and_goes_to_an_agent_never_only_filed() -> None:
    policy = policy_of(TWO_SMS, CONFIRMING)
    state = opened(policy)
    [case] = state.cases
    [maybe] = replied("I'll pay at the end of the month", "C-1", case=case)
    assert (maybe.data.source, maybe.data.certain, maybe.data.confirm) == (
        "sms_reply",
        False,
        False,
    )
    out = decide(state, maybe, FRI_0900_CHI, policy)
    assert [(d.action, d.reason) for d in out.decisions] == [
        ("consent", "revoked"),
        ("handoff", "possible_revocation"),
    ]
    assert "end of the month" in (out.decisions[1].detail or "")
    assert out.decisions[1].case_id == case, "the agent sees the case it answered"
    assert out.state.consents[f"sms:{NUMBER}"].status == "revoked"
    assert not out.notifications, "no confirmation for a reply that may not be one"


def test_no_confirmation_after_five_minutes_and_none_without_a_template() -> None:
    policy = policy_of(ONE_SMS, CONFIRMING)
    [stop] = replied("STOP", "C-1", minutes_late=6)
    out = decide(opened(policy), stop, FRI_0900_CHI, policy)
    assert [(d.action, d.reason) for d in out.decisions] == [
        ("consent", "revoked"),
        ("suppressed", "confirmation_too_late"),
    ]
    assert not out.notifications
    plain = policy_of(ONE_SMS)
    [stop] = replied("STOP", "C-1")
    out = decide(opened(plain), stop, FRI_0900_CHI, plain)
    assert [(d.action, d.reason) for d in out.decisions] == [("consent", "revoked")]


def test_start_restores_consent_without_a_confirmation() -> None:
    policy = policy_of(ONE_SMS, CONFIRMING)
    [stop] = replied("stop", "C-1")
    state = decide(opened(policy), stop, FRI_0900_CHI, policy).state
    [start] = replied("START", "C-1")
    out = decide(state, start, FRI_0900_CHI + timedelta(minutes=2), policy)
    assert [(d.action, d.reason) for d in out.decisions] == [("consent", "granted")]
    assert out.state.consents[f"sms:{NUMBER}"].status == "granted"
    tick = decide(out.state, Tick("C-1"), FRI_0900_CHI + timedelta(minutes=3), policy)
    assert not tick.decisions


def test_the_confirmation_template_must_exist() -> None:
    sources = [PolicySource("00.yaml", CONFIRMING), PolicySource("10.yaml", ONE_SMS)]
    found = frozenset({("t", "sms", "en"), ("t", "email", "en")})
    with pytest.raises(PolicyLoadError, match="revocation_confirmation: unknown template 'ok'"):
        load_sources(sources, found)
    assert load_sources(sources, found | {("ok", "sms", "en")}).revocation_confirmation == "ok"
