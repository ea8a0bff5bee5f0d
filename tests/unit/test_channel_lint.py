"""SMS segment counts, opt-out detection, and `policy check`'s template rendering."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from channels.lint import has_opt_out, limited_content, sms_segments
from channels.templates import Templates
from schemas.events import EVENT_DATA, event_from_dict
from schemas.examples import EXAMPLE_DATA
from streams.cli import policy as policy_cli
from streams.versions import checks
from tests import samples
from tests.conftest import POLICIES


def test_gsm7_and_ucs2_segments() -> None:
    assert sms_segments("a" * 160) == (1, "GSM-7")
    assert sms_segments("a" * 161) == (2, "GSM-7")  # 153 a segment once concatenated
    assert sms_segments("€" * 80) == (1, "GSM-7")  # extension characters count twice
    assert sms_segments("€" * 81) == (2, "GSM-7")
    assert sms_segments("á" * 70) == (1, "UCS-2")  # á is not in GSM 03.38
    assert sms_segments("á" * 71) == (2, "UCS-2")


def test_opt_out_instructions() -> None:
    assert has_opt_out("sms", "Pay now. Reply STOP to opt out.")
    assert not has_opt_out("sms", "Pay now. We stopped by.")
    assert has_opt_out("email", "To stop these emails, use the unsubscribe link.")
    assert has_opt_out("email", "use el enlace de baja")
    assert not has_opt_out("email", "Thank you.")
    assert has_opt_out("voice", "anything")  # a call carries no written opt-out


def test_every_event_type_has_a_valid_example() -> None:
    assert set(EXAMPLE_DATA) == set(EVENT_DATA)
    for type_name in EVENT_DATA:
        event_from_dict(samples.event(type_name))


def copy_policies(tmp_path: Path) -> Path:
    target = tmp_path / "p"
    shutil.copytree(POLICIES, target)
    return target


def test_a_debt_collection_sms_without_opt_out_is_an_error_unless_lenient(
    tmp_path: Path,
) -> None:
    """Reg F 1006.6(e): an error by default, as the policy language says; a warning for drafts."""
    policies = copy_policies(tmp_path)
    sms = policies / "templates" / "payment-overdue" / "sms.en.j2"
    sms.write_text(sms.read_text().replace(" Reply STOP to opt out.", ""))
    out, err = io.StringIO(), io.StringIO()
    assert policy_cli.check(policies, None, False, out, err) == 1
    assert (
        "templates/payment-overdue/sms.en.j2: a debt collection sms message with no opt-out "
        "instruction" in err.getvalue()
    )
    assert "Reg F 1006.6(e)" in err.getvalue()
    lenient = io.StringIO()
    assert policy_cli.check(policies, None, False, io.StringIO(), lenient, lenient=True) == 0
    assert "sms.en.j2: warning: a debt collection sms message" in lenient.getvalue()
    assert policy_cli.check(policies, None, True, io.StringIO(), io.StringIO(), True) == 1


def test_a_template_that_does_not_render_is_an_error(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path)
    email = policies / "templates" / "final-notice" / "email.en.j2"
    email.write_text(email.read_text().replace("{{ data.amount_due }}", "{{ data.amount_owed }}"))
    out, err = io.StringIO(), io.StringIO()
    assert policy_cli.check(policies, None, False, out, err) == 1
    assert "templates/final-notice/email.en.j2: does not render with sample data" in err.getvalue()
    assert "amount_owed" in err.getvalue()


def test_segment_counts_are_reported() -> None:
    out = io.StringIO()
    assert policy_cli.check(POLICIES, None, True, out, io.StringIO()) == 0
    assert "templates/payment-missed/sms.en.j2: 1 SMS segment(s), GSM-7" in out.getvalue()
    assert "0 errors, 0 warnings" in out.getvalue()


def test_voice_needs_the_voicemail_safe_template(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path)
    shutil.rmtree(policies / "templates" / "voicemail")
    out, err = io.StringIO(), io.StringIO()
    assert policy_cli.check(policies, None, False, out, err) == 1
    assert "templates/collections-call/voice.en.j2: does not render" in err.getvalue()
    assert "no template voicemail/voice.en.j2" in err.getvalue()


def test_a_voice_message_carries_words_safe_for_a_machine() -> None:
    templates = Templates(POLICIES / "templates")
    request = checks.sample_request("collections", "payment.missed", "collections", "x")
    request = request.model_copy(update={"channel": "voice", "template": "collections-call"})
    message = templates.render(request)
    assert message.voicemail and "call me back" in message.voicemail
    assert request.context["account_id"][-4:] in message.body
    assert request.context["account_id"][-4:] not in message.voicemail


def test_a_voicemail_that_names_an_amount_fails_the_check(tmp_path: Path) -> None:
    """Reg F 1006.2(j): what a machine hears must say nothing of a debt (issue 27, part 2)."""
    policies = copy_policies(tmp_path)
    voicemail = policies / "templates" / "voicemail" / "voice.en.j2"
    voicemail.write_text(
        voicemail.read_text().replace(
            "Thank you.",
            "\nThis is an attempt to collect a debt of {{ data.amount_due | default('') }} on the "
            "account ending {{ account_id[-4:] }}. Thank you.",
        )
    )
    assert policy_cli.check(policies, None, False, io.StringIO(), io.StringIO()) == 1
    err = io.StringIO()
    assert policy_cli.check(policies, None, False, io.StringIO(), err, lenient=True) == 0
    found = err.getvalue()
    where = {
        line.split(": it ")[-1]: line.split(": warning")[0]
        for line in found.splitlines()
        if "not a limited-content voicemail (Reg F 1006.2(j)), and missed-payment can" in line
    }
    voicemail_en = "templates/voicemail/voice.en.j2"
    assert where["says 'collect', which reveals a debt"] == f"{voicemail_en}:3", "its line"
    assert where["says 'debt', which reveals a debt"] == f"{voicemail_en}:3"
    assert where["states an amount ('125.40')"].startswith(voicemail_en)
    assert where["gives account digits ('1234')"].startswith(voicemail_en)
    assert "voice.es.j2" not in found, "the Spanish one is still limited-content"
    assert policy_cli.check(policies, None, True, io.StringIO(), io.StringIO(), True) == 1


def test_what_a_limited_content_message_must_hold() -> None:
    good = "Hello Ana Ruiz, this is Jordan Lee. Please call me back at (312) 555-0100."
    assert limited_content(good, good, customer_name="Ana Ruiz", person="Jordan Lee") == []
    missing = limited_content("Hello.", "Hello.", customer_name="Ana Ruiz", person=None)
    assert [m.split(" ")[0:3] for _, m in missing] == [
        ["it", "does", "not"],
        ["no", "person's", "name:"],
        ["it", "gives", "no"],
        ["it", "does", "not"],
    ]
    extra = good + " About your arrears."
    [(_, problem)] = limited_content(
        extra, extra, customer_name="Ana Ruiz", person="Jordan Lee", extra_words=["arrears"]
    )
    assert problem == "it says 'arrears', which reveals a debt"
    spanish = "Hola Ana Ruiz, le habla Jordan Lee. Llámeme al 312 555 0100 sobre su deuda vencida."
    said = [
        p
        for _, p in limited_content(spanish, spanish, customer_name="Ana Ruiz", person="Jordan Lee")
    ]
    assert said == [
        "it says 'deuda', which reveals a debt",
        "it says 'vencida', which reveals a debt",
    ]
