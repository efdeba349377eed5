"""The ETA at run time: the champion model (reloaded when another is promoted), recent lane
performance from the database, and one shipment's refresh. Model work runs in a thread:
it never blocks the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np
import pandas as pd

from predictor.features import SHIPMENT_COLUMNS, recent_performance_by_lane, serving_rows
from predictor.model import EtaModel, Features, late_probability
from predictor.recent import RecentPerformance
from service.clock import Clock
from service.eta.reasons import stored_reasons
from service.store import eta_models, etas, history
from service.store.transient import retrying_contention
from service.tracking.taxonomy import NOT_CARRIER_SCANS
from service.zones import customer_zone

RECENT_WINDOW = timedelta(days=21)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FEW_INSTANTS = 48
# What a refresh reads of a shipment: the features' columns and the first scan (handover).
REFRESH_FIELDS = (*SHIPMENT_COLUMNS, "first_scan_at")


@dataclass(frozen=True)
class Prediction:
    stage: str
    p10: datetime
    p50: datetime
    p90: datetime
    prob_late: float | None
    reasons: list[dict[str, Any]]


def destination_zone(shipment: Mapping[str, Any], default: str) -> str:
    """Where a promise is kept (all of its day): the destination's zone."""
    return _address_zone(shipment.get("destination_postal_code"),
                         shipment.get("destination_country"), default)


@lru_cache(maxsize=65_536)
def _address_zone(postal_code: str | None, country: str | None, default: str) -> str:
    """:func:`customer_zone` of a destination without an order's zone (shops reuse
    destinations: each is resolved once)."""
    return customer_zone(None, postal_code, country, default)


def hours_until_end_of(day: date | None, zone: str, now: datetime) -> float | None:
    """Hours from `now` to the end of `day` in `zone` (a promise is kept all day)."""
    if day is None:
        return None
    end = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=ZoneInfo(zone))
    return (end - now).total_seconds() / 3600


def stage_of(scans: list[dict[str, Any]]) -> str:
    carrier_scans = 0
    for s in scans:
        if s["status"] not in NOT_CARRIER_SCANS:
            carrier_scans += 1
            if carrier_scans == 2:
                return "later"
    return "first_scan" if carrier_scans else "label"


def _instants(now: datetime, hours: np.ndarray) -> list[list[datetime]]:
    """``now`` + each of ``hours`` (rounded to the microsecond, as the database keeps
    them), row by row, made in one pass for a whole batch."""
    hours = np.asarray(hours, dtype=np.float64)
    if not np.isfinite(hours).all():  # as timedelta(hours=nan) would
        raise ValueError("an ETA of no finite number of hours")
    start = (now - _EPOCH) // timedelta(microseconds=1)
    us = start + np.rint(hours * 3_600_000_000).astype(np.int64)
    # pandas makes many at C speed but costs ~50 us a call: a refresh of one shipment
    # (three instants) takes numpy's naive datetimes instead.
    stamps = (pd.to_datetime(us.ravel(), unit="us", utc=True).to_pydatetime()
              if us.size > _FEW_INSTANTS else
              [s.replace(tzinfo=UTC) for s in us.ravel().astype("datetime64[us]").astype(object)])
    width = us.shape[1]
    return [list(stamps[i:i + width]) for i in range(0, len(stamps), width)]


