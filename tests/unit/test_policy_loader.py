from __future__ import annotations

from pathlib import Path

import pytest

from policies.loader import PolicyLoadError, PolicySource, load_sources
from policies.model import PolicySet
from tests.conftest import POLICIES


def sources(**overrides: str) -> list[PolicySource]:
    files = {p.name: p.read_text() for p in sorted(POLICIES.glob("*.yaml"))}
    files.update(overrides)
    return [PolicySource(name, text) for name, text in files.items()]


def errors_of(**overrides: str) -> list[str]:
    with pytest.raises(PolicyLoadError) as info:
        load_sources(sources(**overrides))
    return [str(e) for e in info.value.errors]


def collections(old: str, new: str) -> str:
    text = (POLICIES / "10-collections.yaml").read_text()
    assert old in text
    return text.replace(old, new, 1)


def test_the_reference_set_loads(policy: PolicySet) -> None:
    assert set(policy.escalations) >= {"missed-payment", "large-transaction", "offers"}
    assert policy.version.startswith("pol-")
    assert policy.time_zone_fallback[0] == "America/New_York"


def test_the_version_is_a_content_hash() -> None:
    a = load_sources(sources())
    b = load_sources(sources())
    c = load_sources(
        sources(
            **{
                "10-collections.yaml": collections(
                    "stop_on: [payment.received]", "stop_on: [payment.received] "
                )
            }
        )
    )
    assert a.version == b.version != c.version


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_unknown_key_points_at_the_key() -> None:
    text = collections("    stop_on: [payment.received]\n", "    stop_onn: [payment.received]\n")
    [err] = errors_of(**{"10-collections.yaml": text})
    assert err.startswith(f"10-collections.yaml:{line_of(text, 'stop_onn')}:5: ")
    assert "stop_onn: unknown key" in err


def test_bad_duration_names_line_and_column() -> None:
    text = collections("{after: 3d, send: {channel: sms", "{after: 3x, send: {channel: sms")
    [err] = errors_of(**{"10-collections.yaml": text})
    assert err.startswith(f"10-collections.yaml:{line_of(text, '3x')}:")
    assert "'3x' is not a duration" in err


def test_wrong_type() -> None:
    text = collections(
        "case: account\n    on_retrigger: keep", "case: [account]\n    on_retrigger: keep"
    )
    [err] = errors_of(**{"10-collections.yaml": text})
    assert f"10-collections.yaml:{line_of(text, '[account]')}:" in err and "case" in err


def test_invalid_yaml() -> None:
    [err] = errors_of(**{"40-notices.yaml": "version: 1\nescalations: {a: [\n"})
    assert err.startswith("40-notices.yaml:3:1: invalid YAML")


def test_unknown_event_type() -> None:
    [err] = errors_of(
        **{"10-collections.yaml": collections("trigger: payment.missed", "trigger: payment.mised")}
    )
    assert "'payment.mised' is not an event type" in err


def test_unknown_category() -> None:
    text = collections("category: collections", "category: colections")
    [err] = errors_of(**{"10-collections.yaml": text})
    assert "unknown category 'colections'" in err
    assert err.startswith(f"10-collections.yaml:{line_of(text, 'colections')}:15: ")


def test_steps_out_of_order() -> None:
    [err] = errors_of(
        **{
            "10-collections.yaml": collections(
                "{after: 14d, send: {channel: email", "{after: 2d, send: {channel: email"
            )
        }
    )
    assert "list steps in time order" in err


def test_unreachable_ladder() -> None:
    [err] = errors_of(
        **{
            "10-collections.yaml": collections(
                "switch_on: {hardship.reported: hardship}", "switch_on: {}"
            )
        }
    )
    assert "ladder 'hardship' can never be reached" in err


def test_a_directory_without_policies(tmp_path: Path) -> None:
    from policies.loader import load_directory

    with pytest.raises(PolicyLoadError, match=r"no \.yaml policy files"):
        load_directory(tmp_path)


def test_unknown_template_names_the_missing_files() -> None:
    from channels.templates import Templates
    from policies.loader import check_sources

    templates = Templates(POLICIES / "templates").available()
    text = collections("template: payment-overdue", "template: payment-overdeu")
    with pytest.raises(PolicyLoadError) as info:
        check_sources(sources(**{"10-collections.yaml": text}), templates)
    [err] = [str(e) for e in info.value.errors]
    assert err.startswith(f"10-collections.yaml:{line_of(text, 'payment-overdeu')}:56: ")
    assert "unknown template 'payment-overdeu' for sms, email" in err
    assert "no sms.en.j2, email.en.j2" in err


def test_a_preferred_step_needs_a_template_for_every_channel() -> None:
    from policies.loader import check_sources

    templates = frozenset(
        t
        for t in __import__("channels.templates")
        .templates.Templates(POLICIES / "templates")
        .available()
        if t != ("payment-missed", "voice", "en")
    )
    with pytest.raises(PolicyLoadError) as info:
        check_sources(sources(), templates)
    messages = [str(e) for e in info.value.errors]
    assert len(messages) == 2  # the priority and the standard ladder's first step
    assert all("'payment-missed' for voice" in m for m in messages)


