"""An operator's repair of an unreadable state, checked where the state is kept.

`clarion state repair` proposes the state (policies/repair.py) and sends it on
`state-repairs`; the intake worker that owns the customer applies it, because
only that worker writes the customer's state. It is applied only over the very
value it was made for (by SHA-256), and only while that value still does not
read: a repair never overwrites a state that works, so it cannot be used to
erase an opt-out, and a replayed repair changes nothing. A repair refused is
dead-lettered (`invalid_repair`) with the reason; one applied is a `repaired`
row on the ledger, naming who repaired it, why, and what was left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pydantic import ValidationError

from policies.repair import reads_back
from policies.state import CustomerState
from schemas.decisions import Decision
from schemas.intake import field_errors
from schemas.repairs import StateRepair
from streams.intake import stored


@dataclass(frozen=True, slots=True)
class Accepted:
    repair: StateRepair
    state: CustomerState


def check(value: bytes, key: bytes | None, current: object) -> Accepted | str:
    """The repair to apply, or why it is refused, given the customer's stored `current`."""
    try:
        repair = StateRepair.model_validate(json.loads(value))
    except RecursionError:
        return "not a state repair: nested too deep to read"
    except UnicodeDecodeError:
        return "not a state repair: not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"not a state repair: not JSON ({exc.msg} at column {exc.colno})"
    except ValidationError as exc:
        return f"not a state repair: {field_errors(exc)}"
    if key != repair.customer_id.encode():
        return f"the key is not the customer id {repair.customer_id!r}"
    if stored.unreadable(current) is None:
        return (
            f"customer {repair.customer_id!r} has no unreadable state (it reads, it was "
            "repaired already, or none is stored); a repair replaces only one that does not read"
        )
    digest = hashlib.sha256(current if isinstance(current, bytes) else b"").hexdigest()
    if digest != repair.replaces_sha256:
        return (
            f"customer {repair.customer_id!r}'s stored state is not the one this repair was "
            "made for; run `clarion state repair` again"
        )
    try:
        state = CustomerState.model_validate(repair.state)
    except ValidationError as exc:
        return f"the repaired state does not read: {field_errors(exc)}"
    if state.customer_id != repair.customer_id:
        return f"the repaired state is customer {state.customer_id!r}'s"
    problem = reads_back(state)
    if problem is not None:
        return f"the repaired state would not read back: {problem}"
    return Accepted(repair, state)


def decision(repair: StateRepair, policy_version: str) -> Decision:
    """The ledger's row for a repair applied."""
    return Decision(
        at=repair.requested_at,
        customer_id=repair.customer_id,
        action="repaired",
        reason="state_repaired",
        policy_version=policy_version,
        detail=f"{repair.operator}: {repair.reason}",
        extra={
            "repair_id": repair.repair_id,
            "operator": repair.operator,
            "replaced_sha256": repair.replaces_sha256,
            "dropped": repair.dropped,
        },
    )
