"""Decisions for people (a timeline per customer) and for programs (one JSON row each).

`clarion policy simulate` and `clarion demo` print the same two formats.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from schemas.dead_letters import DeadLetter
from schemas.decisions import Decision
from streams.runtime.logging import mask


def render(
    decisions: Iterable[Decision],
    zones: Mapping[str, list[str]] | None = None,
    dead_letters: Iterable[DeadLetter] = (),
) -> str:
    zones = zones or {}
    by_customer: dict[str, list[Decision]] = defaultdict(list)
    for decision in decisions:
        by_customer[decision.customer_id].append(decision)
    lines: list[str] = []
    for customer in sorted(by_customer):
        zone = next(iter(zones.get(customer) or []), None)
        lines.append(f"{customer}  ({zone or 'no known time zone'})")
        # A stable sort: within one instant the engine's own order (it opened, then sent) stays.
        for d in sorted(by_customer[customer], key=lambda d: d.at):
            lines.append("  " + line(d, zone))
        lines.append("")
    letters = list(dead_letters)
    if letters:
        lines.append(f"dead-letters ({len(letters)})")
        lines += [f"  {refused(letter)}" for letter in letters]
        lines.append("")
    return "\n".join(lines)


def refused(letter: DeadLetter) -> str:
    """One dead letter, for people: where it was, its code and why."""
    return f"{letter.topic}[{letter.partition}]@{letter.offset}  {letter.code:<26} {letter.reason}"


def row(decision: Decision) -> dict[str, Any]:
    """One decision as the simulator's JSONL prints it (recipients masked)."""
    dumped = decision.model_dump(mode="json")
    return {
        "at": dumped["at"],
        "customer_id": decision.customer_id,
        "account_id": decision.account_id,
        "case_id": decision.case_id,
        "escalation": decision.escalation,
        "ladder": decision.ladder,
        "step": decision.step,
        "action": decision.action,
        "channel": decision.channel,
        "template": decision.template,
        "reason": decision.reason,
        "until": dumped["until"],
        "recipient": mask(decision.recipient) if decision.recipient else None,
        "notification_id": decision.notification_id,
        "cause_event_id": decision.cause_event_id,
        "detail": decision.detail,
        "policy_version": decision.policy_version,
        "guards_version": decision.guards_version,
        "experiment": decision.experiment,
        "arm": decision.arm,
    }


def line(d: Decision, zone: str | None) -> str:
    """One decision, for people: its instant (UTC and local), action and what it concerns."""
    when = _stamp(d.at, zone)
    what = d.action
    if d.action in ("sent", "dispatched", "failed"):
        tail = f"{d.channel:<5} {d.template}  -> {mask(d.recipient or '')}"
        if d.action == "failed":
            tail += f"  ({d.reason}: {d.detail})"
    elif d.action == "opened":
        tail = f"{d.escalation} / {d.ladder}  (by {d.reason})"
    elif d.action == "deferred":
        until = _stamp(d.until, zone) if d.until else "?"
        tail = f"{d.channel or ''} {d.template or ''} until {until}  ({d.reason})"
    elif d.action == "suppressed":
        tail = f"{d.template or d.escalation}  ({d.reason}: {d.detail})"
    elif d.action == "consent":
        tail = f"{d.channel:<5} {d.reason}  -> {mask(d.recipient or '')}  ({mask(d.detail or '')})"
    elif d.action == "repaired":
        left_out = len(d.extra.get("dropped", []))
        tail = f"state  ({d.reason}: {d.detail}; {left_out} part(s) left out)"
    else:
        tail = f"{d.escalation or d.channel or ''}  ({d.reason})"
    if d.guards_version is not None:  # a case kept its ladder across a policy change
        tail += f"  [ladder of {d.policy_version}, guards of {d.guards_version}]"
    return f"{when}  {what:<10} {tail}"


def _stamp(at: datetime, zone: str | None) -> str:
    utc = at.strftime("%Y-%m-%d %H:%MZ")
    if zone is None:
        return utc
    local = at.astimezone(ZoneInfo(zone))
    return f"{utc}  {local.strftime('%a %H:%M %Z'):<13}"
