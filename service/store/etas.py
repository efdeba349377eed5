"""ETA history: every prediction shown is kept; the shipment row carries the latest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import orjson

from service.store.accuracy import DATE_SHOWN_SPAN, RETURNED_AT, date_shown_ends_sql
from service.store.shipments import NEVER_DELIVERED, UNFINISHED, Shipment, lock_in_order
from service.zones import customer_zone


class EtaRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One ETA as it was predicted (and, once stored, shown)."""

    id: int
    shipment_id: str
    predicted_at: datetime
    model_version: str
    stage: str
    eta_p10: datetime
    eta_p50: datetime
    eta_p90: datetime
    prob_late: float | None
    reasons: list[dict[str, Any]]


COLUMNS = ", ".join(EtaRecord.__struct_fields__)


async def first_and_latest(conn: asyncpg.Connection, shipment_id: str
                           ) -> tuple[EtaRecord | None, EtaRecord | None]:
    """The first ETA shown for a shipment and the one it shows now (:data:`STORE` decides
    which that is: not always the latest by its instant)."""
    rows = await conn.fetch(
        f"""(SELECT {COLUMNS}, 'first' AS which FROM shipment_etas
             WHERE shipment_id = $1 AND NOT shadow ORDER BY id LIMIT 1)
            UNION ALL
            (SELECT {", ".join(f"e.{c}" for c in EtaRecord.__struct_fields__)}, 'latest'
             FROM shipments s JOIN shipment_etas e ON e.id = s.eta_id
             WHERE s.shipment_id = $1)""", shipment_id)
    found = {r["which"]: EtaRecord(**{k: r[k] for k in EtaRecord.__struct_fields__})
             for r in rows}
    return found.get("first"), found.get("latest")


async def history(conn: asyncpg.Connection, shipment_id: str, limit: int = 500
                  ) -> list[EtaRecord]:
    """Every ETA shown for a shipment, in the order shown (up to `limit`; no shadow ETA)."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM shipment_etas WHERE shipment_id = $1 AND NOT shadow
            ORDER BY id LIMIT $2""", shipment_id, limit)
    return [EtaRecord(**r) for r in rows]


# Show the new ETAs (in shipment_id order, as $1 is given): append each and point its
# shipment at it, unless the shipment already shows one predicted from newer inputs ($11:
# the shipment's `revision` each prediction read; see bump_revision), or from the same inputs
# at a later instant. A refresh that read the shipment before a scan landed, or ran late
# (handed over twice), never hides a newer prediction, whatever the clocks of the processes
# that made them (hosts' clocks differ; a revision does not); and an ETA that loses is not
# kept: it was never shown (the history holds what customers and agents saw, in the order
# they saw it: by id). An ETA stored without a revision (NULL: set by hand, or shown before
# revisions were kept) is ordered by its instant alone.
# The shipments are locked in shipment_id order first (lock_in_order): two refreshes of
# overlapping batches wait for each other instead of deadlocking. The check reads the
# columns the locking read returns: after waiting for a row's lock, PostgreSQL hands the
# locking read the row's newest version (EvalPlanQual), so an ETA committed meanwhile is
# seen. (A check through another table, e.g. a subquery on shipment_etas, would read the
# statement's snapshot, taken before the wait, and miss it.)
STORE = f"""
WITH {lock_in_order("eta_revision", "eta_predicted_at")},
shown AS (
    SELECT k.shipment_id, q.revision FROM locked k
    JOIN unnest($1::text[], $11::bigint[]) AS q(shipment_id, revision) USING (shipment_id)
    WHERE CASE WHEN k.eta_revision IS NULL OR q.revision IS NULL
                 OR k.eta_revision = q.revision
               THEN k.eta_predicted_at IS NULL OR k.eta_predicted_at <= $2
               ELSE k.eta_revision < q.revision END),
new AS (
    INSERT INTO shipment_etas (shipment_id, predicted_at, model_version, stage, eta_p10,
                               eta_p50, eta_p90, prob_late, reasons, shadow)
    SELECT s, $2, $3, st, a, b, c, l, r::jsonb, false FROM unnest(
        $1::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[],
        $8::real[], $9::text[]) AS t(s, st, a, b, c, l, r)
        JOIN shown ON shown.shipment_id = t.s,
        (SELECT CASE WHEN $10 THEN set_config('synchronous_commit', 'off', true) END) AS relax
    RETURNING id, shipment_id, eta_p10, eta_p50, eta_p90)
UPDATE shipments x SET eta_id = new.id, eta_predicted_at = $2, eta_p10 = new.eta_p10,
                       eta_p50 = new.eta_p50, eta_p90 = new.eta_p90,
                       eta_revision = shown.revision
FROM new JOIN shown USING (shipment_id)
WHERE x.shipment_id = new.shipment_id"""
# A challenger's ETAs (shadow): only appended, no shipment points at them, nothing to lock.
STORE_SHADOW = """
INSERT INTO shipment_etas (shipment_id, predicted_at, model_version, stage, eta_p10, eta_p50,
                           eta_p90, prob_late, reasons, shadow)
SELECT s, $2, $3, st, a, b, c, l, r::jsonb, true FROM unnest(
    $1::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[],
    $8::real[], $9::text[]) AS t(s, st, a, b, c, l, r),
    (SELECT CASE WHEN $10 THEN set_config('synchronous_commit', 'off', true) END) AS relax"""


