"""Masking, settings, templates and dedupe: the small pieces of the shell."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from channels.sandbox import read_outbox
from channels.templates import RenderError, TemplateMissing, Templates
from policies.state import CustomerState
from schemas.notifications import NotificationRequest
from streams.intake.dedupe import RecentIds
from streams.runtime.logging import configure, mask
from streams.runtime.settings import Settings, SettingsError
from tests.conftest import POLICIES


def test_mask_hides_phones_and_emails() -> None:
    assert mask("call +13125550101 or ana.b@example.com") == "call +*********01 or a***@example.com"


def test_logs_never_show_a_contact_point(capsys: pytest.CaptureFixture[str]) -> None:
    configure("json", "info")
    structlog.get_logger("t").info(
        "sent", recipient="+13125550101", nested={"to": ["ana@example.com"]}
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["recipient"] == "+*********01"
    assert line["nested"] == {"to": ["a***@example.com"]}
    assert "3125550101" not in json.dumps(line) and "ana@" not in json.dumps(line)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARION_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CLARION_PARTITIONS", "12")
    monkeypatch.setenv("CLARION_TOPIC_PREFIX", "bank.")
    monkeypatch.setenv("CLARION_API_KEYS", "k1,k2")
    monkeypatch.setenv("CLARION_STORE", "")  # empty counts as unset
    s = Settings.from_env(role="intake")
    assert s.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert s.partitions == 12
    assert s.topic("decisions") == "bank.decisions"
    assert s.role == "intake" and s.store == "memory://"
    assert s.api_keys is not None and s.api_keys.get_secret_value() == "k1,k2"
    assert "k1" not in repr(s)


def test_a_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARION_PARTITIONS", "many")
    with pytest.raises(SettingsError, match="CLARION_PARTITIONS"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CLARION_PARTITIONS": "many"}, "CLARION_PARTITIONS: Input should be a valid integer"),
        ({"CLARION_ROLE": "both"}, "CLARION_ROLE: Input should be 'all', 'intake' or 'dispatch'"),
        (
            {"CLARION_CHANNEL_EMAIL": "sendgrid", "CLARION_SENDGRID_API_KEY": "SG.secret"},
            "missing for the configured channels: CLARION_SENDGRID_FROM_EMAIL",
        ),
        (
            {"CLARION_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CLARION_KAFKA_SASL_PASSWORD": "pw"},
            "CLARION_KAFKA_SASL_USERNAME is required with SASL_SSL",
        ),
    ],
)
def test_the_worker_stops_on_a_bad_or_missing_variable_naming_it(
    env: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`clarion worker` exits 2 before it connects: one line per problem, no stack trace."""
    from streams.cli.main import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "Traceback" not in err
    assert "SG.secret" not in err and "pw" not in err.replace("password", "")


def request(
    template: str, channel: str, locale: str = "en", **context: object
) -> NotificationRequest:
    return NotificationRequest(
        notification_id="ntf-1",
        customer_id="C-1",
        account_id="A-1001-CARD",
        case_id="case",
        escalation="missed-payment",
        ladder="standard",
        step=0,
        category="collections",
        channel=channel,  # type: ignore[arg-type]
        recipient="+13125550101",
        template=template,
        locale=locale,
        requested_at=datetime(2026, 11, 20, 14, tzinfo=UTC),
        policy_version="pol-x",
        context=context
        or {
            "account_id": "A-1001-CARD",
            "data": {
                "amount_due": "125.40",
                "currency": "USD",
                "due_date": "2026-11-15",
                "days_past_due": 5,
            },
        },
    )


def test_templates_render_with_locale_and_subject() -> None:
    templates = Templates(POLICIES / "templates")
    sms = templates.render(request("payment-missed", "sms", "es"))
    assert "125.40 USD" in sms.body and sms.body.startswith("Su pago")
    email = templates.render(request("payment-missed", "email", "fr"))  # falls back to en
    assert email.subject == "Your payment on account A-1001-CARD is late"
    assert "125.40" in email.body


def test_an_undefined_variable_is_an_error_not_an_empty_string() -> None:
    templates = Templates(POLICIES / "templates")
    with pytest.raises(RenderError, match="amount_due"):
        templates.render(request("payment-missed", "sms", account_id="A-1", data={}))


