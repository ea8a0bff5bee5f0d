"""The preference page speaks the customer's language: English, or Spanish as the templates do."""

from __future__ import annotations

from dataclasses import fields

from streams.web.page import WORDS, words_for


def test_the_customers_locale_picks_the_language() -> None:
    assert words_for("es").lang == "es"
    assert words_for("es-MX").lang == "es"
    assert words_for(None, "es").lang == "es"  # the first locale that is known
    assert words_for("fr", "es-US").lang == "es"
    assert words_for("fr").lang == "en"  # not spoken: English
    assert words_for().lang == "en"


def test_every_language_says_everything() -> None:
    for words in WORDS.values():
        for field in fields(words):
            value = getattr(words, field.name)
            assert value, (words.lang, field.name)
        assert set(words.channels) == {"sms", "email", "voice"}
    # Placeholders match, so no sentence loses its value in translation.
    english, spanish = WORDS["en"], WORDS["es"]
    for field in fields(english):
        value = getattr(english, field.name)
        if isinstance(value, str):
            assert value.count("{}") == getattr(spanish, field.name).count("{}"), field.name
