"""Finding shipments for support agents: by order, shipment, tracking number or customer.

Each criterion is one indexed lookup of shipment ids (migration 0005 adds the indexes);
they are combined (all must match, or any may for a free-text search), joined to their
orders and paged newest first by (created_at, shipment_id), a keyset that the
`shipments_newest` index serves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime

import asyncpg
import msgspec

from service.tracking.numbers import normalized_sql


@dataclass(frozen=True)
class Criteria:
    """What to look for, already normalized (service.support.search builds it)."""

    order_id: str | None = None
    shipment_id: str | None = None
    tracking_number: str | None = None  # normalized_tracking_number()
    email: str | None = None  # lower case
    phone: str | None = None  # E.164
    name_prefix: str | None = None  # lower case

    def given(self) -> dict[str, str]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    """One shipment found, with its customer."""

    shipment_id: str
    order_id: str
    carrier: str
    tracking_number: str
    status: str
    created_at: datetime
    promised_delivery_date: date | None
    delivered_at: datetime | None
    lost_at: datetime | None
    eta_p10: datetime | None
    eta_p90: datetime | None
    has_order: bool
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None


_BY_ORDER = "SELECT s.shipment_id FROM orders o JOIN shipments s ON s.order_id = o.order_id"
# criterion -> a query of shipment ids for parameter ${n}
LOOKUPS: dict[str, str] = {
    "order_id": "SELECT shipment_id FROM shipments WHERE order_id = ${n}",
    "shipment_id": "SELECT shipment_id FROM shipments WHERE shipment_id = ${n}",
    "tracking_number": (f"SELECT shipment_id FROM shipments "
                        f"WHERE {normalized_sql('tracking_number')} = ${{n}}"),
    "email": f"{_BY_ORDER} WHERE lower(o.customer_email) = ${{n}}",
    "phone": f"{_BY_ORDER} WHERE o.customer_phone = ${{n}}",
    # A prefix as a byte-wise range (text_pattern_ops): unlike LIKE with a parameter, even a
    # generic prepared plan can use the index for it. chr(1114111) is the last code point.
    "name_prefix": (f"{_BY_ORDER} WHERE lower(o.customer_name) ~>=~ ${{n}} "
                    f"AND lower(o.customer_name) ~<~ (${{n}} || chr(1114111))"),
}
HIT_COLUMNS = ", ".join(
    "o.order_id IS NOT NULL AS has_order" if c == "has_order" else
    f"o.{c}" if c.startswith("customer_") else f"s.{c}" for c in SearchHit.__struct_fields__)




def statement(criteria: Criteria, match_any: bool, after: bool) -> tuple[str, list[object]]:
    """The SQL and its leading arguments (the page size follows them)."""
    given = criteria.given()
    if not given:
        raise ValueError("no search criteria")
    args: list[object] = []
    parts = []
    for name, value in given.items():
        args.append(value)
        parts.append(LOOKUPS[name].replace("${n}", f"${len(args)}"))
    ids = (" UNION " if match_any else " INTERSECT ").join(f"({p})" for p in parts)
    keyset = ""
    if after:
        keyset = f"AND (s.created_at, s.shipment_id) < (${len(args) + 1}, ${len(args) + 2})"
    limit = f"${len(args) + (3 if after else 1)}"
    sql = f"""SELECT {HIT_COLUMNS}
              FROM shipments s LEFT JOIN orders o ON o.order_id = s.order_id
              WHERE s.shipment_id IN ({ids}) {keyset}
              ORDER BY s.created_at DESC, s.shipment_id DESC LIMIT {limit}"""
    return sql, args


async def find(conn: asyncpg.Connection, criteria: Criteria, *, match_any: bool = False,
               limit: int = 25, after: tuple[datetime, str] | None = None
               ) -> tuple[list[SearchHit], tuple[datetime, str] | None]:
    """A page of shipments, newest first, and the keyset of the next page (None at the end)."""
    sql, args = statement(criteria, match_any, after is not None)
    if after is not None:
        args += [after[0], after[1]]
    rows = await conn.fetch(sql, *args, limit + 1)
    hits = [SearchHit(**r) for r in rows[:limit]]
    more = len(rows) > limit
    return hits, ((hits[-1].created_at, hits[-1].shipment_id) if more and hits else None)


async def explain(conn: asyncpg.Connection, criteria: Criteria, match_any: bool = False
                  ) -> str:
    """The plan of a first page (for tests and the benchmark's report)."""
    sql, args = statement(criteria, match_any, False)
    rows = await conn.fetch(f"EXPLAIN {sql}", *args, 25)
    return "\n".join(r[0] for r in rows)
