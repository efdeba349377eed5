"""Every page string in every locale, with the same placeholders; colours that read."""

from __future__ import annotations

import string

import pytest

from service.pages.branding import MIN_CONTRAST, PALETTE, TEXT_PAIRS, branding, contrast
from service.pages.catalogue import PAGE_LOCALES, load, negotiate, strings_for
from service.settings import load_settings
from service.tracking.carrier_tables import SUBSTATUSES
from service.tracking.taxonomy import STATUSES


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("locale", PAGE_LOCALES)
def test_every_locale_has_every_string(locale: str) -> None:
    english, texts = load("en"), load(locale)
    assert texts.keys() == english.keys()
    for key, text in texts.items():
        assert text.strip(), key
        assert _placeholders(text) == _placeholders(english[key]), key
    for status in STATUSES:
        assert f"status.{status}" in texts
    for substatuses in SUBSTATUSES.values():
        for substatus in substatuses:
            assert f"substatus.{substatus}" in texts


@pytest.mark.parametrize(("requested", "used"), [
    ("de", "de"), ("es-MX", "es"), ("pt", "pt-BR"), ("pt-PT", "pt-BR"), ("fr", "en"),
    (None, "en"), ("english", "en"),
])
def test_locales_fall_back_like_messages(requested: str | None, used: str) -> None:
    assert strings_for(requested).locale == used


@pytest.mark.parametrize(("header", "tag"), [
    ("de-DE,de;q=0.9,en;q=0.8", "de-DE"), ("fr-FR, es;q=0.5", "es"), ("fr", None),
    ("en;q=0, pt-BR;q=0.3", "pt-BR"), ("*", None), ("", None), ("de;q=x, es", "es"),
])
def test_accept_language(header: str, tag: str | None) -> None:
    assert negotiate(header) == tag


def test_text_colours_reach_the_contrast_floor() -> None:
    for text, background in TEXT_PAIRS:
        assert contrast(PALETTE[text], PALETTE[background]) >= MIN_CONTRAST, (text, background)
    for colour in ("#0b6e4f", "#3b82f6", "#777777", "#ffd700", "#ffffff", "#000000",
                   "#ff0000", "#00ff00"):
        shop = branding(load_settings(shop_brand_color=colour))
        assert contrast(shop.on_brand, shop.brand) >= MIN_CONTRAST, colour
        assert contrast(shop.ink, PALETTE["card"]) >= MIN_CONTRAST, colour
