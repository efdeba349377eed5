"""Live accuracy: the ETAs shown for a parcel, scored against its delivery, or as a miss
once the date shown passed without one; and the champion's drift checks. The one home of
these reads and writes (workers score, the CLI and metrics read, the drift check asks
:func:`champion_live_accuracy`).

A score is *judged* at the delivery, or, for a parcel still out when the date shown (the
p90's local date) ends, at the end of that date: it is then a **censored miss** (outside
the window, not on time by the date shown, its p50 error at least the time from the p50
to the latest check, ``censored`` until the delivery fills in the true error). Every
rolling figure counts the scores judged in its window: the late parcels count as soon as
they are late, not weeks later when they arrive (when a figure over delivered parcels only
would flatter the model through a slowdown)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from service.store.shipments import UNFINISHED

Kind = Literal["first", "stage", "told"]
KINDS: Final[tuple[str, ...]] = ("first", "stage", "told")
# How far back a parcel still out is looked for (and its censored scores' errors kept
# growing): older windows are judged already, and a parcel out for longer is lost.
OVERDUE_LOOKBACK: Final = timedelta(days=30)
# What `accuracy_by` groups by (the SQL expression of each).
SEGMENTS: Final[dict[str, str]] = {
    "carrier": "carrier",
    "service": "carrier || ':' || service_level",
    "lane": "carrier || ' ' || lane",
    "week": "to_char(date_trunc('week', judged_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
    "stage": "stage",
    "model": "model_version",
    "kind": "kind",
}


class LiveAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    """How a model's shown ETAs did, judged since an instant (delivered, or still out when
    the date shown ended: ``still_out`` of the ``scored``).

    ``mae_days``: mean |delivered − p50| in days (for a parcel still out, the time from the
    p50 to the latest check: a lower bound); ``coverage``: share delivered inside p10–p90;
    ``on_time_shown``: share delivered by the end of the date shown (p90's local date);
    ``bias_days``: mean delivered − p50 (> 0: later than the median said). All None when
    nothing was scored."""

    version: str
    since: datetime
    kind: str
    scored: int
    still_out: int
    mae_days: float | None
    coverage: float | None
    on_time_shown: float | None
    bias_days: float | None


class SegmentAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    """Live accuracy of one segment (a carrier, carrier:service, lane, week...); weeks are
    those the scores were judged in."""

    segment: str
    scored: int
    still_out: int
    mae_days: float
    coverage: float
    on_time_shown: float
    bias_days: float


class CarrierServiceAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    carrier: str
    service_level: str
    scored: int
    still_out: int
    mae_days: float
    coverage: float
    on_time_shown: float


class DriftCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One drift check of a model: each main feature's population stability index (recent
    inputs vs its training set) and its live errors vs its own validation errors."""

    model_version: str
    as_of: datetime
    feature_psi: dict[str, float]
    inputs: int
    scored: int
    live_mae_days: float | None
    validation_mae_days: float | None
    live_coverage: float | None
    validation_coverage: float | None
    alarms: list[str]


_AGGREGATES = """count(*) AS scored, count(*) FILTER (WHERE censored) AS still_out,
    avg(abs_error_days) AS mae_days,
    avg(inside_window::int) AS coverage, avg(on_time_shown::int) AS on_time_shown,
    avg(error_days) AS bias_days"""

# The ETAs to score for one delivered shipment ($1), shown before its delivery (a shadow
# model's are never shown): the first shown, the first shown at each stage, and the one in
# force when each notification but the delivery's own went out. Dates are the customer's
# ($2: their time zone). Judged at the delivery, or at the end of the date shown if that
# came first; a score already judged a censored miss (the date shown passed first, and
# the sweep saw it) gets the delivery and the true error.
SCORE = """
WITH s AS (
    SELECT shipment_id, carrier, service_level, delivered_at FROM shipments
    WHERE shipment_id = $1 AND status = 'delivered' AND delivered_at IS NOT NULL),
e AS (
    SELECT e.* FROM shipment_etas e JOIN s USING (shipment_id)
    WHERE e.predicted_at <= s.delivered_at AND NOT e.shadow),  -- shown ones only
picked AS (
    (SELECT id, 'first' AS kind FROM e ORDER BY predicted_at, id LIMIT 1)
    UNION ALL
    (SELECT DISTINCT ON (stage) id, 'stage' FROM e ORDER BY stage, predicted_at, id)
    UNION ALL
    (SELECT DISTINCT told.id, 'told' FROM notifications n JOIN s USING (shipment_id)
     CROSS JOIN LATERAL (SELECT id FROM e WHERE e.predicted_at <= n.sent_at
                         ORDER BY predicted_at DESC, id DESC LIMIT 1) told
     WHERE n.state = 'sent' AND n.moment <> 'delivered' AND n.sent_at <= s.delivered_at))
INSERT INTO eta_scores (shipment_id, eta_id, kind, model_version, stage, carrier,
                        service_level, lane, predicted_at, eta_p10, eta_p50, eta_p90,
                        delivered_at, error_days, abs_error_days, inside_window,
                        on_time_shown, scored_at, judged_at, censored)
SELECT s.shipment_id, e.id, p.kind, e.model_version, e.stage, s.carrier, s.service_level,
       $3, e.predicted_at, e.eta_p10, e.eta_p50, e.eta_p90, s.delivered_at,
       extract(epoch FROM s.delivered_at - e.eta_p50) / 86400.0,
       abs(extract(epoch FROM s.delivered_at - e.eta_p50)) / 86400.0,
       s.delivered_at BETWEEN e.eta_p10 AND e.eta_p90,
       (s.delivered_at AT TIME ZONE $2)::date <= (e.eta_p90 AT TIME ZONE $2)::date,
       $4, least(s.delivered_at,
                 ((e.eta_p90 AT TIME ZONE $2)::date + 1)::timestamp AT TIME ZONE $2), false
FROM picked p JOIN e ON e.id = p.id CROSS JOIN s
ON CONFLICT (eta_id, kind) DO UPDATE SET
    delivered_at = EXCLUDED.delivered_at, error_days = EXCLUDED.error_days,
    abs_error_days = EXCLUDED.abs_error_days, inside_window = EXCLUDED.inside_window,
    on_time_shown = EXCLUDED.on_time_shown, scored_at = EXCLUDED.scored_at,
    judged_at = least(eta_scores.judged_at, EXCLUDED.judged_at), censored = false
WHERE eta_scores.censored
"""


async def score_delivered(conn: asyncpg.Connection, shipment_id: str, timezone: str,
                          lane: str, now: datetime) -> int:
    """Score every ETA shown for a delivered shipment (nothing if it is not delivered);
    how many scores are new or completed (a censored miss now delivered). One statement;
    scoring the same delivery again adds none."""
    status: str = await conn.execute(SCORE, shipment_id, timezone, lane, now)
    return int(status.rsplit(" ", 1)[-1])


async def scores(conn: asyncpg.Connection, shipment_id: str) -> list[dict[str, Any]]:
    """A shipment's scores (kind, stage, eta id, errors), oldest prediction first."""
    rows = await conn.fetch(
        """SELECT kind, stage, eta_id, model_version, abs_error_days, error_days,
                  inside_window, on_time_shown, censored, judged_at FROM eta_scores WHERE shipment_id = $1
           ORDER BY predicted_at, eta_id, kind""", shipment_id)
    return [dict(r) for r in rows]


class Overdue(msgspec.Struct, frozen=True, kw_only=True):
    """A shown ETA of a parcel still out whose p90 has passed (a censored miss once the
    customer's date shown has ended)."""

    shipment_id: str
    eta_id: int
    kind: str
    model_version: str
    stage: str
    carrier: str
    service_level: str
    predicted_at: datetime
    eta_p10: datetime
    eta_p50: datetime
    eta_p90: datetime
    order_timezone: str | None
    origin_postal_code: str | None
    destination_postal_code: str | None
    destination_country: str | None


# The ETAs of parcels still moving ($1: now) picked as a delivery's scoring picks them
# (first shown, first at each stage, in force when a message went out), whose p90 passed
# in the last $2 and that are not scored yet.
OVERDUE = f"""
WITH s AS (
    SELECT shipment_id, carrier, service_level, order_id, origin_postal_code,
           destination_postal_code, destination_country FROM shipments
    WHERE {UNFINISHED} AND delivered_at IS NULL
      AND label_created_at > $1::timestamptz - $2::interval - interval '30 days'),
e AS (
    SELECT e.* FROM shipment_etas e JOIN s USING (shipment_id)
    WHERE e.predicted_at <= $1 AND NOT e.shadow),
picked AS (
    (SELECT DISTINCT ON (shipment_id) id, 'first' AS kind FROM e
     ORDER BY shipment_id, predicted_at, id)
    UNION ALL
    (SELECT DISTINCT ON (shipment_id, stage) id, 'stage' FROM e
     ORDER BY shipment_id, stage, predicted_at, id)
    UNION ALL
    (SELECT DISTINCT told.id, 'told' FROM notifications n JOIN s USING (shipment_id)
     CROSS JOIN LATERAL (SELECT id FROM e WHERE e.shipment_id = n.shipment_id
                           AND e.predicted_at <= n.sent_at
                         ORDER BY predicted_at DESC, id DESC LIMIT 1) told
     WHERE n.state = 'sent' AND n.moment <> 'delivered' AND n.sent_at <= $1))
SELECT e.shipment_id, e.id AS eta_id, p.kind, e.model_version, e.stage, s.carrier,
       s.service_level, e.predicted_at, e.eta_p10, e.eta_p50, e.eta_p90,
       o.timezone AS order_timezone, s.origin_postal_code, s.destination_postal_code,
       s.destination_country
FROM picked p JOIN e ON e.id = p.id JOIN s USING (shipment_id)
LEFT JOIN orders o ON o.order_id = s.order_id
WHERE e.eta_p90 < $1 AND e.eta_p90 >= $1::timestamptz - $2::interval
  AND NOT EXISTS (SELECT 1 FROM eta_scores x WHERE x.eta_id = e.id AND x.kind = p.kind)
"""


async def overdue(conn: asyncpg.Connection, now: datetime,
                  lookback: timedelta = OVERDUE_LOOKBACK) -> list[Overdue]:
    """Shown ETAs of parcels still moving whose p90 passed (within `lookback`) and that
    are not scored yet: the candidates for a censored miss."""
    rows = await conn.fetch(OVERDUE, now, lookback)
    return [Overdue(**dict(r)) for r in rows]


def date_shown_ends(eta_p90: datetime, timezone: str) -> datetime:
    """The end of the date shown (the p90's local date) in the customer's zone."""
    zone = ZoneInfo(timezone)
    return datetime.combine(eta_p90.astimezone(zone).date() + timedelta(days=1), time(0),
                            tzinfo=zone)


async def score_censored(conn: asyncpg.Connection, judged: list[tuple[Overdue, str, datetime]],
                         now: datetime) -> int:
    """Record censored misses: (the overdue ETA, its lane, when its date shown ended),
    each outside its window, not on time, its error the time from its p50 to `now`. A
    score that exists (the delivery scored first) is left alone; how many are new."""
    if not judged:
        return 0
    status: str = await conn.execute(
        """INSERT INTO eta_scores (shipment_id, eta_id, kind, model_version, stage, carrier,
                                   service_level, lane, predicted_at, eta_p10, eta_p50,
                                   eta_p90, delivered_at, error_days, abs_error_days,
                                   inside_window, on_time_shown, scored_at, judged_at,
                                   censored)
           SELECT u.shipment_id, u.eta_id, u.kind, u.model_version, u.stage, u.carrier,
                  u.service_level, u.lane, u.predicted_at, u.eta_p10, u.eta_p50, u.eta_p90,
                  NULL, extract(epoch FROM $1 - u.eta_p50) / 86400.0,
                  abs(extract(epoch FROM $1 - u.eta_p50)) / 86400.0, false, false, $1,
                  u.judged_at, true
           FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                       $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
                       $14::timestamptz[])
                AS u(shipment_id, eta_id, kind, model_version, stage, carrier, service_level,
                     lane, predicted_at, eta_p10, eta_p50, eta_p90, judged_at)
           ON CONFLICT (eta_id, kind) DO NOTHING""",
        now, [o.shipment_id for o, _, _ in judged], [o.eta_id for o, _, _ in judged],
        [o.kind for o, _, _ in judged], [o.model_version for o, _, _ in judged],
        [o.stage for o, _, _ in judged], [o.carrier for o, _, _ in judged],
        [o.service_level for o, _, _ in judged], [lane for _, lane, _ in judged],
        [o.predicted_at for o, _, _ in judged], [o.eta_p10 for o, _, _ in judged],
        [o.eta_p50 for o, _, _ in judged], [o.eta_p90 for o, _, _ in judged],
        [at for _, _, at in judged])
    return int(status.rsplit(" ", 1)[-1])


async def extend_censored(conn: asyncpg.Connection, now: datetime,
                          lookback: timedelta = OVERDUE_LOOKBACK) -> int:
    """The parcels still out stay late: their censored scores' errors grow to `now` (those
    judged within `lookback`; older ones keep the bound they had)."""
    status: str = await conn.execute(
        """UPDATE eta_scores SET error_days = extract(epoch FROM $1 - eta_p50) / 86400.0,
                                 abs_error_days = abs(extract(epoch FROM $1 - eta_p50)) / 86400.0
           WHERE censored AND judged_at >= $1::timestamptz - $2::interval
             AND judged_at <= $1""", now, lookback)
    return int(status.rsplit(" ", 1)[-1])


async def champion_live_accuracy(conn: asyncpg.Connection, version: str, since: datetime,
                                 kind: Kind = "stage") -> LiveAccuracy:
    """How `version`'s shown ETAs did, judged since `since` (delivered, or still out when
    their date shown ended); by default the first ETA shown at each stage, the mix closest
    to a model's validation snapshots."""
    row = await conn.fetchrow(
        f"""SELECT {_AGGREGATES} FROM eta_scores
            WHERE model_version = $1 AND judged_at >= $2 AND kind = $3""",
        version, since, kind)
    assert row is not None
    return LiveAccuracy(version=version, since=since, kind=kind, scored=row["scored"],
                        still_out=row["still_out"], mae_days=_float(row["mae_days"]),
                        coverage=_float(row["coverage"]),
                        on_time_shown=_float(row["on_time_shown"]),
                        bias_days=_float(row["bias_days"]))


async def accuracy_by(conn: asyncpg.Connection, by: str, since: datetime | None = None,
                      kind: Kind = "stage", version: str | None = None
                      ) -> list[SegmentAccuracy]:
    """Live accuracy per segment (one of :data:`SEGMENTS`) of the scores judged since
    `since`, most scored first (weeks in order)."""
    expression = SEGMENTS[by]
    order = "segment" if by == "week" else "scored DESC, segment"
    rows = await conn.fetch(
        f"""SELECT {expression} AS segment, {_AGGREGATES} FROM eta_scores
            WHERE kind = $1 AND ($2::timestamptz IS NULL OR judged_at >= $2)
              AND ($3::text IS NULL OR model_version = $3)
            GROUP BY 1 ORDER BY {order}""", kind, since, version)
    return [SegmentAccuracy(segment=r["segment"], scored=r["scored"],
                            still_out=r["still_out"],
                            mae_days=float(r["mae_days"]), coverage=float(r["coverage"]),
                            on_time_shown=float(r["on_time_shown"]),
                            bias_days=float(r["bias_days"])) for r in rows]


async def by_carrier_service(conn: asyncpg.Connection, since: datetime, top: int,
                             kind: Kind = "stage") -> list[CarrierServiceAccuracy]:
    """Live accuracy per carrier and service, judged since `since`: the `top` most scored
    pairs, every other pair folded into ('other', 'other') — bounded metric labels."""
    rows = await conn.fetch(
        """WITH pairs AS (
               SELECT carrier, service_level, count(*) AS n, sum(abs_error_days) AS err,
                      count(*) FILTER (WHERE censored) AS out,
                      sum(inside_window::int) AS inside, sum(on_time_shown::int) AS on_time,
                      row_number() OVER (ORDER BY count(*) DESC, carrier, service_level) AS r
               FROM eta_scores WHERE kind = $1 AND judged_at >= $2
               GROUP BY carrier, service_level)
           SELECT CASE WHEN r <= $3 THEN carrier ELSE 'other' END AS carrier,
                  CASE WHEN r <= $3 THEN service_level ELSE 'other' END AS service_level,
                  sum(n) AS scored, sum(out) AS still_out, sum(err) / sum(n) AS mae_days,
                  sum(inside)::float / sum(n) AS coverage,
                  sum(on_time)::float / sum(n) AS on_time_shown
           FROM pairs GROUP BY 1, 2 ORDER BY 3 DESC""", kind, since, top)
    return [CarrierServiceAccuracy(carrier=r["carrier"], service_level=r["service_level"],
                                   scored=int(r["scored"]), still_out=int(r["still_out"]),
                                   mae_days=float(r["mae_days"]),
                                   coverage=float(r["coverage"]),
                                   on_time_shown=float(r["on_time_shown"])) for r in rows]


async def store_drift(conn: asyncpg.Connection, check: DriftCheck, now: datetime) -> bool:
    """Record a drift check; False when that model's check as of that instant exists."""
    status: str = await conn.execute(
        """INSERT INTO eta_drift (model_version, as_of, feature_psi, inputs, scored,
                                  live_mae_days, validation_mae_days, live_coverage,
                                  validation_coverage, alarms, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (model_version, as_of) DO NOTHING""",
        check.model_version, check.as_of, check.feature_psi, check.inputs, check.scored,
        check.live_mae_days, check.validation_mae_days, check.live_coverage,
        check.validation_coverage, check.alarms, now)
    return status.endswith(" 1")


async def latest_drift(conn: asyncpg.Connection, version: str | None = None
                       ) -> DriftCheck | None:
    """The newest drift check (of `version`, else of any model)."""
    row = await conn.fetchrow(
        f"""SELECT {", ".join(DriftCheck.__struct_fields__)} FROM eta_drift
            WHERE $1::text IS NULL OR model_version = $1
            ORDER BY as_of DESC, id DESC LIMIT 1""", version)
    if row is None:
        return None
    return DriftCheck(**{**dict(row), "feature_psi": {k: float(v) for k, v in
                                                      row["feature_psi"].items()}})


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """Share of deliveries before each shown quantile (nominal 0.1 / 0.5 / 0.9)."""

    scored: int
    below_p10: float | None
    below_p50: float | None
    below_p90: float | None


async def calibration(conn: asyncpg.Connection, version: str, kind: Kind = "stage"
                      ) -> Calibration:
    """How often a model's deliveries came before its shown p10, p50 and p90 (a parcel
    still out after its date shown came after all three)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS scored, avg((arrived < eta_p10)::int) AS below_p10,
                  avg((arrived < eta_p50)::int) AS below_p50,
                  avg((arrived <= eta_p90)::int) AS below_p90
           FROM (SELECT *, coalesce(delivered_at, 'infinity') AS arrived FROM eta_scores
                 WHERE model_version = $1 AND kind = $2) s""", version, kind)
    assert row is not None
    return Calibration(scored=row["scored"], below_p10=_float(row["below_p10"]),
                       below_p50=_float(row["below_p50"]), below_p90=_float(row["below_p90"]))
