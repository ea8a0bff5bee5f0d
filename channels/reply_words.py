"""What a customer's SMS reply means: a revocation, a keyword, an answer, or free text.

Since April 2025 the TCPA rule (47 CFR 64.1200(a)(10)) counts a reply using
"stop, quit, end, revoke, opt out, cancel, or unsubscribe" as a revocation, by
whatever words it comes in; a reply a reasonable person would read as one counts
too. So the words are read after normalising what people type (case,
punctuation, accents, stretched letters, look-alike letters from other scripts,
digits for letters), in English and Spanish, as the whole reply or as a short
request around one of them ("please stop texting me", "no más mensajes").

It fails closed: a reply that holds a revocation word or phrase but says more
than a request ("don't cancel my card", "I'll pay at the end of the month") is
`maybe_stop`. The caller revokes consent for the channel all the same and hands
the words to an agent, who can restore it by asking; what it must never be is
only filed. The table of replies this is tested with is tests/unit/test_reply_words.py.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Meaning = Literal["stop", "maybe_stop", "start", "help", "yes", "no"]

# Letters from other scripts that look like Latin ones, after casefolding
# (Unicode's confusables, the ones seen in spam filters' lists for these words).
_LOOK_ALIKES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "н": "h", "і": "i",
        "ј": "j", "к": "k", "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t",
        "у": "y", "х": "x", "ԝ": "w", "ո": "n",
        # Greek
        "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "μ": "m", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    }
)  # fmt: skip
_DIGIT_LETTERS = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
_LETTERS_AND_DIGITS = re.compile(r"(?=\w*[a-z])(?=\w*\d)\w+")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_RUNS = re.compile(r"(.)\1+")


def _squeeze(word: str) -> str:
    """`stooop` and `stop` alike: a run of one letter counts once."""
    return _RUNS.sub(r"\1", word)


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(_squeeze(w) for w in text.split())


# Each alone, or with only the filler words below around it, is a revocation.
_REVOKE = [
    # the FCC's words and Twilio's and the CTIA's keywords
    "stop", "stopall", "stop all", "quit", "end", "revoke", "opt out", "optout", "opt me out",
    "cancel", "unsubscribe", "unsub", "remove me", "take me off", "leave me alone",
    "do not text", "dont text", "do not message", "dont message", "do not contact",
    "dont contact", "no more texts", "no more messages", "no more",
    # Spanish, as the preference page speaks it
    "alto", "para", "parar", "paren", "pare", "detener", "detente", "basta", "cancelar",
    "cancela", "anular", "revocar", "darme de baja", "dar de baja", "baja", "desuscribir",
    "desuscribirme", "no mas", "no mas mensajes", "no me escriban", "no me escribas",
    "no me envien", "no me manden", "dejen de escribirme", "dejen de enviarme",
    "dejen de mandarme", "no quiero mensajes", "no quiero mas mensajes",
]  # fmt: skip
# Inside a longer reply, these make it a possible revocation (never only filed).
_REVOKE_INSIDE = {
    w for w in (_phrase(p) for p in _REVOKE) if w not in {("para",), ("pare",), ("no", "mas")}
}
_REVOKE_INSIDE |= {
    _phrase(p)
    for p in [
        "wrong number", "not my number", "numero equivocado", "no es mi numero",
        "stop calling", "do not call", "dont call", "no me llamen", "harassment", "acoso",
    ]
}  # fmt: skip
_REVOKE_WHOLE = {_phrase(p) for p in _REVOKE}

# Words that carry no meaning of their own around a revocation: "please stop
# texting me now", "quiero darme de baja por favor". A word not here (a
# negation, a noun, "calling") makes the reply a possible revocation instead.
_FILLER = {
    _squeeze(w)
    for w in [
        "please", "pls", "plz", "plese", "now", "asap", "thanks", "thank", "you", "thx", "ty",
        "me", "my", "i", "im", "want", "would", "like", "to", "ok", "okay", "just", "already",
        "again", "all", "the", "your", "this", "these", "that", "it", "number", "phone", "list",
        "from", "texting", "texts", "text", "txt", "txts", "messaging", "messages", "message",
        "msgs", "msg", "sending", "send", "sms", "hey", "hi", "hello", "sir", "maam",
        "por", "favor", "porfavor", "porfa", "ya", "de", "mi", "mis", "los", "las", "el", "la",
        "a", "este", "esta", "estos", "numero", "lista", "mensajes", "mensaje", "textos",
        "texto", "enviar", "enviarme", "mandar", "mandarme", "escribir", "escribirme",
        "gracias", "todo", "todos", "quiero", "hola", "ahora",
    ]
}  # fmt: skip

_WHOLE: dict[tuple[str, ...], Meaning] = {
    **{p: "start" for p in map(_phrase, ["start", "unstop", "resume", "reanudar"])},
    **{p: "help" for p in map(_phrase, ["help", "info", "ayuda"])},
    **{
        p: "yes"
        for p in map(
            _phrase,
            ["yes", "y", "si", "yes it was me", "yes that was me", "si fui yo", "si era yo"],
        )
    },
    **{
        p: "no"
        for p in map(
            _phrase,
            ["no", "n", "not me", "no it wasnt me", "no that wasnt me", "it wasnt me", "no fui yo"],
        )
    },
}


def normalise(body: str) -> tuple[str, ...]:
    """The reply's words as compared: plain lower-case Latin letters, runs squeezed."""
    text = unicodedata.normalize("NFKC", body)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")  # zero-width and co.
    text = text.casefold().translate(_LOOK_ALIKES)
    text = unicodedata.normalize("NFD", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")  # accents: más, mas
    text = text.replace("'", "").replace("\u2019", "")  # don't and its typographic twin: dont
    text = _LETTERS_AND_DIGITS.sub(lambda m: m.group().translate(_DIGIT_LETTERS), text)
    words = tuple(_squeeze(w) for w in _NOT_WORD.split(text) if w)
    if len(words) > 1 and all(len(w) == 1 for w in words):  # S.T.O.P, s t o p
        return (_squeeze("".join(words)),)
    return words


def read_reply(body: str) -> Meaning | None:
    """What a reply means; None for free text (recorded, and an agent's where the policy says)."""
    words = normalise(body)
    if not words:
        return None
    if words in _WHOLE:
        return _WHOLE[words]
    rest = _without(words, _REVOKE_WHOLE)
    if rest is not None and all(w in _FILLER for w in rest):
        return "stop"
    if _without(words, _REVOKE_INSIDE) is not None:
        return "maybe_stop"
    return None


def _without(words: tuple[str, ...], phrases: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The words left once every phrase found is taken out; None when none is found."""
    longest = max(len(p) for p in phrases)
    left: list[str] = []
    found = False
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            if words[i : i + n] in phrases:
                found, i = True, i + n
                break
        else:
            left.append(words[i])
            i += 1
    return tuple(left) if found else None
