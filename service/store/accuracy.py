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
would flatter the model through a slowdown).

A parcel that ends without a delivery to the customer (returned to sender, declared lost:
:data:`~service.store.shipments.NEVER_DELIVERED`) is judged the same way, a miss once its
date shown ends, and stays one: a later "delivered" scan of the return completes nothing,
and its error bound stops growing when it ended (``ended_at``; it is no longer *still
out*). A cancelled shipment never shipped: its scores are dropped.

At scale each poll reads only the shown ETAs whose p90 passed since the previous poll (less
a day: the watermark in ``accuracy_checks``, the index ``shipment_etas_p90``), and no row is
rewritten as the late parcels stay out: a censored miss's error is computed when read, from
the latest check (:data:`ERROR`)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from service.store.shipments import NEVER_DELIVERED, UNFINISHED
from service.tracking.taxonomy import TERMINAL, sql_list

Kind = Literal["first", "stage", "told"]
KINDS: Final[tuple[str, ...]] = ("first", "stage", "told")
# How far back a parcel still out is looked for (and its censored scores' errors kept
# growing): older windows are judged already, and a parcel out for longer is lost.
OVERDUE_LOOKBACK: Final = timedelta(days=30)
# A date shown ends at most this long after its p90 (a local day, 25 h across a DST change,
# and a margin): each poll looks again at the p90s that passed this long before the last.
DATE_SHOWN_SPAN: Final = timedelta(hours=26)
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


# A score's error in days as of the latest check (read from an `eta_scores` row): a
# delivered one's own; a censored miss's lower bound, the time from its p50 to the latest
# judging poll (`accuracy_checks`), stopped where its parcel ended undelivered (but never
# before its date shown ended) or OVERDUE_LOOKBACK after it was judged (older misses keep
# the bound they had). Computed here, when read: no row is rewritten as the late parcels
# stay out.
ERROR = f"""CASE WHEN censored THEN extract(epoch FROM greatest(judged_at, least(
        coalesce((SELECT checked_at FROM accuracy_checks), judged_at), ended_at,
        judged_at + interval '{OVERDUE_LOOKBACK.total_seconds():.0f} seconds')) - eta_p50)
        / 86400.0 ELSE error_days END"""
# Still out: judged a miss, and neither delivered nor ended without a delivery since.
STILL_OUT = "censored AND ended_at IS NULL"

_AGGREGATES = f"""count(*) AS scored, count(*) FILTER (WHERE {STILL_OUT}) AS still_out,
    avg(abs({ERROR})) AS mae_days,
    avg(inside_window::int) AS coverage, avg(on_time_shown::int) AS on_time_shown,
    avg({ERROR}) AS bias_days"""


def date_shown_ends_sql(p90: str, zone: str) -> str:
    """:func:`date_shown_ends` as an SQL expression (`p90`, `zone`: SQL expressions)."""
    return f"((({p90}) AT TIME ZONE {zone})::date + 1)::timestamp AT TIME ZONE {zone}"


# A shipment's return: its first "returned to sender" scan (the parcel ended there, even if
# the return's own delivery is scanned later); NULL if it was never returned. `s`: shipments.
RETURNED_AT = """(SELECT min(r.occurred_at) FROM tracking_events r
    WHERE r.carrier = s.carrier AND r.tracking_number = s.tracking_number
      AND r.status = 'returned_to_sender')"""
# When a shipment ended without a delivery to the customer (its return, else when it was
# declared lost), NULL if it has not. `s`: shipments.
ENDED_AT = f"""CASE WHEN s.status = 'returned_to_sender' OR s.delivered_at IS NOT NULL
    THEN {RETURNED_AT} END"""
ENDED_AT = f"""coalesce({ENDED_AT},
    CASE WHEN s.status NOT IN {sql_list(TERMINAL)} THEN s.lost_at END)"""