async def refresh_inputs(conn: asyncpg.Connection, shipment_ids: list[str], now: datetime
                         ) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The unfinished shipments among `shipment_ids` as a refresh scores them (handed over at
    the first scan if the OMS never said; not delivered, by definition; with the `revision`
    of their inputs read) and their scans."""
    found = await etas.unfinished_with_scans(conn, shipment_ids, now, REFRESH_FIELDS)
    for row, _ in found:
        if row["shipped_at"] is None:
            row["shipped_at"] = row["first_scan_at"]
        row["delivered_at"] = None
    return [row for row, _ in found], [scans for _, scans in found]


def predict_many(model: EtaModel, shipments: list[dict[str, Any]],
                 scans: list[list[dict[str, Any]]], now: datetime,
                 recent: RecentPerformance, default_zone: str = "UTC") -> list[Prediction]:
    """Features + model + reasons for one or more shipments, with one feature build and
    one model call (CPU work: call it in a thread)."""
    return _predictions(model, serving_rows(shipments, scans, now, recent), shipments, scans,
                        now, default_zone)


def _predictions(model: EtaModel, features: Features, shipments: list[dict[str, Any]],
                 scans: list[list[dict[str, Any]]], now: datetime, default_zone: str
                 ) -> list[Prediction]:
    hours, explained = model.predict_explained(features, top=3)
    ends: dict[tuple[date, str], float | None] = {}  # a batch repeats days and zones
    promised = np.full(len(shipments), np.nan)
    for i, s in enumerate(shipments):
        if (day := s.get("promised_delivery_date")) is None:
            continue
        key = (day, destination_zone(s, default_zone))
        if key not in ends:
            ends[key] = hours_until_end_of(*key, now)
        if (h := ends[key]) is not None:
            promised[i] = h
    # The quantiles are already here: no second pass through the booster.
    late = late_probability(hours, np.nan_to_num(promised, nan=0.0)).tolist()
    known = (~np.isnan(promised)).tolist()
    return [Prediction(stage_of(shipment_scans), p10, p50, p90,
                       float(late[i]) if known[i] else None, stored_reasons(explained[i]))
            for i, (shipment_scans, (p10, p50, p90))
            in enumerate(zip(scans, _instants(now, hours), strict=True))]


class EtaRuntime:
    """Shared by the service (quotes) and the workers (refreshes), one per process."""

    def __init__(self, clock: Clock, *, check_every: float = 5.0,
                 recent_every: float = 60.0, default_zone: str = "UTC") -> None:
        self.clock = clock
        self.default_zone = default_zone  # the shop's zone (SHOP_TIMEZONE)
        self.check_every = check_every
        self.recent_every = recent_every
        self.model: EtaModel | None = None
        self.version: str | None = None
        self._checked = -float("inf")
        self._recent: RecentPerformance | None = None
        self._recent_built = -float("inf")
        self._recent_as_of: datetime | None = None
        self._lock = asyncio.Lock()
        self._calibration: tuple[str, int | None] | None = None
        # A challenger in shadow (service.eta.lifecycle): scored beside the champion on every
        # refresh, its ETAs stored flagged shadow, never shown nor messaged.
        self.shadow: EtaModel | None = None
        self.shadow_version: str | None = None
        self._shadow_calibration: int | None = None

    def expire(self) -> None:
        """Check the champion and its calibration again at the next use (this process just
        stored a new calibration: apply it now, not after `check_every`)."""
        self._checked = -float("inf")

    async def current(self, conn: asyncpg.Connection) -> EtaModel | None:
        """The champion, re-checked every `check_every` seconds (promotion without restart)."""
        if time.monotonic() - self._checked >= self.check_every:
            async with self._lock:
                if time.monotonic() - self._checked >= self.check_every:
                    version = await eta_models.champion_version(conn)
                    if version is not None and version != self.version:
                        row = await eta_models.get(conn, version)
                        if row is not None:
                            model = await asyncio.to_thread(EtaModel.from_bytes,
                                                            row.artefact)
                            # Serving scores one shipment or a small batch at a time, where
                            # OpenMP's thread hand-offs cost more than they save.
                            model.booster.set_param({"nthread": 1})
                            self.model = model
                            self.version = version
                    elif version is None:
                        self.model, self.version = None, None
                    if self.model is not None and self.version is not None:
                        await self._follow_calibration(conn, self.model, self.version)
                    await self._follow_shadow(conn)
                    self._checked = time.monotonic()
        return self.model

    async def _follow_shadow(self, conn: asyncpg.Connection) -> None:
        """Load the shadow challenger when it changes, and apply its newest calibration."""
        version = await eta_models.shadow_version(conn)
        if version != self.shadow_version:
            model = None
            if version is not None:
                row = await eta_models.get(conn, version)
                if row is not None:
                    model = await asyncio.to_thread(EtaModel.from_bytes, row.artefact)
                    model.booster.set_param({"nthread": 1})
            self.shadow = model
            self.shadow_version = version if model is not None else None
            self._shadow_calibration = None
        if self.shadow is None or self.shadow_version is None:
            return
        latest = await eta_models.latest_calibration(conn, self.shadow_version)
        if latest is not None and latest.id != self._shadow_calibration:
            self.shadow.conformal = {str(k): float(v) for k, v in latest.factors.items()}
            self._shadow_calibration = latest.id

    async def _follow_calibration(self, conn: asyncpg.Connection, model: EtaModel,
                                  version: str) -> None:
        """Apply the model's newest stored calibration (workers.recalibration), once."""
        latest = await eta_models.latest_calibration(conn, version)
        key = (version, None if latest is None else latest.id)
        if latest is not None and key != self._calibration:
            model.conformal = {str(k): float(v) for k, v in latest.factors.items()}
        self._calibration = key

    async def recent(self, conn: asyncpg.Connection, now: datetime) -> RecentPerformance:
        """Recent lane performance, rebuilt every `recent_every` real seconds or simulated day."""
        stale = (self._recent is None or self._recent_as_of is None
                 or time.monotonic() - self._recent_built >= self.recent_every
                 or abs((now - self._recent_as_of).total_seconds()) > 86400)
        if stale:
            rows = await history.recent_deliveries(conn, now - RECENT_WINDOW, now)
            self._recent = await asyncio.to_thread(
                lambda: recent_performance_by_lane(*history.deliveries_by_lane(rows)))
            self._recent_built, self._recent_as_of = time.monotonic(), now
        if self._recent is None:
            raise RuntimeError("recent performance was not built")
        return self._recent

    async def refresh(self, conn: asyncpg.Connection, shipment_id: str, now: datetime
                      ) -> Prediction | None:
        """Predict and store this shipment's ETA (nothing once it is finished or unmodelled)."""
        return (await self.refresh_many(conn, [shipment_id], now)).get(shipment_id)

    async def refresh_many(self, conn: asyncpg.Connection, shipment_ids: list[str],
                           now: datetime) -> dict[str, Prediction]:
        """Predict and store the ETAs of several shipments with one model call."""
        model = await self.current(conn)
        if model is None or not shipment_ids:
            return {}
        rows, scans = await refresh_inputs(conn, shipment_ids, now)
        if not rows:
            return {}
        recent = await self.recent(conn, now)
        predictions = await asyncio.to_thread(predict_many, model, rows, scans, now, recent,
                                              self.default_zone)
        # In id order, as every batch writer locks shipments, and again if it still lost a
        # deadlock (to the ingest statement, whose order is its own).
        ordered = sorted(zip((r["shipment_id"] for r in rows), predictions, strict=True),
                         key=lambda pair: pair[0])
        revision = {r["shipment_id"]: r["revision"] for r in rows}
        await retrying_contention(lambda: etas.store_many(
            conn, [i for i, _ in ordered], now, model.version, [p for _, p in ordered],
            revisions=[revision[i] for i, _ in ordered]))
        shadow = self.shadow
        if shadow is not None and shadow.version != model.version:
            # Same inputs, same instant: the challenger's answer, stored for scoring only.
            shadowed = await asyncio.to_thread(predict_many, shadow, rows, scans, now, recent,
                                               self.default_zone)
            paired = sorted(zip((r["shipment_id"] for r in rows), shadowed, strict=True),
                            key=lambda pair: pair[0])
            await retrying_contention(lambda: etas.store_many(
                conn, [i for i, _ in paired], now, shadow.version, [p for _, p in paired],
                shadow=True))
        return dict(ordered)


