"""What a rendered message costs and owes: SMS segments, an opt-out instruction, and
what a voicemail may say.

Used by `clarion policy check`, which renders every template with sample data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from channels.reply_words import normalise

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


# Reg F 1006.2(j): a limited-content message holds the consumer's name, a request to
# reply, a person's name and a telephone number (and, optionally, a salutation, the
# date, a generic word that it is about an account, an opt-out), and nothing else.
# Words that would tell whoever hears the machine that a debt is being collected:
# stems (a word of the message, as `normalise` writes it, that starts with one), and
# whole words.
DEBT_STEMS = (
    "debt", "collect", "overdue", "pastdue", "delinquen", "arrear",
    "deuda", "cobr", "vencid", "atrasad", "adeud", "moros",
)  # fmt: skip
DEBT_WORDS = (
    "payment", "payments", "pay", "balance", "balances", "amount", "amounts", "owe", "owed",
    "owes", "owing", "late", "default", "creditor", "pago", "pagos", "saldo", "mora",
)  # fmt: skip
_PAST_DUE = re.compile(r"\bpast\s+due\b", re.I)
_REPLY_WORDS = (
    "call", "reply", "return", "contact", "reach",
    "llame", "llamenos", "llamar", "devuelva", "devuelvanos", "comuniquese", "responda",
)  # fmt: skip
# As `normalise` writes them (runs squeezed: "collect" is "colect"), once.
_REPLY_STEMS = normalise(" ".join(_REPLY_WORDS))
_DEBT_STEMS = normalise(" ".join(DEBT_STEMS))
_DEBT_EXACT = frozenset(normalise(" ".join(DEBT_WORDS)))
_PHONE = re.compile(r"\+?\d[\d\s().-]{8,}\d")
_MONEY = re.compile(r"[$€£]\s?\d[\d,]*(?:[.,]\d{2})?|\b\d[\d,]*[.,]\d{2}\b|\b(?:USD|EUR|GBP|MXN)\b")
_DIGITS = re.compile(r"\d{4,}")


def limited_content(
    text: str,
    source: str,
    *,
    customer_name: str,
    person: str | None,
    extra_words: Sequence[str] = (),
) -> list[tuple[int, str]]:
    """What keeps a rendered voicemail from being a limited-content message, each with the
    line of `source` (the template's text) to look at; empty when it is one."""
    found: list[tuple[int, str]] = []
    words = normalise(_PAST_DUE.sub("pastdue", text))
    if customer_name.lower() not in text.lower():
        found.append((1, "it does not say the customer's name ({{ customer.name }})"))
    if person is None:
        found.append(
            (1, "no person's name: declare voicemail.person in the policy set, and say it")
        )
    elif person.lower() not in text.lower():
        found.append((1, f"it does not give the person's name the set declares ({person!r})"))
    phones = _PHONE.findall(text)
    if not phones:
        found.append((1, "it gives no telephone number to call back"))
    if not any(w.startswith(_REPLY_STEMS) for w in words):
        found.append((1, "it does not ask the customer to call back or reply"))
    exact = _DEBT_EXACT | set(normalise(" ".join(extra_words)))
    said = {n[0]: w for w in re.findall(r"\w+", text) if (n := normalise(w))}
    said["pastdue"] = "past due"
    for word in dict.fromkeys(w for w in words if w.startswith(_DEBT_STEMS) or w in exact):
        shown = said.get(word, word)
        found.append((_line(source, shown), f"it says {shown!r}, which reveals a debt"))
    rest = _PHONE.sub(" ", text)
    for match in dict.fromkeys(_MONEY.findall(rest)):
        found.append((_line(source, match), f"it states an amount ({match.strip()!r})"))
    for match in dict.fromkeys(_DIGITS.findall(rest)):
        found.append((_line(source, match), f"it gives account digits ({match!r})"))
    return found


_COMMENT = re.compile(r"\{#.*?#\}", re.S)


def _line(source: str, needle: str) -> int:
    """The first line of the template that holds `needle` (a variable's line is not known),
    its comments left out."""
    said = _COMMENT.sub(lambda m: "\n" * m.group().count("\n"), source)
    for number, line in enumerate(said.splitlines(), 1):
        if needle.lower() in " ".join(normalise(line)) or needle.lower() in line.lower():
            return number
    return 1
