"""Provider webhooks: Twilio status callbacks and inbound SMS, SendGrid's Event Webhook.

Each request is verified before anything is read from it: Twilio's HMAC
against the public URL from settings (never the Host header, which a proxy
rewrites), SendGrid's ECDSA signature and the age of its timestamp. A request
that fails gets 403, one log line, and writes nothing. What passes becomes
events: receipts on `delivery-receipts` and preference changes on
`preference-updates`, keyed by customer; SMS replies on `sms-conversations`,
keyed by number, until streams/dispatch/replies.py resolves them to a customer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import faust
import structlog
from faust.web import Request, Response, View

from channels.reply_words import read_reply
from channels.sendgrid_inbound import SIGNATURE_HEADER, TIMESTAMP_HEADER, read_events, verify
from channels.twilio import TwilioVoice
from channels.twilio_inbound import reply_twiml, signature_ok, status_receipt
from streams.dispatch.calls import LiveCalls
from streams.dispatch.replies import reply_message
from streams.kafka import topics
from streams.runtime.settings import Settings
from streams.web import bodies
from streams.web.reads import CUSTOMER_ID

log = structlog.get_logger(__name__)

Produce = Callable[[str, bytes, bytes], Awaitable[None]]

_STATUS_CHANNELS: dict[str, Literal["sms", "voice"]] = {"sms": "sms", "voice": "voice"}


def install(
    app: faust.App, settings: Settings, produce: Produce, calls: LiveCalls, voice: Any
) -> None:
    hooks = _Hooks(settings, produce, calls, voice)

    @app.page("/webhooks/twilio/status")
    class TwilioStatus(View):
        """Twilio's status callback for a message or a call, and the detection verdict."""

        async def post(self, request: Request) -> Response:
            return await hooks.twilio_status(self, request)

    @app.page("/webhooks/twilio/sms")
    class TwilioInboundSms(View):
        """A customer's reply: HELP is answered here, the rest by dispatch/replies.py."""

        async def post(self, request: Request) -> Response:
            return await hooks.twilio_sms(self, request)

    @app.page("/webhooks/sendgrid/events")
    class SendGridEvents(View):
        """SendGrid's Event Webhook: a signed JSON array of events."""

        async def post(self, request: Request) -> Response:
            return await hooks.sendgrid_events(self, request)


