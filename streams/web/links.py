"""Signed, expiring links to a customer's preference page (`/p/{token}`).

A token is `<payload>.<mac>`, both base64url: the payload names the customer,
the expiry and the key id; the MAC is HMAC-SHA256 over the payload with that
key. Several keys can verify while only the first signs, so a key is rotated
by putting the new one first and dropping the old one once its links expired.
Time is an argument: the caller reads the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime


class BadLink(ValueError):
    """A token that does not open the page; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkKeys:
    keys: dict[str, bytes]
    signing: str

    @classmethod
    def parse(cls, spec: str) -> LinkKeys:
        """`id:secret,id2:secret2` (from CLARION_LINK_KEYS); the first one signs."""
        pairs = [p.split(":", 1) for p in spec.split(",") if p.strip()]
        if not pairs or any(len(p) != 2 or not p[0].strip() or len(p[1]) < 16 for p in pairs):
            raise ValueError("link keys are id:secret pairs, each secret 16 characters or more")
        keys = {kid.strip(): secret.encode() for kid, secret in pairs}
        return cls(keys, pairs[0][0].strip())

    def sign(self, customer_id: str, expires: datetime) -> str:
        payload = _b64(
            json.dumps(
                {"c": customer_id, "e": int(expires.timestamp()), "k": self.signing},
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{_b64(self._mac(self.signing, payload))}"

    def read(self, token: str, now: datetime) -> str:
        """The customer id a valid, unexpired token names; BadLink otherwise.

        The MAC is checked, against every listed key, before the payload is decoded:
        nothing a forger wrote is parsed. `unverified` covers a forged or altered
        token and one signed by a key no longer listed."""
        payload, dot, mac = token.partition(".")
        if not dot or not payload.isascii() or not mac.isascii():
            raise BadLink("malformed")
        try:
            given = _unb64(mac)
        except ValueError:
            raise BadLink("malformed") from None
        kid = next(
            (k for k in self.keys if hmac.compare_digest(given, self._mac(k, payload))), None
        )
        if kid is None:
            raise BadLink("unverified")
        try:
            fields = json.loads(_unb64(payload))
            named, customer, expires = str(fields["k"]), str(fields["c"]), int(fields["e"])
        except (ValueError, KeyError, TypeError, OverflowError):
            raise BadLink("malformed") from None
        if named != kid:
            raise BadLink("unverified")
        if now.timestamp() >= expires:
            raise BadLink("expired")
        return customer

    def _mac(self, kid: str, payload: str) -> bytes:
        return hmac.new(self.keys[kid], payload.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