async def store_many(conn: asyncpg.Connection, shipment_ids: list[str], predicted_at: datetime,
                     model_version: str, predictions: Sequence[Any], *,
                     revisions: Sequence[int | None] | None = None,
                     shadow: bool = False) -> None:
    """Append one ETA per shipment and point each shipment at it, unless it already shows a
    newer one: predicted from a newer ``revision`` of the shipment (``revisions``: what each
    prediction read, see :func:`unfinished_with_scans`), or later from the same (one
    statement, one round trip: :data:`STORE`). A ``shadow`` ETA (a
    challenger's) is only appended: no shipment points at it, nothing shows it or sends a
    message from it.

    Run on its own (autocommit), the statement commits without waiting for the WAL flush
    (``synchronous_commit`` off for its own transaction only): an ETA is derived data,
    recomputed at the shipment's next event or sweep, so a database crash may lose the last
    fraction of a second of them but never corrupts anything, and any later durable commit
    flushes them too. Inside a caller's transaction the caller's durability applies.
    """
    relaxed = not conn.is_in_transaction()
    order = sorted(range(len(shipment_ids)), key=shipment_ids.__getitem__)
    ordered = [predictions[i] for i in order]
    statement, extra = STORE_SHADOW, []
    if not shadow:
        read = [None] * len(order) if revisions is None else [revisions[i] for i in order]
        statement, extra = STORE, [read]
    await conn.execute(
        statement, [shipment_ids[i] for i in order], predicted_at,
        model_version, [p.stage for p in ordered], [p.p10 for p in ordered],
        [p.p50 for p in ordered], [p.p90 for p in ordered], [p.prob_late for p in ordered],
        [orjson.dumps(p.reasons).decode() for p in ordered], relaxed, *extra)


