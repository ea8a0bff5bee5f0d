"""Twilio SMS and voice, through the official SDK's asynchronous client.

The SDK builds every request (paths, form fields, auth) and parses every
answer; we only choose its HTTP client. `RebasedHttpClient` can send the
SDK's requests to another base URL, which the tests use to reach a fake
Twilio on loopback. In production the base is unset and nothing is rewritten.

Voice never leaves account details on an answering machine: the call opens
with a pause and then the limited-content message (`Message.voicemail`). When
Twilio's asynchronous answering-machine detection reports a person, the
inbound webhook swaps in the full message with `TwilioVoice.speak`. If that
report never comes, the call stays safe.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from channels.base import Message, SendResult, log_attempt
from channels.outcomes import TRANSPORT, twilio_error

_last_headers: ContextVar[dict[str, str] | None] = ContextVar("twilio_last_headers", default=None)
"""The headers of the last answer in this task: `Retry-After` is not on the SDK's exception."""


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    account_sid: str
    auth_token: str
    sms_from: str | None = None
    """An E.164 number; or leave it unset and give a messaging service."""
    messaging_service_sid: str | None = None
    voice_from: str | None = None
    status_callback_url: str | None = None
    """The public URL of the status webhook; the notification id is added as a query."""
    machine_detection: str = "DetectMessageEnd"
    """`Enable`, `DetectMessageEnd`, or empty for none."""
    voice_pause_s: int = 3
    """Silence before the voicemail-safe message, while detection decides."""
    api_base: str | None = None
    """Send the SDK's requests here instead of https://*.twilio.com (tests, egress proxies)."""
    timeout_s: float = 10.0


class RebasedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio has no types
    """The SDK's aiohttp client, optionally sending every request to another base URL."""

    def __init__(self, base: str | None, timeout_s: float) -> None:
        super().__init__(pool_connections=False, timeout=timeout_s)
        self._base = urlsplit(base) if base else None
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if self._base is not None:
            parts = urlsplit(url)
            url = urlunsplit((self._base.scheme, self._base.netloc, parts.path, parts.query, ""))
        if self._session is None:  # made here, inside the running loop
            self._session = aiohttp.ClientSession()
        if auth is not None:
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        answer = await self._session.request(
            method.upper(),
            url,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self._timeout_s),
            allow_redirects=allow_redirects,
        )
        async with answer:
            text = await answer.text()
        _last_headers.set(dict(answer.headers))
        return Response(answer.status, text, answer.headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Twilio:
    """What SMS and voice share: the SDK client, and turning its errors into outcomes."""

    provider = "twilio"

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self._http = RebasedHttpClient(config.api_base, config.timeout_s)
        self.client = Client(config.account_sid, config.auth_token, http_client=self._http)

    def callback(self, message: Message) -> str | None:
        """The status URL for one message: Twilio signs it whole, so its ids cannot be forged."""
        base = self.config.status_callback_url
        if not base:
            return None
        joiner = "&" if "?" in base else "?"
        ids = {
            "notification_id": message.notification_id,
            "customer_id": message.customer_id,
            "channel": message.channel,
            **({"account_id": message.account_id} if message.account_id else {}),
        }
        return f"{base}{joiner}{urlencode(ids)}"

    async def attempt(self, message: Message, create: Any) -> SendResult:
        _last_headers.set(None)
        try:
            created = await create
        except TwilioRestException as exc:
            classified = twilio_error(exc.status, _int(exc.code))
            headers = _last_headers.get() or {}
            retry = _retry_after(headers) if classified.outcome == "transient" else None
            result = SendResult.failed(
                classified, self.provider, str(exc.msg), str(exc.code), retry
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            result = SendResult.failed(TRANSPORT, self.provider, detail)
        else:
            result = SendResult("accepted", self.provider, provider_message_id=created.sid)
        log_attempt(message, result)
        return result

    async def accepted(self, notification_id: str) -> bool | None:
        """Twilio has no look-up by our id: after a crash mid-call we cannot tell."""
        return None

    async def close(self) -> None:
        await self._http.close()


class TwilioSms(_Twilio):
    def __init__(self, config: TwilioConfig) -> None:
        if not config.sms_from and not config.messaging_service_sid:
            raise ValueError("Twilio SMS needs a sender number or a messaging service sid")
        super().__init__(config)

    async def send(self, message: Message) -> SendResult:
        sender: dict[str, str] = (
            {"messaging_service_sid": self.config.messaging_service_sid}
            if self.config.messaging_service_sid
            else {"from_": self.config.sms_from or ""}
        )
        callback = self.callback(message)
        create = self.client.messages.create_async(
            to=message.recipient,
            body=message.body,
            **sender,
            **({"status_callback": callback} if callback else {}),
        )
        return await self.attempt(message, create)


class TwilioVoice(_Twilio):
    def __init__(self, config: TwilioConfig) -> None:
        if not config.voice_from:
            raise ValueError("Twilio voice needs a caller number")
        super().__init__(config)

    async def send(self, message: Message) -> SendResult:
        callback = self.callback(message)
        detection: dict[str, str] = {}
        if self.config.machine_detection:
            detection = {"machine_detection": self.config.machine_detection, "async_amd": "true"}
            if callback:
                detection["async_amd_status_callback"] = callback
        create = self.client.calls.create_async(
            to=message.recipient,
            from_=self.config.voice_from or "",
            twiml=opening_twiml(message, self.config.voice_pause_s),
            **detection,
            **({"status_callback": callback} if callback else {}),
        )
        return await self.attempt(message, create)

    async def speak(self, call_sid: str, message: Message, answered_by: str) -> None:
        """Detection's verdict: a person hears the full message; a machine only the safe one."""
        human = answered_by == "human"
        text = message.body if human else (message.voicemail or "")
        twiml = str(VoiceResponse().say(text, language=_voice_language(message.locale)))
        await self.client.calls(call_sid).update_async(twiml=twiml)


def opening_twiml(message: Message, pause_s: int) -> str:
    """What a call says before detection decides: silence, then nothing but the safe message."""
    response = VoiceResponse()
    response.pause(length=pause_s)
    if message.voicemail:
        response.say(message.voicemail, language=_voice_language(message.locale))
    return str(response)


def _voice_language(locale: str) -> str:
    return {"en": "en-US", "es": "es-US"}.get(locale, locale)


def _int(code: object) -> int | None:
    try:
        return int(code)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None


def _retry_after(headers: dict[str, str]) -> float | None:
    """`Retry-After` in seconds or as an HTTP date; None when absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
