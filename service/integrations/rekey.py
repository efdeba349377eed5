"""Stored EasyPost and AfterShip events get the identity today's adapters give them.

Issue 12 changed what identifies a scan these senders do not number: its time by its key
(service.tracking.ingest.time_key: the same scan with and without an offset is one) and a
null or "" carrier code alike. Events stored before keep working only if their keys follow:
otherwise the next tracker update (which resends the whole history) would store every old
scan again. Run by migration 0008; safe to run again (a row already re-keyed is unchanged).

Each row's identity is rebuilt from its stored payload (the sender's own object) exactly as
the adapter will build it on the next resend: with the shipment's origin zone as it is now. A
row whose new key another row already has (the same scan stored twice in two formats before)
keeps its old key. Rows whose payload cannot be read are left as they are. Also fills
`time_basis`.

It works on the schema of migration 0008 (the single table, its unique dedupe key); from 0013
on the keys are claimed in `tracking_event_keys`, which this does not update.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from pydantic import ValidationError

from service.integrations import aftership, easypost
from service.limits import OutOfRange
from service.tracking.ingest import id_key
from service.zones import address_zone

SELECT = """
SELECT id, carrier, tracking_number, payload FROM tracking_events
WHERE id > $1 AND payload->>'source' IN ('easypost', 'aftership')
ORDER BY id LIMIT $2
"""

UPDATE = """
UPDATE tracking_events e SET
    time_basis = u.basis,
    dedupe_key = CASE WHEN u.free THEN u.key ELSE e.dedupe_key END,
    carrier_event_id = CASE WHEN u.free THEN u.event_id ELSE e.carrier_event_id END
FROM (
    SELECT i.*, NOT EXISTS (SELECT 1 FROM tracking_events o
                            WHERE o.dedupe_key = i.key AND o.id <> i.id) AS free
    FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[])
        AS i(id, key, event_id, basis)
) u
WHERE e.id = u.id
  AND (e.dedupe_key, e.time_basis) IS DISTINCT FROM (u.key, u.basis)
"""


ORIGINS = """
SELECT s.carrier, s.tracking_number, s.origin_postal_code, s.origin_country
FROM shipments s JOIN unnest($1::text[], $2::text[]) AS i(carrier, tracking_number)
  ON s.carrier = i.carrier AND s.tracking_number = i.tracking_number
"""


def identity(payload: dict[str, Any], origin: str | None) -> tuple[str, str] | None:
    """(event id, time basis) of a stored EasyPost/AfterShip event, or None if unreadable."""
    try:
        if payload.get("source") == "easypost":
            detail = easypost.TrackingDetail.model_validate(payload.get("detail"))
            when, where_at = easypost.detail_time(detail, origin)
            return easypost.detail_id(detail, when, where_at), when.basis
        checkpoint = aftership.Checkpoint.model_validate(payload.get("checkpoint"))
        when, where_at = aftership.checkpoint_time(checkpoint, origin)
        return aftership.checkpoint_id(checkpoint, when, where_at), when.basis
    except (ValidationError, ValueError, OutOfRange):
        return None


async def rekey(conn: asyncpg.Connection, batch: int = 2000) -> int:
    """Re-key every stored EasyPost/AfterShip event; how many rows changed."""
    last, changed = 0, 0
    while True:
        rows = await conn.fetch(SELECT, last, batch)
        if not rows:
            return changed
        last = rows[-1]["id"]
        parcels = sorted({(r["carrier"], r["tracking_number"]) for r in rows})
        origins = {(o["carrier"], o["tracking_number"]):
                   address_zone(o["origin_postal_code"], o["origin_country"])
                   for o in await conn.fetch(ORIGINS, [p[0] for p in parcels],
                                             [p[1] for p in parcels])}
        updates: dict[bytes, tuple[int, str, str]] = {}
        for row in rows:
            payload = row["payload"]  # text on a connection without the pool's JSON codec
            found = identity(orjson.loads(payload) if isinstance(payload, str) else payload,
                             origins.get((row["carrier"], row["tracking_number"])))
            if found is None:
                continue
            key = id_key(row["carrier"], row["tracking_number"], found[0])
            updates.setdefault(key, (row["id"], found[0], found[1]))  # first stored wins
        items = list(updates.items())
        status = await conn.execute(
            UPDATE, [v[0] for _, v in items], [k for k, _ in items],
            [v[1] for _, v in items], [v[2] for _, v in items])
        changed += int(status.rsplit(" ", 1)[1])
