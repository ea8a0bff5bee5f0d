"""The preference page speaks the customer's language: English, or Spanish as the templates do."""

from __future__ import annotations

from dataclasses import fields

from streams.web.words import WORDS, words_for


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


def test_the_browsers_languages_come_most_wanted_first() -> None:
    from streams.web.page import _accepted

    class Asked:
        def __init__(self, header: str) -> None:
            self.headers = {"Accept-Language": header}

    assert _accepted(Asked("fr-CH, fr;q=0.9, es;q=0.8, *;q=0.5")) == ["fr-CH", "fr", "es", "*"]
    assert _accepted(Asked("fr,es")) == ["fr", "es"]  # equal weights keep their order
    assert _accepted(Asked("en;q=0.2,es")) == ["es", "en"]
    assert _accepted(Asked("es;q=x,en")) == ["en"]  # a weight that is not a number is left out
    assert words_for(*_accepted(Asked("fr,es;q=0.5"))).lang == "es"
