"""The pages' own words, one catalogue per locale (templates/pages/i18n/<locale>.json).

Every catalogue has the same keys and placeholders (a test holds them together); a
customer's locale picks one the way messages pick templates (es-MX -> es, pt-PT -> pt-BR,
anything else -> en), and a browser's Accept-Language does the same when we know nothing
about the reader (a bad link).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Final

from service.settings import REPO_ROOT
from workers.render.locales import formatting_locale, locale_chain, normalize
from workers.render.render import tidy

PAGE_LOCALES: Final = ("en", "es", "de", "pt-BR")
CATALOGUES = REPO_ROOT / "templates" / "pages" / "i18n"


@cache
def load(locale: str) -> dict[str, str]:
    texts: dict[str, str] = json.loads((CATALOGUES / f"{locale}.json").read_text("utf-8"))
    return texts


class Strings:
    """One locale's strings: `strings("eta_likely", day=...)`."""

    def __init__(self, locale: str, requested: str | None = None) -> None:
        self.locale = locale  # the catalogue's
        self.formatting = formatting_locale(requested, locale)  # for dates
        self._texts = load(locale)

    def __call__(self, key: str, /, **values: object) -> str:
        text = self._texts[key]
        return tidy(text.format(**values)) if values else text

    def has(self, key: str) -> bool:
        return key in self._texts


@cache
def strings_for(requested: str | None) -> Strings:
    """The catalogue for a customer's locale tag (falling back as messages do)."""
    return Strings(locale_chain(requested, PAGE_LOCALES)[0], requested)


def negotiate(accept_language: str | None) -> str | None:
    """The best locale tag of an Accept-Language header that we have a catalogue for."""
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        raw, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        tag = normalize(raw)
        if tag is not None and quality > 0:
            ranked.append((-quality, position, tag))
    for _, _, candidate in sorted(ranked):
        if locale_chain(candidate, PAGE_LOCALES, default="")[:1]:
            return candidate
    return None