def test_a_missing_template_is_an_error() -> None:
    with pytest.raises(TemplateMissing):
        Templates(POLICIES / "templates").render(request("no-such-template", "sms"))


def test_templates_cannot_reach_python_internals(tmp_path: Path) -> None:
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "sms.en.j2").write_text("{{ data.__class__.__mro__ }}")
    with pytest.raises(RenderError):
        Templates(tmp_path).render(request("evil", "sms"))


def test_recent_ids_remembers_and_forgets() -> None:
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    ids = RecentIds([], timedelta(hours=72), max_ids=3)
    ids.add("a", t0)
    assert "a" in ids and "b" not in ids
    ids.add("b", t0 + timedelta(hours=73))  # a is now older than the window
    assert "a" not in ids and "b" in ids
    for name in "cde":
        ids.add(name, t0 + timedelta(hours=74))
    assert "b" not in ids and all(n in ids for n in "cde")  # at most 3 kept
    again = RecentIds.from_json(json.loads(json.dumps(ids.to_json())), timedelta(hours=72), 3)
    assert "e" in again


def test_console_logging_is_readable() -> None:
    configure("console", "info")
    buf = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))
    structlog.get_logger("t").info("hello", recipient="ana@example.com")
    assert "hello" in buf.getvalue() and "a***@example.com" in buf.getvalue()


def test_an_email_html_part_is_its_own_template_in_the_same_language() -> None:
    templates = Templates(POLICIES / "templates")
    links = {"preferences": "https://clarion.example/p/t<o>k"}
    english = templates.render(request("payment-missed", "email", "en"), links)
    assert english.html is not None and english.html.startswith("<p>We have not received")
    assert 'href="https://clarion.example/p/t&lt;o&gt;k"' in english.html, "autoescaped"
    assert english.body.startswith("We have not received") and "<p>" not in english.body
    spanish = templates.render(request("payment-missed", "email", "es"), links)
    assert spanish.html is None, "no Spanish HTML part: made from the Spanish text, not English"
    assert ("payment-missed", "email", "en.html") not in templates.available()