@dataclass(frozen=True)
class Quote:
    carrier: str
    service_level: str
    earliest: date
    likely: date
    latest: date


def quote_options(model: EtaModel, origin: tuple[str | None, str | None],
                  destination: tuple[str | None, str | None], order_time: datetime,
                  carriers: list[str], service_levels: list[str],
                  recent: RecentPerformance, default_zone: str = "UTC") -> list[Quote]:
    """Checkout delivery windows for each carrier x service (CPU work: call it in a thread)."""
    pairs = [(c, s) for c in carriers for s in service_levels]
    if not pairs:
        return []
    shipments = [{
        "shipment_id": f"quote-{i}", "carrier": c, "service_level": s,
        "tracking_number": f"quote-{i}", "origin_postal_code": origin[0],
        "origin_country": origin[1], "destination_postal_code": destination[0],
        "destination_country": destination[1], "promised_delivery_date": None,
        "label_created_at": order_time, "shipped_at": None, "delivered_at": None,
    } for i, (c, s) in enumerate(pairs)]
    hours = model.predict(serving_rows(shipments, [[] for _ in shipments], order_time, recent))
    zone = ZoneInfo(destination_zone({"destination_postal_code": destination[0],
                                      "destination_country": destination[1]}, default_zone))
    quotes = []
    for (carrier, service), row in zip(pairs, hours, strict=True):
        p10, p50, p90 = ((order_time + timedelta(hours=float(h))).astimezone(zone).date()
                         for h in row)
        quotes.append(Quote(carrier, service, p10, p50, p90))
    return sorted(quotes, key=lambda q: (q.latest, q.likely, q.carrier, q.service_level))


def modelled(model: EtaModel, name: str) -> list[str]:
    """The values of a categorical feature the model was trained on (e.g. its carriers)."""
    return [v for v in model.categories.get(name, []) if v != "unknown"]
