"""What changes between two policy sets: in the rules, and in what they decide.

`clarion policy diff` prints both before a deploy. A change in the rules is
easy to read and hard to judge ("the second reminder moves from 3d to 5d");
the decisions it changes, for the same events, are what a customer and a
regulator will see. Both are computed here, from loaded sets and finished
replays, so the command only reads files and prints.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from policies.engine import Tick, decide
from policies.model import PolicySet
from policies.state import CustomerState
from schemas.decisions import Decision


@dataclass(frozen=True, slots=True)
class RuleChange:
    path: str
    """Where, as the YAML nests it: `escalations.missed-payment.ladders.standard.steps.2.after`."""
    old: str | None
    """The value before, written as in the YAML; None when the new set adds it."""
    new: str | None
    """The value after; None when the new set removes it."""


def rule_changes(old: PolicySet, new: PolicySet) -> list[RuleChange]:
    """Every value that differs, by path. Ladders are matched by name, steps and caps by
    position (a step inserted early shows every later one as changed)."""
    found: list[RuleChange] = []
    _walk(_tree(old), _tree(new), "", found)
    return found


def template_changes(old: PolicySet, new: PolicySet) -> list[RuleChange]:
    """Each template file the sets can send whose words differ, by path (`templates/x/sms.en.j2`),
    with the digests of its content before and after (None where absent)."""
    paths = sorted(set(old.templates) | set(new.templates))
    return [
        RuleChange(f"templates/{p}", old.templates.get(p), new.templates.get(p))
        for p in paths
        if old.templates.get(p) != new.templates.get(p)
    ]


def _tree(policy: PolicySet) -> dict[str, Any]:
    tree = policy.model_dump(mode="json", exclude={"version", "templates"})
    for escalation in tree["escalations"].values():
        escalation["ladders"] = {ladder.pop("name"): ladder for ladder in escalation["ladders"]}
    return tree


def _walk(old: Any, new: Any, path: str, found: list[RuleChange]) -> None:
    if old == new:
        return
    if _is_duration(old) or _is_duration(new) or type(old) is not type(new):
        found.append(RuleChange(path, _shown(old), _shown(new)))
    elif isinstance(old, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                found.append(RuleChange(where, _shown(old[key]), None))
            elif key not in old:
                found.append(RuleChange(where, None, _shown(new[key])))
            else:
                _walk(old[key], new[key], where, found)
    elif isinstance(old, list) and all(isinstance(v, dict) for v in [*old, *new]):
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                found.append(RuleChange(f"{path}.{i}", _shown(old[i]), None))
            elif i >= len(old):
                found.append(RuleChange(f"{path}.{i}", None, _shown(new[i])))
            else:
                _walk(old[i], new[i], f"{path}.{i}", found)
    else:
        found.append(RuleChange(path, _shown(old), _shown(new)))


def _is_duration(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"amount", "unit"}


def _shown(value: Any) -> str:
    """A value as an ops team would write it: `3d`, `[sms, email]`, `{start: 08:00, ...}`."""
    if _is_duration(value):
        return f"{value['amount']}{value['unit']}"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # numbers, true/false, null


@dataclass(frozen=True, slots=True)
class DecisionChange:
    side: Literal["old", "new"]
    """Which set alone makes this decision."""
    decision: Decision


_Key = tuple[Any, ...]


def decision_changes(old: Iterable[Decision], new: Iterable[Decision]) -> list[DecisionChange]:
    """The decisions only one set makes, in time order (the old set's first at an instant).

    Compared on what a customer or a regulator sees: when, for whom, on which case
    and step, what was done, on which channel with which template, why, and until
    when. Not the policy version, which always differs, nor the free-text detail.
    """
    old, new = list(old), list(new)
    only_old = Counter(map(_key, old)) - Counter(map(_key, new))
    only_new = Counter(map(_key, new)) - Counter(map(_key, old))
    changes = [
        *_take(old, only_old, "old"),
        *_take(new, only_new, "new"),
    ]
    changes.sort(key=lambda c: (c.decision.at, c.decision.customer_id, c.side == "new"))
    return changes


def _key(d: Decision) -> _Key:
    return (
        d.at,
        d.customer_id,
        d.case_id,
        d.step,
        d.action,
        d.channel,
        d.template,
        d.reason,
        d.until,
    )


def _take(
    decisions: Sequence[Decision], counts: Counter[_Key], side: Literal["old", "new"]
) -> list[DecisionChange]:
    left = Counter(counts)
    taken: list[DecisionChange] = []
    for decision in decisions:
        key = _key(decision)
        if left[key] > 0:
            left[key] -= 1
            taken.append(DecisionChange(side, decision))
    return taken


def first_instant(changes: Sequence[DecisionChange]) -> datetime | None:
    """When the two sets first part ways (None: they never do)."""
    return min((c.decision.at for c in changes), default=None)


@dataclass(frozen=True, slots=True)
class OpenCase:
    """A case open when the new set comes in force, and what becomes of it."""

    customer_id: str
    case_id: str
    ladder: str
    steps_left: int
    moves: str | None
    """None: it keeps its ladder (of the old set) until it closes; else where it goes."""


def open_cases(
    states: Iterable[CustomerState], at: datetime, old: PolicySet, new: PolicySet
) -> list[OpenCase]:
    """Each case open at `at` under `old`, as the engine will treat it once `new` is in
    force: the engine itself is asked (a clock message at `at`), so this says what the
    workers will do, `on_policy_change` and step names included."""
    found: list[OpenCase] = []
    for state in states:
        if not state.cases:
            continue
        outcome = decide(state, Tick(state.customer_id), at, new, {old.version: old}.get)
        moved = {
            d.case_id: d.detail
            for d in outcome.decisions
            if d.action == "switched" and d.reason == "policy_change"
        }
        for case in state.cases.values():
            found.append(
                OpenCase(
                    state.customer_id,
                    case.case_id,
                    case.ladder,
                    len(case.pending),
                    moved.get(case.case_id),
                )
            )
    return sorted(found, key=lambda c: (c.customer_id, c.case_id))