# The ETAs to score for one delivered shipment ($1), shown before its delivery (a shadow
# model's are never shown): the first shown, the first shown at each stage, and the one in
# force when each notification but the delivery's own went out. Dates are the customer's
# ($2: their time zone). Judged at the delivery, or at the end of the date shown if that
# came first; a score already judged a censored miss (the date shown passed first, and
# the sweep saw it) gets the delivery and the true error.
SCORE = f"""
WITH s AS (
    SELECT shipment_id, carrier, service_level, delivered_at FROM shipments s
    WHERE shipment_id = $1 AND status = 'delivered' AND delivered_at IS NOT NULL
      AND {RETURNED_AT} IS NULL),  -- the delivery of a return is no delivery
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
       $4, least(s.delivered_at, {date_shown_ends_sql("e.eta_p90", "$2")}), false
FROM picked p JOIN e ON e.id = p.id CROSS JOIN s
ON CONFLICT (eta_id, kind) DO UPDATE SET
    delivered_at = EXCLUDED.delivered_at, error_days = EXCLUDED.error_days,
    abs_error_days = EXCLUDED.abs_error_days, inside_window = EXCLUDED.inside_window,
    on_time_shown = EXCLUDED.on_time_shown, scored_at = EXCLUDED.scored_at,
    judged_at = least(eta_scores.judged_at, EXCLUDED.judged_at), censored = false,
    ended_at = NULL  -- declared lost, and found: the carrier's delivery overrules it
WHERE eta_scores.censored
"""


async def score_delivered(conn: asyncpg.Connection, shipment_id: str, timezone: str,
                          lane: str, now: datetime) -> int:
    """Score every ETA shown for a delivered shipment (nothing if it is not delivered, or
    if what was delivered is its return); how many scores are new or completed (a censored
    miss now delivered). One statement; scoring the same delivery again adds none."""
    status: str = await conn.execute(SCORE, shipment_id, timezone, lane, now)
    return int(status.rsplit(" ", 1)[-1])


async def scores(conn: asyncpg.Connection, shipment_id: str) -> list[dict[str, Any]]:
    """A shipment's scores (kind, stage, eta id, errors), oldest prediction first."""
    rows = await conn.fetch(
        f"""SELECT kind, stage, eta_id, model_version, abs({ERROR}) AS abs_error_days,
                   {ERROR} AS error_days, inside_window, on_time_shown, censored, judged_at,
                   ended_at FROM eta_scores WHERE shipment_id = $1
            ORDER BY predicted_at, eta_id, kind""", shipment_id)
    return [dict(r) for r in rows]


class Overdue(msgspec.Struct, frozen=True, kw_only=True):
    """A shown ETA of a parcel not delivered whose p90 has passed (a censored miss once the
    customer's date shown has ended); ``ended_at``: when its parcel ended undelivered."""

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
    ended_at: datetime | None = None


