"""Which template locale serves a customer's locale: exact, then language, then a sibling, then en."""

from __future__ import annotations

import re
from collections.abc import Iterable

DEFAULT_LOCALE = "en"
_TAG = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z0-9]{2,8}))?$")


def normalize(tag: str | None) -> str | None:
    """"pt_br" -> "pt-BR", "ES" -> "es"; None for anything that is not a plausible tag."""
    if not tag:
        return None
    match = _TAG.match(tag.strip())
    if match is None:
        return None
    language, region = match.group(1).lower(), match.group(2)
    if region is None:
        return language
    return f"{language}-{region.upper() if len(region) == 2 else region.title()}"


def locale_chain(requested: str | None, available: Iterable[str],
                 default: str = DEFAULT_LOCALE) -> list[str]:
    """The available locales to try, best first.

    "es-MX" -> ["es", "en"] when only es and en exist; "pt" or "pt-PT" -> ["pt-BR", "en"]:
    a sibling of the same language reads better than a different language.
    """
    have = set(available)
    tag = normalize(requested)
    candidates: list[str] = []
    if tag is not None:
        language = tag.split("-")[0]
        candidates += [tag, language]
        candidates += sorted(a for a in have if a.split("-")[0] == language)
    candidates.append(default)
    chain: list[str] = []
    for candidate in candidates:
        if candidate in have and candidate not in chain:
            chain.append(candidate)
    return chain


def formatting_locale(requested: str | None, used: str) -> str:
    """The locale for dates: the customer's own when its language matches the template's.

    An es-MX customer reading the es template gets Mexican date formats; an fr customer
    reading the en fallback gets English dates, not French ones inside English text.
    """
    tag = normalize(requested)
    if tag is not None and tag.split("-")[0] == used.split("-")[0]:
        return tag
    return used
