"""The validation notice as a required notice of its own (issue 27, part 4), on the bundled set.

Reg F 1006.22(f)(3) keeps debt collection email off a work address the customer has
not consented to, and 1006.34 wants the validation notice all the same: when no
channel may carry it, it goes as a letter, on the ledger.
"""

from __future__ import annotations

from datetime import timedelta

from policies.engine import decide
from policies.loader import load_directory
from policies.state import CustomerState
from tests.conftest import POLICIES
from tests.unit.test_engine import FRI_0900_CHI, event

POLICY = load_directory(POLICIES)
WORK_ONLY = {
    "phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}],
    "emails": [{"address": "ana@bank-employer.example", "type": "work"}],
    "time_zones": ["America/Chicago"],
}


def test_a_work_email_only_customer_gets_the_validation_notice_as_a_letter() -> None:
    profile = event("customer.profile.updated", FRI_0900_CHI - timedelta(days=1), None, **WORK_ONLY)
    state = decide(CustomerState(customer_id="C-1"), profile, profile.occurred_at, POLICY).state
    missed = event("payment.missed", FRI_0900_CHI, amount_due="80.00")
    out = decide(state, missed, FRI_0900_CHI, POLICY)
    rows = [(d.escalation, d.action, d.reason, d.channel) for d in out.decisions]
    assert ("validation-notice", "handoff", "letter", None) in rows
    assert not any(d.recipient == "ana@bank-employer.example" for d in out.decisions)
    # The reminder (no preferred channel, email only) is held off the work address too.
    assert ("missed-payment", "suppressed", "no_consent", "email") in rows


def test_a_work_email_with_consent_carries_it() -> None:
    consented = {**WORK_ONLY, "emails": [{**WORK_ONLY["emails"][0], "consented": True}]}
    profile = event("customer.profile.updated", FRI_0900_CHI - timedelta(days=1), None, **consented)
    state = decide(CustomerState(customer_id="C-1"), profile, profile.occurred_at, POLICY).state
    out = decide(state, event("payment.missed", FRI_0900_CHI), FRI_0900_CHI, POLICY)
    notice = [
        d for d in out.decisions if d.escalation == "validation-notice" and d.action == "sent"
    ]
    assert [(d.channel, d.recipient) for d in notice] == [("email", "ana@bank-employer.example")]
