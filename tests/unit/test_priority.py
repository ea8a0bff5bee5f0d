"""Priority in the policy language (issue 23, part 1): each request says how soon it must go."""

from __future__ import annotations

import pytest

from policies.engine import decide
from policies.loader import PolicyLoadError, PolicySource, load_directory, load_sources
from tests.conftest import POLICIES
from tests.unit.test_engine import FRI_0900_CHI, GUARDS, ONE_SMS, customer, event

BUNDLED = load_directory(POLICIES)


@pytest.mark.parametrize(
    ("trigger", "priority"),
    [
        ("fraud.suspected", "urgent"),  # its category's
        ("payment.due_soon", "bulk"),  # the escalation's own, over its category's normal
        ("payment.missed", "normal"),
    ],
)
def test_each_request_carries_its_escalations_or_its_categorys_priority(
    trigger: str, priority: str
) -> None:
    out = decide(customer(BUNDLED), event(trigger, FRI_0900_CHI), FRI_0900_CHI, BUNDLED)
    assert out.notifications, trigger
    assert {n.priority for n in out.notifications} == {priority}


def test_an_unknown_priority_is_refused_where_it_is_written() -> None:
    sources = [
        PolicySource("00.yaml", GUARDS),
        PolicySource(
            "10.yaml",
            ONE_SMS.replace("category: collections", "category: collections\n    priority: soon"),
        ),
    ]
    with pytest.raises(PolicyLoadError) as info:
        load_sources(sources)
    [error] = [str(e) for e in info.value.errors]
    assert error.startswith("10.yaml:7:15: escalations.nudge.priority: Input should be")
    assert "'urgent', 'normal' or 'bulk'" in error
