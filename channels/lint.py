"""What a rendered message costs and owes: SMS segments, and an opt-out instruction.

Used by `clarion policy check`, which renders every template with sample data.
"""

from __future__ import annotations

import math
import re

# GSM 03.38: the basic set counts one septet a character, the extension table two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

_OPT_OUT = {
    "sms": re.compile(r"\bSTOP\b"),
    "email": re.compile(r"unsubscribe|preference page|darse de baja|enlace de baja", re.I),
}


def sms_segments(text: str) -> tuple[int, str]:
    """How many SMS segments `text` takes, and its encoding (GSM-7 or UCS-2)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        return (1 if septets <= 160 else math.ceil(septets / 153)), "GSM-7"
    units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
    return (1 if units <= 70 else math.ceil(units / 67)), "UCS-2"


def has_opt_out(channel: str, body: str) -> bool:
    """Whether an SMS says how to reply STOP, or an email how to unsubscribe."""
    pattern = _OPT_OUT.get(channel)
    return True if pattern is None else bool(pattern.search(body))
