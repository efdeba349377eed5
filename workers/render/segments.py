"""SMS segment counting: GSM-7 (with its extension table) versus UCS-2.

A carrier bills and delivers an SMS in segments. A single GSM-7 message holds 160
septets; once it is longer, each part loses 7 septets to the concatenation header
(153 left). Extension-table characters cost two septets (an escape plus the
character) and are never split across parts. Anything outside GSM-7 switches the
*whole* message to UCS-2: 70 UTF-16 code units alone, 67 per part, and a surrogate
pair (most emoji) counts as two units that are never split either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# 3GPP TS 23.038 default alphabet (the escape 0x1B itself is not a printable character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# What Twilio's "smart encoding" and most senders replace before sending, so that a
# typographic dash from a date formatter does not double the cost of a message.
_SMART_REPLACEMENTS = {
    "\u2013": "-", "\u2014": "-", "\u2012": "-", "\u2010": "-", "\u2011": "-",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2002": " ", "\u2003": " ",
    "\u2026": "...", "\u00ab": '"', "\u00bb": '"', "\u2022": "-", "\u00b7": "-",
}
_SMART_TABLE = str.maketrans(_SMART_REPLACEMENTS)


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a body travels: its encoding, its length in that encoding's units, its parts."""

    encoding: Encoding
    units: int
    segments: int


def smart_encode(text: str) -> str:
    """Replace typographic punctuation and odd spaces with their GSM-7 look-alikes."""
    return text.translate(_SMART_TABLE)


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 basic set or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _gsm7_costs(text: str) -> list[int]:
    return [2 if ch in GSM7_EXTENSION else 1 for ch in text]


def _ucs2_costs(text: str) -> list[int]:
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _pack(costs: list[int], single: int, part: int) -> tuple[int, int]:
    total = sum(costs)
    if total == 0:
        return 0, 0
    if total <= single:
        return total, 1
    # Greedy packing: a two-unit character that does not fit starts the next part.
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments += 1
            used = 0
        used += cost
    return total, segments


def count_segments(text: str) -> SegmentInfo:
    """Count the segments `text` needs as sent (no smart replacement is applied here)."""
    if is_gsm7(text):
        units, segments = _pack(_gsm7_costs(text), GSM7_SINGLE, GSM7_PART)
        return SegmentInfo("GSM-7", units, segments)
    units, segments = _pack(_ucs2_costs(text), UCS2_SINGLE, UCS2_PART)
    return SegmentInfo("UCS-2", units, segments)
