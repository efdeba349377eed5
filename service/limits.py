"""What the whole pipeline can store and compute with, checked once at the edge.

- Text: PostgreSQL's text and jsonb cannot hold U+0000, and UTF-8 cannot encode a lone
  surrogate (U+D800-U+DFFF), so either in any string of a body is refused (or, in a sender's
  webhook, replaced and noted).
- JSON: at most MAX_JSON_DEPTH levels of nesting.
- Times: events, orders, labels and quotes between 1970 and 2100 (the ETA features, the
  simulator and pandas' nanosecond timestamps all compute inside that); a promised or
  carrier-estimated date within DATE_SPREAD of the label or scan it belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.errors import FieldError

MAX_JSON_DEPTH = 32
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# How far a promised (or carrier-estimated) delivery date may lie from its label (or scan).
DATE_SPREAD = timedelta(days=3 * 366)

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# In raw JSON: the NUL escape, or any surrogate escape (a valid pair is fine, but only a
# full parse can tell). A false alarm (e.g. an escaped backslash before "u0000") costs a parse.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
UNSTORABLE_MESSAGE = "contains a character that cannot be stored (U+0000 or a lone surrogate)"


def unstorable(text: str) -> bool:
    """True when PostgreSQL cannot store this text."""
    return _UNSTORABLE.search(text) is not None


def scrub(text: str) -> str:
    """The text with every unstorable character replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _join(path: str, part: object) -> str:
    return f"{path}.{part}" if path else str(part)


def _walk(data: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, problem) for each unstorable string (keys too) and each too-deep value."""
    stack: list[tuple[Any, str, int]] = [(data, path, 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            if unstorable(value):
                yield where or "body", UNSTORABLE_MESSAGE
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                yield where or "body", f"nested deeper than {MAX_JSON_DEPTH} levels"
                continue
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in pairs:
                # Paths are shown and stored: never with the character they complain of.
                name = scrub(key) if isinstance(key, str) else key
                if isinstance(key, str) and unstorable(key):
                    yield _join(where, name), UNSTORABLE_MESSAGE
                stack.append((item, _join(where, name), depth + 1))


def json_problems(data: Any, prefix: str = "") -> list[FieldError]:
    """Field errors for what in parsed JSON cannot be stored (first problems, in body order)."""
    found = sorted(_walk(data, prefix))
    return [FieldError(field, message, "unstorable" if "character" in message else "too_deep")
            for field, message in found[:20]]


def raw_json_suspect(raw: bytes) -> bool:
    """Cheap pre-check of raw JSON: may it hold a NUL or a lone surrogate, or nest too deep?
    (Fewer brackets than the depth limit cannot nest deeper than it.)"""
    return (_SUSPECT_ESCAPE.search(raw) is not None
            or raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH)


def scrubbed(data: Any, path: str = "") -> tuple[Any, list[str]]:
    """A sender's parsed JSON with unstorable characters replaced, and the paths replaced."""
    changed: list[str] = []

    def clean(value: Any, where: str, depth: int) -> Any:
        if isinstance(value, str):
            if unstorable(value):
                changed.append(where or "body")
                return scrub(value)
            return value
        if depth > MAX_JSON_DEPTH:
            return value  # json depth is checked elsewhere; never recurse without bound
        if isinstance(value, dict):
            cleaned = {}
            for key, item in value.items():
                if unstorable(key):
                    changed.append(_join(where, scrub(key)))
                    key = scrub(key)
                cleaned[key] = clean(item, _join(where, key), depth + 1)
            return cleaned
        if isinstance(value, list):
            return [clean(v, _join(where, i), depth + 1) for i, v in enumerate(value)]
        return value

    return clean(data, path, 1), changed


class OutOfRange(ValueError):
    """A time or date the pipeline cannot compute with; the message says the range."""


TIME_RANGE_MESSAGE = "must be between 1970-01-01 and 2100-01-01 (UTC)"
# The same ranges as the OpenAPI document states them: RFC 3339 text in those years (a
# pattern rather than `format`, which generators can only meet by filtering).
_DAY = "(19[7-9][0-9]|20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
DATE_PATTERN = f"^{_DAY}$"
INSTANT_PATTERN = (f"^{_DAY}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{{1,6}})?"
                   "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")


def check_instant(value: datetime) -> datetime:
    """The aware datetime, or OutOfRange. Never overflows: the year is checked first."""
    if not 1969 <= value.year <= 2100 or not EARLIEST <= value < LATEST:
        raise OutOfRange(TIME_RANGE_MESSAGE)
    return value


def check_day(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise OutOfRange("must be between 1970-01-01 and 2099-12-31")
    return value


def near(day: date, anchor: datetime | date, what: str) -> str | None:
    """Why `day` is too far from `anchor` (a label or scan time), or None when it is near."""
    base = anchor.date() if isinstance(anchor, datetime) else anchor
    years = DATE_SPREAD.days // 366
    if abs(day - base) > DATE_SPREAD:
        return f"must be within {years} years of {what}"
    return None
