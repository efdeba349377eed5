from __future__ import annotations

import pytest

from workers.render.segments import count_segments, is_gsm7, smart_encode


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("Grüße aus München, Ñoño à ¿qué?", "GSM-7", 31, 1),   # all in the basic table
    ("€" * 80, "GSM-7", 160, 1),           # extension chars cost two septets
    ("€" * 80 + "a", "GSM-7", 161, 2),
    ("{}[]~^|\\", "GSM-7", 16, 1),
    ("á" * 70, "UCS-2", 70, 1),             # á is not GSM-7: whole message goes UCS-2
    ("á" * 71, "UCS-2", 71, 2),
    ("a" * 69 + "ç", "UCS-2", 70, 1),
    ("😀" * 35, "UCS-2", 70, 1),            # emoji are surrogate pairs: two units each
    ("😀" * 35 + "a", "UCS-2", 71, 2),
    ("a" * 134 + "😀" * 0 + "ã", "UCS-2", 135, 3),
])
def test_segment_counting(text: str, encoding: str, units: int, segments: int) -> None:
    info = count_segments(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


def test_two_unit_characters_are_not_split_across_parts() -> None:
    # 152 septets then an extension char: it would straddle the 153 boundary, so it
    # opens part two; the byte count alone (154 + 10) would also say two parts.
    assert count_segments("a" * 152 + "€" + "a" * 10).segments == 2
    # 306 septets fit two parts exactly, but one € at position 153 pushes a septet over.
    assert count_segments("a" * 152 + "€" + "a" * 152).segments == 3
    # UCS-2: 66 units then an emoji does not fit the 67-unit part.
    assert count_segments("á" * 66 + "😀" + "á" * 66).segments == 3


def test_smart_encoding_keeps_messages_in_gsm7() -> None:
    text = "Tue, Mar 4\u2009\u2013\u2009Thu, Mar 6 \u201cby 7:00\u202fPM\u201d \u2026"
    assert not is_gsm7(text)
    assert smart_encode(text) == 'Tue, Mar 4 - Thu, Mar 6 "by 7:00 PM" ...'
    assert is_gsm7(smart_encode(text))