# The shown ETAs ($1: now) whose p90 passed in [$2, $1), of parcels not delivered (still
# moving, or ended without a delivery: NEVER_DELIVERED, or a return delivered back to its
# sender, before its p90 or after; never a cancelled one), picked as a delivery's scoring
# picks them (the first shown, the first at each stage, the one in force when a message went
# out) and not scored yet.
# Index-driven: the p90 range (shipment_etas_p90), then each candidate's shipment by its key
# and its picks by (shipment_id, predicted_at): the work follows the p90s in the range, not
# the parcels in flight.
OVERDUE = f"""
SELECT e.shipment_id, e.id AS eta_id, p.kind, e.model_version, e.stage, s.carrier,
       s.service_level, e.predicted_at, e.eta_p10, e.eta_p50, e.eta_p90,
       o.timezone AS order_timezone, s.origin_postal_code, s.destination_postal_code,
       s.destination_country, {ENDED_AT} AS ended_at
FROM shipment_etas e
JOIN shipments s ON s.shipment_id = e.shipment_id
LEFT JOIN orders o ON o.order_id = s.order_id
CROSS JOIN LATERAL (VALUES
    ('first', NOT EXISTS (
        SELECT 1 FROM shipment_etas f WHERE f.shipment_id = e.shipment_id AND NOT f.shadow
          AND f.predicted_at <= e.predicted_at AND (f.predicted_at, f.id) < (e.predicted_at, e.id))),
    ('stage', NOT EXISTS (
        SELECT 1 FROM shipment_etas f WHERE f.shipment_id = e.shipment_id AND NOT f.shadow
          AND f.stage = e.stage AND f.predicted_at <= e.predicted_at
          AND (f.predicted_at, f.id) < (e.predicted_at, e.id))),
    ('told', EXISTS (
        SELECT 1 FROM notifications n
        WHERE n.shipment_id = e.shipment_id AND n.state = 'sent' AND n.moment <> 'delivered'
          AND n.sent_at <= $1 AND n.sent_at >= e.predicted_at
          AND NOT EXISTS (
              SELECT 1 FROM shipment_etas f WHERE f.shipment_id = e.shipment_id
                AND NOT f.shadow AND f.predicted_at >= e.predicted_at
                AND f.predicted_at <= n.sent_at
                AND (f.predicted_at, f.id) > (e.predicted_at, e.id))))) AS p(kind, picked)
WHERE NOT e.shadow AND e.eta_p90 >= $2 AND e.eta_p90 < $1 AND e.predicted_at <= $1
  AND s.status <> 'cancelled'
  AND (s.delivered_at IS NULL AND ({UNFINISHED} OR {NEVER_DELIVERED})
       OR s.delivered_at IS NOT NULL AND {RETURNED_AT} IS NOT NULL)
  AND p.picked
  AND NOT EXISTS (SELECT 1 FROM eta_scores x WHERE x.eta_id = e.id AND x.kind = p.kind)
"""


async def overdue(conn: asyncpg.Connection, now: datetime, since: datetime) -> list[Overdue]:
    """Shown ETAs of parcels not delivered whose p90 passed since `since` and that are not
    scored yet: the candidates for a censored miss."""
    rows = await conn.fetch(OVERDUE, now, since)
    return [Overdue(**dict(r)) for r in rows]


async def last_check(conn: asyncpg.Connection) -> datetime | None:
    """When the late ETAs were last judged (None before the first time)."""
    checked: datetime | None = await conn.fetchval("SELECT checked_at FROM accuracy_checks")
    return checked


MARK_CHECKED = """INSERT INTO accuracy_checks (one, checked_at) VALUES (true, $1)
ON CONFLICT (one) DO UPDATE
SET checked_at = greatest(accuracy_checks.checked_at, EXCLUDED.checked_at)"""


async def mark_checked(conn: asyncpg.Connection, now: datetime) -> None:
    """Record a judging poll: the censored misses' errors now run to `now` (:data:`ERROR`)."""
    await conn.execute(MARK_CHECKED, now)


# A date shown ends at a local midnight, so, every zone's offset from UTC being whole
# quarter hours, at a quarter hour in UTC: a poll with none since the last ends no date.
QUARTER_HOUR_S: Final = 900


def dates_may_have_ended(last: datetime | None, now: datetime) -> bool:
    """Whether a date shown may have ended in (`last`, `now`]: a quarter hour (UTC) passed,
    or this is the first poll."""
    if last is None:
        return True
    return now.timestamp() // QUARTER_HOUR_S > last.timestamp() // QUARTER_HOUR_S


def judge_since(last: datetime | None, now: datetime) -> datetime:
    """The p90s a poll at `now` looks at: those passed since the previous poll less a day
    (a date shown ends within DATE_SHOWN_SPAN of its p90), within OVERDUE_LOOKBACK."""
    floor = now - OVERDUE_LOOKBACK
    return floor if last is None else max(floor, min(last, now) - DATE_SHOWN_SPAN)


