"""Live accuracy: the ETAs shown for delivered parcels, scored against the delivery, and the
champion's drift checks. The one home of these reads and writes (workers score, the CLI and
metrics read, the rollback rule asks :func:`champion_live_accuracy`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

import asyncpg
import msgspec

Kind = Literal["first", "stage", "told"]
KINDS: Final[tuple[str, ...]] = ("first", "stage", "told")
# What `accuracy_by` groups by (the SQL expression of each).
SEGMENTS: Final[dict[str, str]] = {
    "carrier": "carrier",
    "service": "carrier || ':' || service_level",
    "lane": "carrier || ' ' || lane",
    "week": "to_char(date_trunc('week', delivered_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
    "stage": "stage",
    "model": "model_version",
    "kind": "kind",
}


class LiveAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    """How a model's shown ETAs did on the parcels delivered since an instant.

    ``mae_days``: mean |delivered − p50| in days; ``coverage``: share delivered inside
    p10–p90; ``on_time_shown``: share delivered by the end of the date shown (p90's local
    date); ``bias_days``: mean delivered − p50 (> 0: later than the median said). All None
    when nothing was scored."""

    version: str
    since: datetime
    kind: str
    scored: int
    mae_days: float | None
    coverage: float | None
    on_time_shown: float | None
    bias_days: float | None


class SegmentAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    """Live accuracy of one segment (a carrier, carrier:service, lane, week...)."""

    segment: str
    scored: int
    mae_days: float
    coverage: float
    on_time_shown: float
    bias_days: float


class CarrierServiceAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    carrier: str
    service_level: str
    scored: int
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


_AGGREGATES = """count(*) AS scored, avg(abs_error_days) AS mae_days,
    avg(inside_window::int) AS coverage, avg(on_time_shown::int) AS on_time_shown,
    avg(error_days) AS bias_days"""

# The ETAs to score for one delivered shipment ($1), shown before its delivery (a shadow
# model's are never shown): the first shown, the first shown at each stage, and the one in
# force when each notification but the delivery's own went out. Dates are the customer's
# ($2: their time zone).
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
                        on_time_shown, scored_at)
SELECT s.shipment_id, e.id, p.kind, e.model_version, e.stage, s.carrier, s.service_level,
       $3, e.predicted_at, e.eta_p10, e.eta_p50, e.eta_p90, s.delivered_at,
       extract(epoch FROM s.delivered_at - e.eta_p50) / 86400.0,
       abs(extract(epoch FROM s.delivered_at - e.eta_p50)) / 86400.0,
       s.delivered_at BETWEEN e.eta_p10 AND e.eta_p90,
       (s.delivered_at AT TIME ZONE $2)::date <= (e.eta_p90 AT TIME ZONE $2)::date,
       $4
FROM picked p JOIN e ON e.id = p.id CROSS JOIN s
ON CONFLICT (eta_id, kind) DO NOTHING
"""


async def score_delivered(conn: asyncpg.Connection, shipment_id: str, timezone: str,
                          lane: str, now: datetime) -> int:
    """Score every ETA shown for a delivered shipment (nothing if it is not delivered);
    how many scores are new. One statement; scoring the same delivery again adds none."""
    status: str = await conn.execute(SCORE, shipment_id, timezone, lane, now)
    return int(status.rsplit(" ", 1)[-1])


async def scores(conn: asyncpg.Connection, shipment_id: str) -> list[dict[str, Any]]:
    """A shipment's scores (kind, stage, eta id, errors), oldest prediction first."""
    rows = await conn.fetch(
        """SELECT kind, stage, eta_id, model_version, abs_error_days, error_days,
                  inside_window, on_time_shown FROM eta_scores WHERE shipment_id = $1
           ORDER BY predicted_at, eta_id, kind""", shipment_id)
    return [dict(r) for r in rows]