def test_a_condition_on_an_unknown_path() -> None:
    text = collections("data.amount_due: {gte: 1000}", "data.amount: {gte: 1000}")
    [err] = errors_of(**{"10-collections.yaml": text})
    assert err.startswith(f"10-collections.yaml:{line_of(text, 'data.amount:')}:29: ")
    assert "condition on unknown path 'data.amount'" in err and "amount_due" in err


def test_a_cap_naming_an_unknown_category_points_at_the_cap() -> None:
    guards = (
        (POLICIES / "00-guards.yaml")
        .read_text()
        .replace("categories: [fraud]}", "categories: [frawd]}")
    )
    [err] = errors_of(**{"00-guards.yaml": guards})
    line = next(n for n, text in enumerate(guards.splitlines(), 1) if "[frawd]" in text)
    assert err.startswith(f"00-guards.yaml:{line}:") and "unknown category 'frawd'" in err


def test_compliance_warnings_load_but_are_reported() -> None:
    from policies.loader import check_sources

    guards = (POLICIES / "00-guards.yaml").read_text()
    guards = guards.replace(
        "collections: {kind: debt_collection, contact_windows: enforce, frequency_caps: enforce",
        "collections: {kind: debt_collection, contact_windows: ignore, frequency_caps: exempt",
    ).replace("  - {channel: voice, max: 7, per: 7d, scope: account}", "")
    guards = guards.replace("consent: opt_in,", "")
    assert "opt_in" not in guards
    report = check_sources(sources(**{"00-guards.yaml": guards}))
    text = "\n".join(str(w) for w in report.warnings)
    assert "missed-payment: a debt collection escalation whose category ignores contact" in text
    assert "missed-payment: a debt collection escalation whose category is exempt from" in text
    assert "offers: a marketing escalation without consent: opt_in" in text
    assert "which no voice frequency cap covers" in text  # exempt: no cap covers its calls
    assert all(str(w).split(":")[1].isdigit() for w in report.warnings)


def test_the_checks_follow_the_kind_not_the_name() -> None:
    """A debt collection category called `arrears` is held to the same rules (issue 27)."""
    from policies.loader import check_sources

    guards = (POLICIES / "00-guards.yaml").read_text()
    guards = guards.replace(
        "collections: {kind: debt_collection, contact_windows: enforce",
        "arrears: {kind: debt_collection, contact_windows: ignore",
    ).replace("[collections, service, marketing]", "[arrears, service, marketing]")
    collections = (POLICIES / "10-collections.yaml").read_text()
    collections = collections.replace("category: collections", "category: arrears")
    report = check_sources(
        sources(**{"00-guards.yaml": guards, "10-collections.yaml": collections})
    )
    text = "\n".join(str(w) for w in report.warnings)
    assert "missed-payment: a debt collection escalation whose category ignores contact" in text
    # And a category called `collections` that says it is servicing is not.
    relabelled = (
        (POLICIES / "00-guards.yaml")
        .read_text()
        .replace(
            "collections: {kind: debt_collection, contact_windows: enforce",
            "collections: {kind: servicing, contact_windows: ignore",
        )
    )
    report = check_sources(sources(**{"00-guards.yaml": relabelled}))
    assert "ignores contact windows" not in "\n".join(str(w) for w in report.warnings)


def test_a_category_without_a_kind_is_read_from_its_name_and_warned_about() -> None:
    from policies.loader import check_sources

    guards = (POLICIES / "00-guards.yaml").read_text()
    guards = guards.replace("collections: {kind: debt_collection, ", "collections: {")
    report = check_sources(sources(**{"00-guards.yaml": guards}))
    [warning] = [str(w) for w in report.warnings]
    assert "categories.collections declares no kind; read as debt_collection" in warning
    assert report.policy.categories["collections"].kind == "debt_collection"


def test_the_reference_set_has_no_warnings() -> None:
    from policies.loader import check_sources

    assert check_sources(sources()).warnings == []


def test_a_debt_collection_escalation_without_a_validation_notice_is_warned_about() -> None:
    """Issue 19, 27: Reg F 1006.34's validation notice is timed; the set should have one."""
    from policies.loader import check_sources

    collections = (POLICIES / "10-collections.yaml").read_text()
    assert collections.count("deadline: 5d") == 1
    without = collections[: collections.index("  # Reg F 1006.34: the validation notice")]
    report = check_sources(sources(**{"10-collections.yaml": without}))
    [warning] = [str(w) for w in report.warnings]
    assert "missed-payment: a debt collection escalation with no validation notice" in warning
    assert warning.startswith("10-collections.yaml:")
    # A step with a deadline inside the ladder is a validation notice too.
    inside = without.replace("template: final-notice}}", "template: final-notice}, deadline: 5d}")
    assert check_sources(sources(**{"10-collections.yaml": inside})).warnings == []
