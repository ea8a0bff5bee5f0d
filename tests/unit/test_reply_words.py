"""The table of real-world replies (issue 27): what each one means, failing closed.

`stop` revokes SMS consent at once; `maybe_stop` revokes it too and hands the words
to an agent; None is free text (recorded; an agent's where the policy says).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.reply_words import normalise, read_reply

REPLIES: list[tuple[str, str | None]] = [
    # the FCC's seven words, alone, as people type them
    ("STOP", "stop"),
    ("Stop.", "stop"),
    ("STOP!", "stop"),
    ("stop!!!", "stop"),
    (" stop ", "stop"),
    ("Stoooop", "stop"),
    ("S.T.O.P", "stop"),
    ("st0p", "stop"),
    ("\u0405\u0422\u041e\u0420", "stop"),  # STOP in Cyrillic capitals
    ("\uff33\uff34\uff2f\uff30", "stop"),  # full-width
    ("sto\u200bp", "stop"),  # a zero-width space inside
    ("quit", "stop"),
    ("End", "stop"),
    ("revoke", "stop"),
    ("Opt out", "stop"),
    ("opt-out", "stop"),
    ("OPTOUT", "stop"),
    ("Cancel", "stop"),
    ("unsubscribe", "stop"),
    ("STOPALL", "stop"),
    ("stop all", "stop"),
    # a clear request around one of them
    ("please stop texting me", "stop"),
    ("Please stop", "stop"),
    ("stop texting me", "stop"),
    ("STOP SENDING ME MESSAGES", "stop"),
    ("unsubscribe me", "stop"),
    ("I want to opt out", "stop"),
    ("Please remove me from your list", "stop"),
    ("Take me off this list", "stop"),
    ("don't text me", "stop"),
    ("Don\u2019t text me anymore", "maybe_stop"),  # "anymore" is not a filler word
    ("no more texts please", "stop"),
    ("leave me alone", "stop"),
    # Spanish
    ("Alto", "stop"),
    ("PARAR", "stop"),
    ("Para", "stop"),
    ("cancelar", "stop"),
    ("Basta ya", "stop"),
    ("no más", "stop"),
    ("No más mensajes por favor", "stop"),
    ("quiero darme de baja", "stop"),
    ("dejen de enviarme mensajes", "stop"),
    ("Baja", "stop"),
    # may be a revocation: revoke and hand to an agent
    ("stop calling me", "maybe_stop"),
    ("don't cancel my card", "maybe_stop"),
    ("I'll pay at the end of the month", "maybe_stop"),
    ("wrong number", "maybe_stop"),
    ("Número equivocado", "maybe_stop"),
    ("yes stop", "maybe_stop"),
    ("this is harassment", "maybe_stop"),
    ("Stop harassing me or I will call a lawyer", "maybe_stop"),
    # keywords that keep today's meaning
    ("START", "start"),
    ("unstop", "start"),
    ("HELP", "help"),
    ("info", "help"),
    ("ayuda", "help"),
    ("YES", "yes"),
    ("y", "yes"),
    ("Sí", "yes"),
    ("YES it was me", "yes"),
    ("no", "no"),
    ("N", "no"),
    ("not me", "no"),
    ("No fui yo", "no"),
    # free text: recorded, never a revocation
    ("can I pay friday", None),
    ("Who is this?", None),
    ("I already paid", None),
    ("Thanks", None),
    ("ok", None),
    ("lo pago el viernes", None),
    ("gracias, para el viernes", None),
    ("Stopped by the branch yesterday", None),
    ("", None),
    ("!!!", None),
]


@pytest.mark.parametrize(("body", "expected"), REPLIES)
def test_what_each_reply_means(body: str, expected: str | None) -> None:
    assert read_reply(body) == expected


def test_the_table_is_large_enough_and_covers_each_meaning() -> None:
    assert len(REPLIES) >= 40
    assert {m for _, m in REPLIES} == {"stop", "maybe_stop", "start", "help", "yes", "no", None}


def test_normalising_keeps_words_apart_and_plain() -> None:
    assert normalise("\uff30lease, STÓP \u2014 now!") == ("please", "stop", "now")
    assert normalise("no   más") == ("no", "mas")


@given(
    st.sampled_from(["stop", "quit", "end", "revoke", "opt out", "cancel", "unsubscribe"]),
    st.text(),
)
def test_any_reply_holding_one_of_the_fccs_words_revokes(word: str, around: str) -> None:
    """Fail closed: the words anywhere, with anything around them, revoke (for sure or maybe)."""
    body = f"{around} {word} {around}"
    assert read_reply(body) in ("stop", "maybe_stop")
