"""The dispatcher's outcome for one request: `dispatched` on acceptance, else `failed`."""

from __future__ import annotations

from pathlib import Path

from channels.sandbox import SandboxChannel, read_outbox
from channels.templates import Templates
from streams.app import _deliver
from streams.settings import Settings
from tests.conftest import POLICIES
from tests.unit.test_shell_helpers import request


async def test_an_accepted_message_is_recorded_as_dispatched(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    decision = await _deliver(
        request("payment-missed", "sms"),
        Templates(POLICIES / "templates"),
        SandboxChannel(outbox),
        Settings(clock="event"),
    )
    assert (decision.action, decision.reason) == ("dispatched", "channel_accepted")
    assert [m["notification_id"] for m in read_outbox(outbox)] == [decision.notification_id]


async def test_a_missing_template_is_a_failed_decision_and_nothing_is_sent(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    decision = await _deliver(
        request("no-such-template", "sms"),
        Templates(POLICIES / "templates"),
        SandboxChannel(outbox),
        Settings(clock="event"),
    )
    assert (decision.action, decision.reason) == ("failed", "template_error")
    assert decision.detail and "no-such-template" in decision.detail
    assert decision.notification_id == "ntf-1"
    assert read_outbox(outbox) == []
