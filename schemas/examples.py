"""One valid `data` payload per event type.

For `clarion policy check`, which renders every template with them, and for the
tests. A test checks that every type has one and that it validates.
"""

from __future__ import annotations

from typing import Any

EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "payment.due_soon": {"amount_due": "80.00", "currency": "USD", "due_date": "2026-12-01"},
    "payment.missed": {
        "amount_due": "125.40",
        "currency": "USD",
        "due_date": "2026-11-15",
        "days_past_due": 5,
        "minimum_payment": "25.00",
    },
    "balance.overdue": {"amount_overdue": "300.10", "currency": "USD", "days_past_due": 35},
    "payment.received": {"amount": "125.40", "currency": "USD"},
    "payment_plan.agreed": {"plan_id": "PP-1", "first_installment_date": "2026-12-10"},
    "hardship.reported": {"reason": "job loss"},
    "dispute.opened": {"reference": "D-1"},
    "dispute.resolved": {"reference": "D-1"},
    "cease.requested": {"scope": "all", "received_via": "letter"},
    "transaction.large": {
        "transaction_id": "T-1",
        "amount": "3200.00",
        "currency": "USD",
        "merchant": "Electronics Ltd",
        "country": "GB",
    },
    "transaction.confirmed": {"transaction_id": "T-1", "via": "sms_reply"},
    "transaction.rejected": {"transaction_id": "T-1", "via": "sms_reply"},
    "fraud.suspected": {"transaction_id": "T-2", "reason": "card used in two countries"},
    "address.changed": {"previous": "1 *** St", "current": "9 *** Ave", "via": "online"},
    "contact.changed": {
        "field": "email",
        "previous": "old@example.com",
        "current": "new@example.com",
    },
    "password.reset_requested": {"via": "web", "ip_country": "US"},
    "policy.changed": {
        "policy": "fee-schedule",
        "effective_date": "2027-01-01",
        "summary_url": "https://bank.example/terms/2027",
    },
    "offer.available": {"offer_id": "O-1", "summary": "Travel card"},
    "customer.profile.updated": {
        "phones": [{"number": "+13125550101", "type": "mobile", "sms_consent": True}],
        "emails": [{"address": "ana@example.com", "type": "personal"}],
        "time_zones": ["America/Chicago"],
        "locale": "es",
        "segment": "retail",
        "postal_region": "IL",
    },
    "customer.preferences.updated": {
        "preferred_channel": "sms",
        "channels": {"sms": True, "email": True, "voice": False},
        "categories": {"marketing": True},
        "quiet_hours": {"start": "20:00", "end": "09:00"},
        "locale": "es",
    },
    "consent.changed": {
        "channel": "sms",
        "address": "+13125550101",
        "status": "revoked",
        "source": "sms_keyword",
    },
    "reply.received": {"channel": "sms", "text": "Can I pay on Friday?", "case_id": None},
}