def test_a_batch_writes_requests_then_decisions_then_states_and_holds_back_a_bad_state() -> None:
    """The order that keeps the ledger true, and a state that would not read back: its
    customer's inputs come back to be dead-lettered, and nothing of theirs is written."""
    from typing import Any

    from schemas.customer import Profile
    from schemas.decisions import Decision
    from streams.intake.working import Working

    written: list[tuple[str, str]] = []

    class Table(dict[str, Any]):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        async def write(self, key: str, value: Any) -> None:
            written.append((self.name, key))
            self[key] = value

    async def deliver(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        written.append((topic, (key or b"").decode()))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def record(decision: Decision, value: bytes) -> None:
        written.append(("decisions", decision.customer_id))

    deep: object = "leaf"
    for _ in range(300):
        deep = {"n": deep}
    customers, seen = Table("customers"), Table("seen")
    work = Working(customers, seen, timedelta(hours=1), 8, enter=lambda e: None)
    events = {"C-OK": object(), "C-BAD": object()}
    at = datetime(2026, 11, 20, tzinfo=UTC)
    for cid, event in events.items():
        state = work.state(cid, 0, event)  # type: ignore[arg-type]
        profile = Profile.model_validate({"extra": deep}) if cid == "C-BAD" else state.profile
        decision = Decision(
            customer_id=cid, action="opened", reason="test", at=at, policy_version="p"
        )
        sms = request("payment-missed", "sms").model_copy(update={"customer_id": cid})
        urgent = sms.model_copy(update={"notification_id": "ntf-u", "priority": "urgent"})
        work.emit(cid, [sms, urgent], [decision])
        work.put(cid, state.model_copy(update={"profile": profile}))
        work.recent(cid, event).add(f"evt-{cid}", at)  # type: ignore[arg-type]
    lanes = {"urgent": "outbound-urgent"}
    failed = asyncio.run(work.flush(deliver, record, lambda p: lanes.get(p, "outbound"), 10**6))
    assert [e for e, _ in failed] == [events["C-BAD"]]
    assert "would not be written and read back" in str(failed[0][1])
    assert written == [
        ("outbound", "C-OK"),
        ("outbound-urgent", "C-OK"),
        ("decisions", "C-OK"),
        ("customers", "C-OK"),
        ("seen", "C-OK"),
    ]


def test_the_outbox_reader_skips_a_line_still_being_written(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    outbox.write_text('{"notification_id": "ntf-1"}\n{"notification_id": "ntf-2", "chan')
    assert read_outbox(outbox) == [{"notification_id": "ntf-1"}]
    with outbox.open("a") as fh:
        fh.write('nel": "sms"}\n')
    assert [m["notification_id"] for m in read_outbox(outbox)] == ["ntf-1", "ntf-2"]


def test_a_stored_state_reads_back_and_its_head_reads_without_the_state() -> None:
    from policies.engine import decide
    from policies.loader import load_directory
    from schemas.events import event_from_dict
    from streams.intake import stored

    at = datetime(2026, 11, 20, 15, tzinfo=UTC)
    raw = {
        "event_id": "e-1",
        "type": "payment.missed",
        "customer_id": "C-1",
        "account_id": "A-1",
        "occurred_at": at.isoformat(),
        "schema_version": 1,
        "source": "test",
        "data": {
            "amount_due": "120.00",
            "currency": "USD",
            "due_date": "2026-11-15",
            "days_past_due": 5,
        },
    }
    state = decide(
        CustomerState(customer_id="C-1"), event_from_dict(raw), at, load_directory(POLICIES)
    ).state
    assert state.due is not None
    value = stored.encode(3, state.due, state)

    assert stored.state(value) == state
    assert stored.head(value) == stored.Head(3, state.due.isoformat())
    assert json.loads(value)["partition"] == 3, "still one JSON object a person can read"
    # The head is read without the state: a value whose state is garbage still has one.
    broken = value[: value.index(b'"state":') + 8] + b"not json}"
    assert stored.head(broken) == stored.Head(3, state.due.isoformat())

    idle = stored.encode(0, None, CustomerState(customer_id="C-2"))
    assert stored.head(idle) == stored.Head(0, None)


def test_a_value_faust_wrote_before_the_codec_still_reads() -> None:
    from streams.intake import stored

    state = CustomerState(customer_id="C-OLD")
    older = json.dumps({"partition": 2, "due": None, "state": state.model_dump(mode="json")})
    assert stored.head(older.encode()) == stored.Head(2, None)
    assert stored.state(older.encode()) == state
    for nothing in (None, b"null", b"{}", b'{"state": null}', {"state": {}}):
        assert stored.head(nothing) is None and stored.state(nothing) is None


def test_an_unreadable_stored_value_is_an_error_not_a_fresh_customer() -> None:
    from streams.intake import stored

    for garbage in (b"", b"\xff\xfe not json", b'{"partition": 1, "due": nul'):
        assert stored.head(garbage) is None, "the timer index skips it"
        with pytest.raises(ValueError, match="not JSON"):
            stored.state(garbage)
    # The older layout without a usable partition: skipped, not a crash of the index.
    for odd in (b'{"state": {"customer_id": "C-1"}}', b'{"partition": "1", "state": {"a": 1}}'):
        assert stored.head(odd) is None
    # The codec's own layout, damaged: the head is skipped, the state says what is wrong.
    damaged = b'{"partition":x,"due":null,"state":{"customer_id":}'
    assert stored.head(damaged) is None
    with pytest.raises(ValueError, match="Invalid JSON"):
        stored.state(damaged)


def test_a_stored_state_that_does_not_read_back_is_named_not_started_afresh() -> None:
    """An older version's (or a bug's) value: the customer is refused as `state_unreadable`,
    never silently given an empty state."""
    from streams.intake.working import StateUnreadable, Working

    customers = {"C-OLD": b'{"partition":0,"due":null,"state":{"customer_id": 7}}'}
    work = Working(customers, {}, timedelta(hours=1), 8, enter=lambda e: None)  # type: ignore[arg-type]
    with pytest.raises(StateUnreadable) as raised:
        work.state("C-OLD", 0, object())  # type: ignore[arg-type]
    assert raised.value.customer == "C-OLD"
    assert work.state("C-NEW", 0, object()).customer_id == "C-NEW"  # type: ignore[arg-type]
