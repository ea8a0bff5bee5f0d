"""Fake Twilio and SendGrid HTTP servers that answer as the providers do.

They check what the real SDKs send (auth, paths, form or JSON fields) and
reply with the providers' own status codes and bodies. Twilio's documented
magic test numbers pick a failure (+15005550001 invalid, +15005550009 not a
mobile, +15005550004 replied STOP); `Behaviour` scripts outages, 429s and
slow answers. Every accepted request is kept for the test to read.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAGIC_NUMBERS: dict[str, tuple[int, int, str]] = {
    "+15005550001": (400, 21211, "The 'To' number is not a valid phone number."),
    "+15005550009": (400, 21614, "'To' number is not a valid mobile number"),
    "+15005550004": (400, 21610, "Attempt to send to unsubscribed recipient"),
}


@dataclass
class Behaviour:
    """What the fake does besides answering well: set by the test, read per request."""

    outage_status: int | None = None
    """While set, every request gets this status (503: an outage)."""
    rate_limit_next: int = 0
    """The next N requests get 429."""
    retry_after_s: int = 1
    delay_s: float = 0.0
    """Answer this much later (a slow provider, or one past the client's timeout)."""
    requests: int = 0


@dataclass
class _Fake(ABC):
    behaviour: Behaviour = field(default_factory=Behaviour)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def scripted(self) -> web.Response | None:
        """The behaviour's answer for this request, or None to answer normally."""
        b = self.behaviour
        b.requests += 1
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.outage_status is not None:
            return self.error(b.outage_status, 0, "Service Unavailable")
        if b.rate_limit_next > 0:
            b.rate_limit_next -= 1
            return self.error(429, 20429, "Too Many Requests", retry=b.retry_after_s)
        return None

    @abstractmethod
    def error(self, status: int, code: int, message: str, retry: int | None = None) -> web.Response:
        """The provider's own error body for `status` (and Twilio `code`)."""


class FakeTwilio(_Fake):
    """POST /2010-04-01/Accounts/{sid}/Messages.json and Calls.json, and call updates."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid, self.auth_token = account_sid, auth_token
        self._sids = itertools.count(1)

    async def __aenter__(self) -> FakeTwilio:
        app = web.Application()
        base = "/2010-04-01/Accounts/{sid}"
        app.router.add_post(base + "/Messages.json", self._create("SM", self._check_message))
        app.router.add_post(base + "/Calls.json", self._create("CA", self._check_call))
        app.router.add_post(base + "/Calls/{call}.json", self._update_call)
        await self.start(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def error(self, status: int, code: int, message: str, retry: int | None = None) -> web.Response:
        body = {
            "code": code or status,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code or status}",
            "status": status,
        }
        headers = {"Retry-After": str(retry)} if retry is not None else {}
        return web.json_response(body, status=status, headers=headers)

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}" and (
            request.match_info["sid"] == self.account_sid
        )

    @staticmethod
    def _check_message(form: dict[str, str]) -> str | None:
        if "To" not in form:
            return "A 'To' phone number is required."
        if "Body" not in form:
            return "A text message body or media urls must be specified."
        if "From" not in form and "MessagingServiceSid" not in form:
            return "A 'From' phone number or a MessagingServiceSid is required."
        return None

    @staticmethod
    def _check_call(form: dict[str, str]) -> str | None:
        if "To" not in form or "From" not in form:
            return "'To' and 'From' are required."
        if ("Twiml" in form) == ("Url" in form):
            return "Either 'Url' or 'Twiml' is required, not both."
        return None

    def _create(
        self, prefix: str, check: Callable[[dict[str, str]], str | None]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            if not self._authorised(request):
                return self.error(401, 20003, "Authenticate")
            form = {k: str(v) for k, v in (await request.post()).items()}
            scripted = await self.scripted()
            if scripted is not None:
                self.rejected.append(form)
                return scripted
            problem = check(form)
            if problem is not None:
                self.rejected.append(form)
                return self.error(400, 21604 if prefix == "SM" else 21205, problem)
            magic = MAGIC_NUMBERS.get(form["To"])
            if magic is not None:
                self.rejected.append(form)
                return self.error(*magic)
            sid = f"{prefix}{next(self._sids):032x}"
            self.accepted.append({"sid": sid, "kind": prefix, **form})
            return web.json_response(
                {"sid": sid, "status": "queued", "to": form["To"], "account_sid": self.account_sid},
                status=201,
            )

        return handler

    async def _update_call(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self.error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.post()).items()}
        sid = request.match_info["call"]
        self.accepted.append({"sid": sid, "kind": "update", **form})
        return web.json_response({"sid": sid, "status": "in-progress"})


class FakeSendGrid(_Fake):
    """POST /v3/mail/send: 202 with X-Message-Id, or SendGrid's error bodies."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self._ids = itertools.count(1)

    async def __aenter__(self) -> FakeSendGrid:
        app = web.Application()
        app.router.add_post("/v3/mail/send", self._send)
        await self.start(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def error(self, status: int, code: int, message: str, retry: int | None = None) -> web.Response:
        body = {"errors": [{"message": message, "field": None, "help": None}]}
        headers = {}
        if retry is not None:
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + retry),
            }
        return web.json_response(body, status=status, headers=headers)

    async def _send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(
                401, 0, "The provided authorization grant is invalid, expired, or revoked"
            )
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self.error(400, 0, "Invalid JSON")
        scripted = await self.scripted()
        if scripted is not None:
            self.rejected.append(body)
            return scripted
        problem = _mail_problem(body)
        if problem is not None:
            self.rejected.append(body)
            message, _, where = problem.partition("|")
            return web.json_response(
                {"errors": [{"message": message, "field": where or None, "help": None}]},
                status=400,
            )
        self.accepted.append(body)
        return web.Response(status=202, headers={"X-Message-Id": f"sg-{next(self._ids):012d}"})