def date_shown_ends(eta_p90: datetime, timezone: str) -> datetime:
    """The end of the date shown (the p90's local date) in the customer's zone."""
    zone = ZoneInfo(timezone)
    return datetime.combine(eta_p90.astimezone(zone).date() + timedelta(days=1), time(0),
                            tzinfo=zone)


async def score_censored(conn: asyncpg.Connection, judged: list[tuple[Overdue, str, datetime]],
                         now: datetime) -> int:
    """Record censored misses: (the overdue ETA, its lane, when its date shown ended),
    each outside its window, not on time, its error the time from its p50 to `now` (and
    later to the latest check: :data:`ERROR`). A score that exists (the delivery scored
    first) is left alone; how many are new."""
    if not judged:
        return 0
    status: str = await conn.execute(
        """INSERT INTO eta_scores (shipment_id, eta_id, kind, model_version, stage, carrier,
                                   service_level, lane, predicted_at, eta_p10, eta_p50,
                                   eta_p90, delivered_at, error_days, abs_error_days,
                                   inside_window, on_time_shown, scored_at, judged_at,
                                   censored, ended_at)
           SELECT u.shipment_id, u.eta_id, u.kind, u.model_version, u.stage, u.carrier,
                  u.service_level, u.lane, u.predicted_at, u.eta_p10, u.eta_p50, u.eta_p90,
                  NULL, extract(epoch FROM $1 - u.eta_p50) / 86400.0,
                  abs(extract(epoch FROM $1 - u.eta_p50)) / 86400.0, false, false, $1,
                  u.judged_at, true, u.ended_at
           FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                       $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
                       $14::timestamptz[], $15::timestamptz[])
                AS u(shipment_id, eta_id, kind, model_version, stage, carrier, service_level,
                     lane, predicted_at, eta_p10, eta_p50, eta_p90, judged_at, ended_at)
           ON CONFLICT (eta_id, kind) DO NOTHING""",
        now, [o.shipment_id for o, _, _ in judged], [o.eta_id for o, _, _ in judged],
        [o.kind for o, _, _ in judged], [o.model_version for o, _, _ in judged],
        [o.stage for o, _, _ in judged], [o.carrier for o, _, _ in judged],
        [o.service_level for o, _, _ in judged], [lane for _, lane, _ in judged],
        [o.predicted_at for o, _, _ in judged], [o.eta_p10 for o, _, _ in judged],
        [o.eta_p50 for o, _, _ in judged], [o.eta_p90 for o, _, _ in judged],
        [at for _, _, at in judged], [o.ended_at for o, _, _ in judged])
    return int(status.rsplit(" ", 1)[-1])


async def score_undelivered(conn: asyncpg.Connection, shipment_id: str) -> int:
    """A shipment that ended without a delivery: its censored misses stop growing where it
    ended (returned to sender, declared lost); a cancelled one's scores are dropped (it never
    shipped). How many scores changed; nothing for a shipment still moving or delivered."""
    status: str = await conn.execute(
        f"""WITH s AS (SELECT * FROM shipments WHERE shipment_id = $1),
           dropped AS (
               DELETE FROM eta_scores x USING s
               WHERE x.shipment_id = s.shipment_id AND s.status = 'cancelled'
               RETURNING x.id)
           UPDATE eta_scores x SET ended_at = e.ended_at
           FROM (SELECT s.shipment_id, {ENDED_AT} AS ended_at FROM shipments s
                 WHERE s.shipment_id = $1 AND s.status <> 'cancelled') e
           WHERE x.shipment_id = e.shipment_id AND x.censored AND x.ended_at IS NULL
             AND e.ended_at IS NOT NULL""", shipment_id)
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
        f"""WITH pairs AS (
               SELECT carrier, service_level, count(*) AS n, sum(abs({ERROR})) AS err,
                      count(*) FILTER (WHERE {STILL_OUT}) AS out,
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
