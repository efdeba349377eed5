"""Tracking numbers as people type them: case, spaces and dashes do not matter.

The one home of the rule, in Python and as the SQL expression the search index is built on
(migration 0005); the two must agree, and a test holds them together.
"""

from __future__ import annotations

from typing import Final

# SQL for a stored tracking number, normalized; `{column}` is the column or alias.column.
NORMALIZED_SQL: Final = "upper(translate({column}, ' -', ''))"


def normalized_tracking_number(value: str) -> str:
    """"1z 999-aa1" -> "1Z999AA1": upper case, no whitespace, no dashes."""
    return "".join(value.split()).replace("-", "").upper()


def normalized_sql(column: str = "tracking_number") -> str:
    return NORMALIZED_SQL.format(column=column)