def _mail_problem(body: dict[str, Any]) -> str | None:
    """The checks SendGrid makes that a well-built request can still fail."""
    try:
        to = body["personalizations"][0]["to"][0]["email"]
        sender = body["from"]["email"]
    except (KeyError, IndexError, TypeError):
        return "The personalizations field is required and must have at least one to address."
    for address, where in ((to, "personalizations.0.to.0.email"), (sender, "from.email")):
        local, _, domain = str(address).partition("@")
        if not local or "." not in domain:
            return f"Does not contain a valid address.|{where}"
    if not body.get("subject"):
        return "The subject is required."
    if not any(c.get("value") for c in body.get("content", [])):
        return "Unless a valid template_id is provided, the content parameter is required."
    return None


class ProvidersThread:
    """Both fakes on their own event loop in a thread: for tests whose workers are processes."""

    def __init__(self, account_sid: str, auth_token: str, api_key: str) -> None:
        self.twilio = FakeTwilio(account_sid, auth_token)
        self.sendgrid = FakeSendGrid(api_key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def channel_settings(self) -> dict[str, Any]:
        """Settings overrides that send SMS, voice and email through these fakes."""
        return {
            "channel_sms": "twilio",
            "channel_voice": "twilio",
            "channel_email": "sendgrid",
            "twilio_account_sid": self.twilio.account_sid,
            "twilio_auth_token": self.twilio.auth_token,
            "twilio_sms_from": "+15550000000",
            "twilio_voice_from": "+15550000001",
            "twilio_api_base": self.twilio.url,
            "sendgrid_api_key": self.sendgrid.api_key,
            "sendgrid_from_email": "alerts@bank.example",
            "sendgrid_host": self.sendgrid.url,
        }

    def __enter__(self) -> ProvidersThread:
        self._thread.start()
        for fake in (self.twilio, self.sendgrid):
            asyncio.run_coroutine_threadsafe(fake.__aenter__(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        for fake in (self.twilio, self.sendgrid):
            asyncio.run_coroutine_threadsafe(fake.__aexit__(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
