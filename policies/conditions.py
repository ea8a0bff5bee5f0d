"""Evaluating policy conditions: data, never code.

A path that is absent fails every operator but `exists: false`; money and
numbers compare as decimals, so "1000.00" >= 1000 holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from policies.model import Condition, Operator

_MISSING = object()


def holds(condition: Condition | None, facts: Mapping[str, Any]) -> bool:
    """True when every test holds; `facts` has the roots `data`, `customer` and `case`."""
    if not condition:
        return True
    return all(_test(lookup(facts, path), tests) for path, tests in condition.items())


def lookup(facts: Mapping[str, Any], path: str) -> Any:
    current: Any = facts
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return _MISSING
    return current


def _test(value: Any, tests: Mapping[Operator, Any]) -> bool:
    ((op, operand),) = tests.items()
    present = value is not _MISSING and value is not None and value != []
    if op == "exists":
        return present is bool(operand)
    if not present:
        return False
    if op in ("in", "not_in"):
        found = any(_eq(value, item) for item in operand)
        return found if op == "in" else not found
    if op in ("eq", "ne"):
        return _eq(value, operand) is (op == "eq")
    left, right = _number(value), _number(operand)
    if left is None or right is None:
        return False
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _eq(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return bool(a == b)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None