async def champion_live_accuracy(conn: asyncpg.Connection, version: str, since: datetime,
                                 kind: Kind = "stage") -> LiveAccuracy:
    """How `version`'s shown ETAs did on parcels delivered since `since`; by default the
    first ETA shown at each stage, the mix closest to a model's validation snapshots."""
    row = await conn.fetchrow(
        f"""SELECT {_AGGREGATES} FROM eta_scores
            WHERE model_version = $1 AND delivered_at >= $2 AND kind = $3""",
        version, since, kind)
    assert row is not None
    return LiveAccuracy(version=version, since=since, kind=kind, scored=row["scored"],
                        mae_days=_float(row["mae_days"]), coverage=_float(row["coverage"]),
                        on_time_shown=_float(row["on_time_shown"]),
                        bias_days=_float(row["bias_days"]))


async def accuracy_by(conn: asyncpg.Connection, by: str, since: datetime | None = None,
                      kind: Kind = "stage", version: str | None = None
                      ) -> list[SegmentAccuracy]:
    """Live accuracy per segment (one of :data:`SEGMENTS`), most scored first (weeks in
    order)."""
    expression = SEGMENTS[by]
    order = "segment" if by == "week" else "scored DESC, segment"
    rows = await conn.fetch(
        f"""SELECT {expression} AS segment, {_AGGREGATES} FROM eta_scores
            WHERE kind = $1 AND ($2::timestamptz IS NULL OR delivered_at >= $2)
              AND ($3::text IS NULL OR model_version = $3)
            GROUP BY 1 ORDER BY {order}""", kind, since, version)
    return [SegmentAccuracy(segment=r["segment"], scored=r["scored"],
                            mae_days=float(r["mae_days"]), coverage=float(r["coverage"]),
                            on_time_shown=float(r["on_time_shown"]),
                            bias_days=float(r["bias_days"])) for r in rows]


async def by_carrier_service(conn: asyncpg.Connection, since: datetime, top: int,
                             kind: Kind = "stage") -> list[CarrierServiceAccuracy]:
    """Live accuracy per carrier and service since `since`: the `top` most scored pairs,
    every other pair folded into ('other', 'other') — bounded metric labels."""
    rows = await conn.fetch(
        """WITH pairs AS (
               SELECT carrier, service_level, count(*) AS n, sum(abs_error_days) AS err,
                      sum(inside_window::int) AS inside, sum(on_time_shown::int) AS on_time,
                      row_number() OVER (ORDER BY count(*) DESC, carrier, service_level) AS r
               FROM eta_scores WHERE kind = $1 AND delivered_at >= $2
               GROUP BY carrier, service_level)
           SELECT CASE WHEN r <= $3 THEN carrier ELSE 'other' END AS carrier,
                  CASE WHEN r <= $3 THEN service_level ELSE 'other' END AS service_level,
                  sum(n) AS scored, sum(err) / sum(n) AS mae_days,
                  sum(inside)::float / sum(n) AS coverage,
                  sum(on_time)::float / sum(n) AS on_time_shown
           FROM pairs GROUP BY 1, 2 ORDER BY 3 DESC""", kind, since, top)
    return [CarrierServiceAccuracy(carrier=r["carrier"], service_level=r["service_level"],
                                   scored=int(r["scored"]), mae_days=float(r["mae_days"]),
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
    """How often a model's deliveries came before its shown p10, p50 and p90."""
    row = await conn.fetchrow(
        """SELECT count(*) AS scored, avg((delivered_at < eta_p10)::int) AS below_p10,
                  avg((delivered_at < eta_p50)::int) AS below_p50,
                  avg((delivered_at <= eta_p90)::int) AS below_p90
           FROM eta_scores WHERE model_version = $1 AND kind = $2""", version, kind)
    assert row is not None
    return Calibration(scored=row["scored"], below_p10=_float(row["below_p10"]),
                       below_p50=_float(row["below_p50"]), below_p90=_float(row["below_p90"]))
