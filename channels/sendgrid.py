"""SendGrid email: the SDK's `Mail` helper builds the request, aiohttp sends it.

The SDK's own client is synchronous (urllib underneath) and would stall the
worker's event loop for a whole provider round trip. So the SDK builds the
JSON body, the URL and the headers (`SendGridAPIClient(host=...)`), and the
POST goes through one shared aiohttp session.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

import aiohttp
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Category,
    CustomArg,
    From,
    GroupId,
    Header,
    HtmlContent,
    Mail,
    PlainTextContent,
    Subject,
    To,
)

from channels.base import Message, SendResult, log_attempt
from channels.outcomes import INVALID_ADDRESS, TRANSPORT, sendgrid_error


@dataclass(frozen=True, slots=True)
class SendGridConfig:
    api_key: str
    from_email: str
    from_name: str | None = None
    host: str = "https://api.sendgrid.com"
    unsubscribe_groups: dict[str, int] = field(default_factory=dict)
    """SendGrid unsubscribe group per message category, where one is configured."""
    unsubscribe_mailto: str | None = None
    """An address for `List-Unsubscribe` (with the message's own link when it has one)."""
    timeout_s: float = 10.0


def build_mail(message: Message, config: SendGridConfig) -> Mail:
    """The v3 request for one message; `custom_args` carry opaque ids only (SendGrid keeps them)."""
    mail = Mail(
        from_email=From(config.from_email, config.from_name),
        to_emails=To(message.recipient),
        subject=Subject(message.subject or ""),
        plain_text_content=PlainTextContent(message.body),
        html_content=HtmlContent(message.html or to_html(message.body)),
    )
    for name in dict.fromkeys(c for c in (message.category, message.template) if c):
        mail.add_category(Category(name))
    mail.add_custom_arg(CustomArg("notification_id", message.notification_id))
    mail.add_custom_arg(CustomArg("customer_id", message.customer_id))
    if message.account_id:
        mail.add_custom_arg(CustomArg("account_id", message.account_id))
    group = config.unsubscribe_groups.get(message.category)
    if group is not None:
        mail.asm = Asm(GroupId(group))
    targets = [f"<{u}>" for u in (message.unsubscribe_url,) if u]
    if config.unsubscribe_mailto:
        targets.append(f"<mailto:{config.unsubscribe_mailto}>")
    if targets:
        mail.add_header(Header("List-Unsubscribe", ", ".join(targets)))
        if message.unsubscribe_url:
            mail.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return mail


def to_html(text: str) -> str:
    """The plain text as HTML: escaped, one paragraph per blank-line block."""
    blocks = [b.strip() for b in text.split("\n\n") if b.strip()]
    return "".join(f"<p>{html.escape(b).replace(chr(10), '<br>')}</p>" for b in blocks)


class SendGridEmail:
    provider = "sendgrid"

    def __init__(self, config: SendGridConfig) -> None:
        self.config = config
        sdk = SendGridAPIClient(api_key=config.api_key, host=config.host)
        self._url = sdk.client.mail.send._build_url(None)
        self._headers = {**sdk.client.request_headers, "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def send(self, message: Message) -> SendResult:
        try:
            body = build_mail(message, self.config).get()
        except (KeyError, ValueError, TypeError) as exc:  # the helper refuses the address
            return SendResult.failed(INVALID_ADDRESS, self.provider, f"not sendable: {exc!r}")
        if self._session is None:  # made here, inside the running loop
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self._url,
                json=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            ) as answer:
                text = await answer.text()
                status, headers = answer.status, answer.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            result = SendResult.failed(TRANSPORT, self.provider, f"{type(exc).__name__}: {exc}")
        else:
            if 200 <= status < 300:
                result = SendResult(
                    "accepted", self.provider, provider_message_id=headers.get("X-Message-Id")
                )
            else:
                classified = sendgrid_error(status, text)
                retry = _reset_in(headers.get("X-RateLimit-Reset")) if status == 429 else None
                result = SendResult.failed(
                    classified, self.provider, f"HTTP {status}: {text[:300]}", str(status), retry
                )
        log_attempt(message, result)
        return result

    async def accepted(self, notification_id: str) -> bool | None:
        """SendGrid cannot be asked by our id without the Email Activity add-on: unknown."""
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _reset_in(value: str | None) -> float | None:
    """`X-RateLimit-Reset` is a Unix time: how many seconds from now."""
    if value is None:
        return None
    try:
        return max(0.0, float(value) - time.time())
    except ValueError:
        return None
