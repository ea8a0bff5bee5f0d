"""The escalation engine: ``(state, input, now, policy) -> (state, decisions, notifications)``.

Pure: no clock, no I/O. The Faust agents and the offline simulator both call
`decide`, so what a simulation shows is what production does.

This is the foundation slice: it keeps the customer's profile, preferences
and consents; opens a case for a triggering event; chooses the ladder; runs
every step due at opening (``after: 0``) through category and channel
resolution; and closes cases on their ``stop_on`` events. Later steps are
recorded in the case (``next_step``) for the timers to come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from policies.conditions import holds
from policies.contacts import Blocked, Target, candidates, category_block, resolve
from policies.model import Escalation, Ladder, PolicySet, Step
from policies.state import Case, ConsentRecord, CustomerState
from policies.windows import next_allowed
from schemas.customer import ConsentChange, Preferences, Profile
from schemas.decisions import Action, Decision
from schemas.events import Event
from schemas.notifications import NotificationRequest, notification_id


@dataclass(frozen=True, slots=True)
class Outcome:
    state: CustomerState
    decisions: list[Decision] = field(default_factory=list)
    """Ledger rows to record now."""
    notifications: list[NotificationRequest] = field(default_factory=list)
    """Messages to send; each becomes a `sent` row once its channel accepts it."""


def decide(state: CustomerState, event: Event, now: datetime, policy: PolicySet) -> Outcome:
    """Apply one account event for the customer `state` belongs to."""
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    state = _remember(state, event, now)
    out = _Collector(policy, now, event)
    state = _stop_cases(state, event, policy, out)
    for name, esc in policy.triggered_by(event.type):
        state = _open_case(state, name, esc, event, out)
    return Outcome(state, out.decisions, out.notifications)


def _remember(state: CustomerState, event: Event, now: datetime) -> CustomerState:
    data = event.data
    if isinstance(data, Profile):
        return state.model_copy(update={"profile": data})
    if isinstance(data, Preferences):
        return state.model_copy(update={"preferences": data.merged_into(state.preferences)})
    if isinstance(data, ConsentChange):
        record = ConsentRecord(
            channel=data.channel,
            address=data.address,
            status=data.status,
            source=data.source,
            at=event.occurred_at,
        )
        key = CustomerState.consent_key(data.channel, data.address)
        return state.model_copy(update={"consents": {**state.consents, key: record}})
    return state


class _Collector:
    def __init__(self, policy: PolicySet, now: datetime, event: Event) -> None:
        self.policy, self.now, self.event = policy, now, event
        self.decisions: list[Decision] = []
        self.notifications: list[NotificationRequest] = []

    def record(self, action: Action, reason: str, case: Case | None, **fields: Any) -> None:
        if case is not None:
            fields = {
                "account_id": case.account_id,
                "case_id": case.case_id,
                "escalation": case.escalation,
                "ladder": case.ladder,
                **fields,
            }
        self.decisions.append(
            Decision(
                at=self.now,
                customer_id=self.event.customer_id,
                action=action,
                reason=reason,
                cause_event_id=self.event.event_id,
                policy_version=self.policy.version,
                **fields,
            )
        )


def _stop_cases(
    state: CustomerState, event: Event, policy: PolicySet, out: _Collector
) -> CustomerState:
    remaining = dict(state.cases)
    for case_id, case in state.cases.items():
        esc = policy.escalations.get(case.escalation)
        if esc is None or event.type not in esc.stop_on:
            continue
        if event.account_id is not None and case.account_id not in (None, event.account_id):
            continue
        out.record(
            "stopped", event.type, case, detail=f"{event.type} ({event.event_id}) stops this case"
        )
        del remaining[case_id]
    return state.model_copy(update={"cases": remaining})


def _open_case(
    state: CustomerState, name: str, esc: Escalation, event: Event, out: _Collector
) -> CustomerState:
    scope = event.account_id if esc.case == "account" and event.account_id else event.customer_id
    open_now = [
        c
        for c in state.cases.values()
        if c.escalation == name and (c.account_id or state.customer_id) == scope
    ]
    cases = dict(state.cases)
    if open_now and esc.on_retrigger == "keep":
        return state
    for old in open_now:
        out.record(
            "closed", "restarted", old, detail=f"{event.type} ({event.event_id}) restarts it"
        )
        del cases[old.case_id]

    facts = _facts(state, event, None)
    ladder = next((lad for lad in _openable(esc) if holds(lad.when, facts)), None)
    case = Case(
        case_id=f"{name}/{scope}/{event.event_id}",
        escalation=name,
        ladder=ladder.name if ladder else "-",
        account_id=event.account_id,
        opened_at=event.occurred_at,
        cause_event_id=event.event_id,
        data=event.data.model_dump(mode="json"),
    )
    if ladder is None:
        out.record(
            "suppressed", "no_ladder", case, detail="no ladder's `when` holds for this event"
        )
        return state
    out.record("opened", event.type, case)
    index = 0
    while index < len(ladder.steps) and ladder.steps[index].after.fixed == timedelta(0):
        _run_step(state, esc, ladder, index, case, out)
        index += 1
    if index < len(ladder.steps):
        cases[case.case_id] = case.model_copy(update={"next_step": index})
    else:
        out.record("closed", "ladder_complete", case)
    return state.model_copy(update={"cases": cases})


def _openable(esc: Escalation) -> list[Ladder]:
    """Ladders opening may choose: up to and including the first without `when`."""
    chosen: list[Ladder] = []
    for ladder in esc.ladders:
        chosen.append(ladder)
        if ladder.when is None:
            break
    return chosen


def _facts(state: CustomerState, event: Event, case: Case | None) -> dict[str, Any]:
    customer = {
        **state.profile.model_dump(mode="json"),
        **state.preferences.model_dump(mode="json", exclude_none=True),
    }
    customer["email"] = state.profile.emails[0].address if state.profile.emails else None
    customer["phone"] = state.profile.phones[0].number if state.profile.phones else None
    return {
        "data": event.data.model_dump(mode="json"),
        "customer": customer,
        "case": case.model_dump(mode="json") if case else {},
    }


def _run_step(
    state: CustomerState, esc: Escalation, ladder: Ladder, index: int, case: Case, out: _Collector
) -> None:
    step: Step = ladder.steps[index]
    if not holds(step.when, _facts(state, out.event, case)):
        out.record(
            "suppressed",
            "step_condition",
            case,
            step=index,
            detail="the step's `when` does not hold",
        )
        return
    if step.handoff is not None:
        out.record("handoff", step.handoff, case, step=index)
        return
    send = step.send
    assert send is not None
    category = out.policy.categories[esc.category]
    blocked = category_block(state, esc.category, category)
    if blocked is not None:
        out.record(
            "suppressed",
            blocked.reason,
            case,
            step=index,
            template=send.template,
            detail=blocked.detail,
        )
        return
    targets: list[Target] = []
    for group in candidates(state, send):
        found = resolve(state, group, esc.category, category)
        if isinstance(found, Blocked):
            out.record(
                "suppressed",
                found.reason,
                case,
                step=index,
                channel=found.channel,
                template=send.template,
                detail=found.detail,
            )
        elif "current" in send.to:
            targets.append(found)
    if "previous" in send.to:
        targets.extend(_previous_contact(out.event))
    locale = state.preferences.locale or state.profile.locale or out.policy.default_locale
    if category.contact_windows == "enforce":
        targets = _inside_windows(state, targets, index, send.template, case, out)
    for target in targets:
        out.notifications.append(
            NotificationRequest(
                notification_id=notification_id(
                    state.customer_id, case.case_id, index, target.channel, target.recipient
                ),
                customer_id=state.customer_id,
                account_id=case.account_id,
                case_id=case.case_id,
                escalation=case.escalation,
                ladder=case.ladder,
                step=index,
                category=esc.category,
                channel=target.channel,
                recipient=target.recipient,
                template=send.template,
                locale=locale,
                requested_at=out.now,
                policy_version=out.policy.version,
                cause_event_id=out.event.event_id,
                context={
                    "data": case.data,
                    "account_id": case.account_id,
                    "customer": {"name": state.profile.name, "locale": locale},
                },
            )
        )


def _inside_windows(
    state: CustomerState,
    targets: list[Target],
    index: int,
    template: str,
    case: Case,
    out: _Collector,
) -> list[Target]:
    """Targets allowed now; each other one is recorded as deferred to its next allowed instant.

    Timers that fire deferred steps come with the durable-timer work (issue 4):
    until then a deferred step is recorded in the ledger and in `next_step`.
    """
    policy = out.policy
    zones = state.profile.time_zones or policy.time_zone_fallback
    quiet = state.preferences.quiet_hours
    ready: list[Target] = []
    for target in targets:
        window = policy.contact_windows.get(target.channel, policy.contact_windows["default"])
        when = next_allowed(out.now, zones, window, quiet)
        if when == out.now:
            ready.append(target)
        elif when is None:
            out.record(
                "suppressed",
                "contact_window",
                case,
                step=index,
                channel=target.channel,
                template=template,
                detail="no allowed instant in the next 15 days",
            )
        else:
            out.record(
                "deferred",
                "contact_window",
                case,
                step=index,
                channel=target.channel,
                template=template,
                until=when,
                detail=f"outside the {target.channel} window in {', '.join(zones)}",
            )
    return ready


def _previous_contact(event: Event) -> list[Target]:
    """The contact point a `contact.changed` replaced: it is told too."""
    data = event.data.model_dump(mode="json")
    previous = data.get("previous")
    if event.type != "contact.changed" or not isinstance(previous, str):
        return []
    return [Target("email" if data.get("field") == "email" else "sms", previous)]
