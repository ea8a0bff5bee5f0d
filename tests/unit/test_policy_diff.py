"""`policies.diff`: the rules that change between two sets, and the decisions that do."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from policies.diff import (
    RuleChange,
    decision_changes,
    first_instant,
    rule_changes,
    template_changes,
)
from policies.loader import PolicySource, load_directory, load_sources
from policies.model import PolicySet
from policies.simulator import simulate
from schemas.decisions import Decision
from schemas.events import event_from_dict
from tests.conftest import POLICIES, STORIES


def changed(**files: tuple[str, str]) -> PolicySet:
    """The reference set with `old` replaced by `new` in the named files."""
    texts = {p.name: p.read_text() for p in sorted(POLICIES.glob("*.yaml"))}
    for name, (old, new) in files.items():
        name = name.replace("_", "-") + ".yaml"
        assert old in texts[name], (name, old)
        texts[name] = texts[name].replace(old, new, 1)
    return load_sources([PolicySource(name, text) for name, text in texts.items()])


OVERDUE = "- {after: 3d, send: {channel: sms, template: payment-overdue"


def test_the_same_set_has_no_changes(policy: PolicySet) -> None:
    assert rule_changes(policy, policy) == []
    assert decision_changes([], []) == []


def test_a_step_moved_is_one_change_at_its_path(policy: PolicySet) -> None:
    later = changed(**{"10_collections": (OVERDUE, OVERDUE.replace("3d", "5d"))})
    assert rule_changes(policy, later) == [
        RuleChange("escalations.missed-payment.ladders.standard.steps.1.after", "3d", "5d")
    ]


def test_ladders_match_by_name_and_values_read_as_in_the_yaml(policy: PolicySet) -> None:
    new = changed(
        **{
            "00_guards": ("{channel: voice, max: 7, per: 7d", "{channel: voice, max: 5, per: 7d"),
            "10_collections": (
                "stop_on: [payment.received, payment_plan.agreed, cease.requested]",
                "stop_on: [payment.received, cease.requested]",
            ),
        }
    )
    found = {c.path: (c.old, c.new) for c in rule_changes(policy, new)}
    assert found == {
        "frequency_caps.0.max": ("7", "5"),
        "escalations.missed-payment.stop_on": (
            "[payment.received, payment_plan.agreed, cease.requested]",
            "[payment.received, cease.requested]",
        ),
    }


def test_a_condition_set_where_there_was_none_reads_null(policy: PolicySet) -> None:
    step = "- {after: 14d, send: {channel: email, template: final-notice}}"
    guarded = step.replace("}}", "}, when: {data.amount_due: {gte: 50}}}")
    new = changed(**{"10_collections": (step, guarded)})
    assert rule_changes(policy, new) == [
        RuleChange(
            "escalations.missed-payment.ladders.standard.steps.3.when",
            "null",
            "{data.amount_due: {gte: 50}}",
        )
    ]


def test_an_escalation_added_or_removed_is_named_whole(policy: PolicySet) -> None:
    text = (POLICIES / "20-fraud.yaml").read_text()
    without = load_sources(
        [
            PolicySource(p.name, p.read_text() if p.name != "20-fraud.yaml" else "version: 1\n")
            for p in sorted(POLICIES.glob("*.yaml"))
        ]
    )
    assert "fraud-alert" in text
    removed = {c.path: c for c in rule_changes(policy, without)}
    assert removed["escalations.fraud-alert"].new is None
    assert removed["escalations.fraud-alert"].old is not None
    assert removed["escalations.fraud-alert"].old.startswith("{trigger: fraud.suspected")
    added = {c.path: c for c in rule_changes(without, policy)}
    assert added["escalations.fraud-alert"].old is None


def test_decisions_that_move_show_on_both_sides_in_time_order(policy: PolicySet) -> None:
    later = changed(**{"10_collections": (OVERDUE, OVERDUE.replace("3d", "5d"))})
    lines = [line for line in STORIES.read_text().splitlines() if line.strip()]
    events = [event_from_dict(json.loads(line)) for line in lines]
    before, _ = simulate(events, policy)
    after, _ = simulate(events, later)
    changes = decision_changes(before, after)
    ana = [
        (c.side, c.decision.at, c.decision.action)
        for c in changes
        if c.decision.customer_id == "C-1001"
    ]
    moved = next(
        d.at for d in before if d.customer_id == "C-1001" and d.template == "payment-overdue"
    )
    assert ana == [("old", moved, "sent"), ("new", moved + timedelta(days=2), "sent")]
    assert [c.decision.at for c in changes] == sorted(c.decision.at for c in changes)
    assert first_instant(changes) == moved
    # Everything else is the same decision, though every row names another policy version.
    assert len(before) - sum(c.side == "old" for c in changes) == len(after) - sum(
        c.side == "new" for c in changes
    )


def test_decisions_compare_as_a_multiset(policy: PolicySet) -> None:
    row = Decision(
        at="2026-11-20T14:00:00Z",
        customer_id="C-1",
        action="sent",
        reason="step_due",
        policy_version="a",
    )
    twice = [row, row]
    once = [row.model_copy(update={"policy_version": "b", "detail": "other words"})]
    [change] = decision_changes(twice, once)
    assert change.side == "old" and change.decision == row


@given(
    st.lists(st.sampled_from(range(6)), max_size=12),
    st.lists(st.sampled_from(range(6)), max_size=12),
)
def test_what_each_side_alone_makes_accounts_for_every_difference(
    olds: list[int], news: list[int]
) -> None:
    """Old without its changes and new without theirs are the same decisions (a multiset)."""

    def row(n: int, version: str) -> Decision:
        return Decision(
            at=f"2026-11-2{n % 3}T14:00:00Z",
            customer_id=f"C-{n % 2}",
            action="sent" if n < 4 else "deferred",
            reason="step_due",
            policy_version=version,
        )

    old = [row(n, "a") for n in olds]
    new = [row(n, "b") for n in news]
    changes = decision_changes(old, new)

    def rest(rows: list[Decision], side: str) -> list[tuple[object, ...]]:
        gone = [c.decision for c in changes if c.side == side]
        left = list(rows)
        for decision in gone:
            left.remove(decision)  # each change is one of that side's own rows
        return sorted((d.at, d.customer_id, d.action) for d in left)

    assert rest(old, "old") == rest(new, "new")
    assert [c.decision.at for c in changes] == sorted(c.decision.at for c in changes)


def test_a_templates_words_change_the_version_and_show_in_the_diff(tmp_path: Path) -> None:
    """The version covers what shapes a message: a decision's version names the words sent."""
    new = tmp_path / "new"
    shutil.copytree(POLICIES, new)
    old_set, same = load_directory(POLICIES), load_directory(new)
    assert same.version == old_set.version and template_changes(old_set, same) == []
    assert "payment-missed/sms.en.j2" in old_set.templates
    assert "voicemail/voice.en.j2" in old_set.templates, "every call may leave it"

    sms = new / "templates" / "payment-missed" / "sms.en.j2"
    sms.write_text(sms.read_text().replace("Pay or call us", "Pay now or call us"))
    reworded = load_directory(new)
    assert reworded.version != old_set.version
    assert rule_changes(old_set, reworded) == [], "the rules are the same"
    [change] = template_changes(old_set, reworded)
    assert change.path == "templates/payment-missed/sms.en.j2"
    assert change.old == old_set.templates["payment-missed/sms.en.j2"] != change.new

    # A template no step can send is not part of the set.
    (new / "templates" / "unused").mkdir()
    (new / "templates" / "unused" / "sms.en.j2").write_text("Nobody sends this.")
    assert load_directory(new).version == reworded.version


def test_the_core_and_the_channels_name_the_voicemail_template_alike() -> None:
    from channels.templates import VOICEMAIL
    from policies.model import VOICEMAIL_TEMPLATE

    assert VOICEMAIL == VOICEMAIL_TEMPLATE