class _Hooks:
    """What each webhook does once its request is in hand."""

    def __init__(self, settings: Settings, produce: Produce, calls: LiveCalls, voice: Any) -> None:
        self.settings, self.produce, self.calls, self.voice = settings, produce, calls, voice
        self.receipts = settings.topic(topics.DELIVERY_RECEIPTS)
        self.preferences = settings.topic(topics.PREFERENCE_UPDATES)
        self.conversations = settings.topic(topics.SMS_CONVERSATIONS)
        token = settings.twilio_auth_token
        self.token = token.get_secret_value() if token else None
        self.groups = {group: category for category, group in settings.unsubscribe_groups().items()}

    async def twilio_form(
        self, view: View, request: Request, hook: str
    ) -> dict[str, str] | Response:
        """The signed form fields, or the refusal to send back."""
        public_url = self.settings.public_url
        if self.token is None or public_url is None:
            log.error(
                "webhook.unconfigured",
                hook=hook,
                needs="CLARION_TWILIO_AUTH_TOKEN, CLARION_PUBLIC_URL",
            )
            return view.json({"error": "Twilio webhooks are not configured"}, status=503)
        try:
            form = dict(await bodies.form(request))  # Twilio signs the decoded fields
        except bodies.BadBody as exc:
            log.warning("webhook.refused", hook=hook, why=exc.reason)
            return view.json({"error": exc.reason}, status=exc.status)
        url = public_url.rstrip("/") + str(request.rel_url)
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature_ok(self.token, url, form, signature):
            log.warning("webhook.refused", hook=hook, why="bad or missing X-Twilio-Signature")
            return view.json({"error": "signature check failed"}, status=403)
        return form

    async def twilio_status(self, view: View, request: Request) -> Response:
        form = await self.twilio_form(view, request, "twilio.status")
        if not isinstance(form, dict):
            return form
        query = request.query
        nid, cid = query.get("notification_id"), query.get("customer_id")
        channel = _STATUS_CHANNELS.get(query.get("channel") or "")
        if not nid or not cid or channel is None or not CUSTOMER_ID.fullmatch(cid):
            log.warning("webhook.refused", hook="twilio.status", why="no notification ids")
            return view.json({"error": "not a Clarion status callback"}, status=403)
        receipt = status_receipt(
            form,
            notification_id=nid,
            customer_id=cid,
            channel=channel,
            at=datetime.now(UTC),
            account_id=query.get("account_id"),
        )
        if receipt is None:
            return view.text("", status=204)
        if receipt.status == "answered" and receipt.provider_message_id:
            await _speak(self.calls, self.voice, receipt.provider_message_id, receipt.answered_by)
        await self.produce(self.receipts, cid.encode(), receipt.model_dump_json().encode())
        log.info(
            "webhook.receipt",
            provider="twilio",
            notification_id=nid,
            status=receipt.status,
            error_code=receipt.error_code,
        )
        return view.text("", status=204)

    async def twilio_sms(self, view: View, request: Request) -> Response:
        form = await self.twilio_form(view, request, "twilio.sms")
        if not isinstance(form, dict):
            return form
        number, body, sid = form.get("From", ""), form.get("Body", ""), form.get("MessageSid")
        if not number or not sid:
            return view.json({"error": "no From or MessageSid"}, status=400)
        message = reply_message(number, body, sid, datetime.now(UTC))
        await self.produce(self.conversations, number.encode(), json.dumps(message).encode())
        said = read_reply(body)
        log.info("webhook.sms_reply", message_sid=sid, meaning=said)
        answer = reply_twiml(self.settings.sms_help_text if said == "help" else None)
        return view.text(answer, content_type="text/xml")

    async def sendgrid_events(self, view: View, request: Request) -> Response:
        key = self.settings.sendgrid_webhook_public_key
        if not key:
            log.error(
                "webhook.unconfigured",
                hook="sendgrid.events",
                needs="CLARION_SENDGRID_WEBHOOK_PUBLIC_KEY",
            )
            return view.json({"error": "SendGrid webhook is not configured"}, status=503)
        payload = await request.read()
        why = verify(
            key,
            payload,
            request.headers.get(SIGNATURE_HEADER, ""),
            request.headers.get(TIMESTAMP_HEADER, ""),
            time.time(),
            self.settings.sendgrid_webhook_tolerance_s,
        )
        if why is not None:
            log.warning("webhook.refused", hook="sendgrid.events", why=why)
            return view.json({"error": "signature check failed"}, status=403)
        try:
            events = bodies.json_body(payload)
        except bodies.BadBody as exc:
            return view.json({"error": f"body is not JSON we can read: {exc.reason}"}, status=400)
        if not isinstance(events, list):
            return view.json({"error": "body is not a JSON array of events"}, status=400)
        facts = read_events(events, self.groups)
        for receipt in facts.receipts:
            value = receipt.model_dump_json().encode()
            await self.produce(self.receipts, receipt.customer_id.encode(), value)
        for event in facts.preferences:
            value = event.model_dump_json().encode()
            await self.produce(self.preferences, event.customer_id.encode(), value)
        counts = {"receipts": len(facts.receipts), "preferences": len(facts.preferences)}
        log.info("webhook.sendgrid_events", **counts, skipped=len(facts.skipped))
        return view.json({**counts, "skipped": facts.skipped})


async def _speak(calls: LiveCalls, voice: Any, call_sid: str, answered_by: str | None) -> None:
    """Detection decided: a person hears the whole message, a machine only the safe one."""
    message = calls.pop(call_sid)
    if message is None or not isinstance(voice, TwilioVoice):
        log.info("voice.verdict_without_call", call_sid=call_sid, answered_by=answered_by)
        return
    try:
        await voice.speak(call_sid, message, answered_by or "unknown")
    except Exception as exc:  # the call goes on saying the safe words; the receipt still counts
        log.warning("voice.speak_failed", call_sid=call_sid, error=repr(exc))