async def unfinished_with_scans(conn: asyncpg.Connection, shipment_ids: list[str],
                                until: datetime, fields: Sequence[str]
                                ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """What a refresh scores, in one round trip: each unfinished shipment's `fields` (only
    what the refresh reads: decoding every column cost more than the query), its scans
    up to `until`, oldest first, and the `revision` of its inputs they were read at (in the
    row; what :func:`store_many` orders ETAs by)."""
    unknown = set(fields) - set(Shipment.__struct_fields__)
    if unknown:
        raise ValueError(f"not shipment columns: {sorted(unknown)}")
    columns = ", ".join(f"s.{c}" for c in fields)
    rows = await conn.fetch(
        f"""SELECT {columns}, s.revision, coalesce(array_agg(e.status ORDER BY e.occurred_at, e.id)
                                FILTER (WHERE e.id IS NOT NULL), '{{}}') AS scan_statuses,
                  coalesce(array_agg(e.occurred_at ORDER BY e.occurred_at, e.id)
                           FILTER (WHERE e.id IS NOT NULL), '{{}}') AS scan_times
           FROM shipments s
           LEFT JOIN tracking_events e ON e.carrier = s.carrier
                AND e.tracking_number = s.tracking_number AND e.occurred_at <= $2
           WHERE s.shipment_id = ANY($1::text[]) AND s.{UNFINISHED}
           GROUP BY s.shipment_id""", shipment_ids, until)
    out = []
    for r in rows:
        row = dict(r)
        statuses, times = row.pop("scan_statuses"), row.pop("scan_times")
        out.append((row, [{"status": st, "occurred_at": t}
                          for st, t in zip(statuses, times, strict=True)]))
    return out


class ModelScore(msgspec.Struct, frozen=True, kw_only=True):
    """One model's served ETAs scored against deliveries (see :func:`scores`); ``late`` of
    the ``parcels`` were still out at the end of the period, past a window it served."""

    model_version: str
    parcels: int
    rows: int
    mae_hours: float | None
    coverage: float | None
    late: int = 0


# The parcels not delivered at $3 (still out then, or ended undelivered: lost, or returned,
# even if the return was delivered back to the sender; never a cancelled one), labelled in
# the 60 days before $2.
_LATE = f"""
    SELECT shipment_id FROM shipments s
    WHERE (delivered_at >= $3 OR (delivered_at IS NULL AND ({UNFINISHED} OR {NEVER_DELIVERED}))
           OR {RETURNED_AT} IS NOT NULL)
      AND label_created_at > $2::timestamptz - interval '60 days' AND label_created_at < $3"""
# Of those, the ones with an ETA of the models ($1) whose date shown may have ended in
# [$2, $3] ($4: DATE_SHOWN_SPAN), and what their customer's zone follows from.
LATE_ZONES = f"""
SELECT s.shipment_id, o.timezone, s.destination_postal_code, s.destination_country
FROM shipments s LEFT JOIN orders o ON o.order_id = s.order_id
WHERE s.shipment_id IN ({_LATE})
  AND EXISTS (SELECT 1 FROM shipment_etas x WHERE x.shipment_id = s.shipment_id
                AND x.model_version = ANY($1::text[])
                AND x.eta_p90 >= $2::timestamptz - $4::interval AND x.eta_p90 < $3)"""
# Each model's ETAs for the parcels delivered in [$2, $3), predicted before the delivery,
# and, for the parcels not delivered at $3, the ETAs whose date shown ended in [$2, $3]
# (their customer's zone: $5 shipments, $6 zones), the rule live accuracy judges by
# (service.store.accuracy): misses already, their error at least $3 - p50 (without them a
# slowdown would flatter the model: its late parcels are the last to be delivered).
# `judged` marks the rows scored; the span (the same stretch of every parcel's journey for
# every model) is over all.
SCORES = f"""
WITH parcels AS (
    SELECT shipment_id, delivered_at AS outcome_at, false AS late, NULL::text AS zone
    FROM shipments s
    WHERE delivered_at >= $2 AND delivered_at < $3
      AND {RETURNED_AT} IS NULL  -- the delivery of a return is no delivery
    UNION ALL
    SELECT l.shipment_id, $3, true, z.zone FROM ({_LATE}) l
    LEFT JOIN unnest($5::text[], $6::text[]) AS z(shipment_id, zone) USING (shipment_id)),
served AS (
    SELECT x.model_version, x.shipment_id, x.predicted_at, x.eta_p10, x.eta_p50,
           x.eta_p90, d.outcome_at, d.late,
           NOT d.late OR coalesce({date_shown_ends_sql("x.eta_p90", "d.zone")}
                                  BETWEEN $2 AND $3, false) AS judged
    FROM shipment_etas x JOIN parcels d USING (shipment_id)
    WHERE x.model_version = ANY($1::text[]) AND x.predicted_at < d.outcome_at),
span AS (
    SELECT shipment_id, max(first_at) AS from_at, count(*) AS models FROM (
        SELECT shipment_id, model_version, min(predicted_at) AS first_at
        FROM served GROUP BY shipment_id, model_version) f
    GROUP BY shipment_id)
SELECT v.model_version, count(DISTINCT v.shipment_id) AS parcels, count(*) AS rows,
       count(DISTINCT v.shipment_id) FILTER (WHERE v.late) AS late,
       avg(abs(extract(epoch FROM v.outcome_at - v.eta_p50)) / 3600.0) AS mae_hours,
       avg(CASE WHEN NOT v.late AND v.outcome_at BETWEEN v.eta_p10 AND v.eta_p90
           THEN 1.0 ELSE 0.0 END) AS coverage
FROM served v JOIN span p USING (shipment_id)
WHERE v.judged
  AND (NOT $4 OR (p.models = cardinality($1::text[]) AND v.predicted_at >= p.from_at))
GROUP BY v.model_version
"""


async def scores(conn: asyncpg.Connection, versions: Sequence[str], since: datetime,
                 until: datetime, *, common: bool = True,
                 shop_timezone: str = "UTC") -> dict[str, ModelScore]:
    """Each model's ETAs (shown or shadow) judged in ``[since, until)``: those of the
    parcels delivered then, predicted before the delivery, and those of the parcels still
    not delivered at ``until`` whose date shown ended in the period (misses, their error
    counted up to ``until``; the customer's date, as live accuracy judges them, in the
    customer's zone, else ``shop_timezone``): parcels, ETAs, mean |p50 - outcome| in hours
    and the share of deliveries inside [p10, p90]. ``common``: only parcels that every model
    in ``versions`` gave an ETA for, and only instants at or after the latest first ETA of
    any of them (the same parcels, the same stretch of their journey, for a fair
    comparison)."""
    late = await conn.fetch(LATE_ZONES, list(versions), since, until, DATE_SHOWN_SPAN)
    zones = [customer_zone(r["timezone"], r["destination_postal_code"],
                           r["destination_country"], shop_timezone) for r in late]
    rows = await conn.fetch(SCORES, list(versions), since, until, common,
                            [r["shipment_id"] for r in late], zones)
    return {r["model_version"]: ModelScore(
        model_version=r["model_version"], parcels=int(r["parcels"]), rows=int(r["rows"]),
        mae_hours=None if r["mae_hours"] is None else float(r["mae_hours"]),
        coverage=None if r["coverage"] is None else float(r["coverage"]),
        late=int(r["late"])) for r in rows}
