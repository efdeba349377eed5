"""Bulk history: loading a shop's past (simulated or imported) with COPY, and reading it back
as the frames the predictor trains on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import orjson
import pandas as pd

from service.store.pool import set_codecs
from service.tracking.taxonomy import status_rank

ORDER_COLUMNS = ["order_id", "placed_at", "customer_name", "customer_email", "customer_phone",
                 "locale", "timezone", "email_consent", "sms_consent", "items", "created_at",
                 "updated_at"]
SHIPMENT_COLUMNS = [
    "shipment_id", "order_id", "carrier", "service_level", "tracking_number",
    "origin_postal_code", "origin_country", "destination_postal_code", "destination_country",
    "weight_grams", "promised_delivery_date", "label_created_at", "shipped_at", "status",
    "status_rank", "status_occurred_at", "delivered_at", "event_count", "last_event_at",
    "first_scan_at", "derived_at", "created_at", "updated_at", "carrier_estimated_delivery",
    "carrier_estimate_source", "carrier_estimate_as_of",
]
EVENT_COLUMNS = ["dedupe_key", "carrier", "tracking_number", "carrier_event_id", "status",
                 "status_rank", "raw_code", "description", "location", "occurred_at",
                 "received_at", "payload"]
Progress = Callable[[int], None]


async def _binary_jsonb(conn: asyncpg.Connection) -> None:
    # COPY is binary: jsonb travels as a version byte and the JSON text.
    await conn.set_type_codec("jsonb", encoder=lambda text: b"\x01" + text.encode(),
                              decoder=lambda data: data[1:].decode(), schema="pg_catalog",
                              format="binary")


def _py(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _event_key(carrier: str, tracking_number: str, event_id: str) -> bytes:
    # The same key the API computes for an event with a carrier event id, so a history
    # event replayed through the API is recognised as a duplicate.
    basis = f"id\x1f{carrier}\x1f{tracking_number}\x1f{event_id}"
    return hashlib.sha256(basis.encode()).digest()[:16]


def derived_status(events: pd.DataFrame) -> pd.DataFrame:
    """Per (carrier, tracking_number): status as the API would derive it, and counters."""
    e = events.assign(rank=events["status"].map(status_rank).astype(int))
    known = e[e["status"] != "unknown"].sort_values(["rank", "occurred_at"])
    best = known.groupby(["carrier", "tracking_number"], observed=True).tail(1)
    best = best.set_index(["carrier", "tracking_number"])[["status", "rank", "occurred_at"]]
    grouped = e.groupby(["carrier", "tracking_number"], observed=True)
    scans = e[~e["status"].isin(["label_created", "unknown", "cancelled"])]
    stats = pd.DataFrame({
        "event_count": grouped.size(),
        "last_event_at": grouped["occurred_at"].max(),
        "first_scan_at": scans.groupby(["carrier", "tracking_number"], observed=True)[
            "occurred_at"].min(),
        "delivered_event_at": e[e["status"] == "delivered"].groupby(
            ["carrier", "tracking_number"], observed=True)["occurred_at"].min(),
    })
    return stats.join(best, how="left")


async def load_history(conn: asyncpg.Connection, orders: pd.DataFrame | None,
                       shipments: pd.DataFrame, events: pd.DataFrame, now: datetime,
                       progress: Progress | None = None) -> dict[str, int]:
    """COPY orders, shipments and their events in one transaction; counts loaded."""
    await _binary_jsonb(conn)
    try:
        return await _load(conn, orders, shipments, events, now, progress)
    finally:
        await set_codecs(conn)  # the connection may go back to a pool


async def _load(conn: asyncpg.Connection, orders: pd.DataFrame | None, shipments: pd.DataFrame,
                events: pd.DataFrame, now: datetime, progress: Progress | None
                ) -> dict[str, int]:
    state = derived_status(events)
    # Status and counters come from the events, as the API would derive them.
    s = shipments.drop(columns=[c for c in state.columns if c in shipments.columns])
    s["carrier"] = s["carrier"].astype(str)
    s["tracking_number"] = s["tracking_number"].astype(str)
    s = s.join(state, on=["carrier", "tracking_number"])
    async with conn.transaction():
        if orders is not None and len(orders):
            order_records = [
                (_py(o.order_id), _py(o.placed_at), _py(o.customer_name), _py(o.customer_email),
                 _py(o.customer_phone), str(o.locale), _py(o.timezone), True,
                 bool(getattr(o, "sms_consent", True)),
                 orjson.dumps(list(getattr(o, "items", []) or [])).decode(), now, now)
                for o in orders.itertuples(index=False)
            ]
            await conn.copy_records_to_table("orders", columns=ORDER_COLUMNS,
                                             records=order_records)
            if progress:
                progress(len(order_records))
        records: list[tuple[Any, ...]] = []
        for r in s.itertuples(index=False):
            status = r.status if isinstance(r.status, str) else "label_created"
            records.append((
                _py(r.shipment_id), _py(r.order_id), r.carrier, _py(r.service_level) or "ground",
                r.tracking_number, _py(r.origin_postal_code), _py(r.origin_country),
                _py(r.destination_postal_code), _py(r.destination_country),
                _py(getattr(r, "weight_grams", None)), _day(r.promised_delivery_date),
                _py(r.label_created_at), _py(r.shipped_at), status, status_rank(status),
                _py(r.occurred_at), _py(r.delivered_event_at) if status == "delivered" else None,
                int(_py(r.event_count) or 0), _py(r.last_event_at), _py(r.first_scan_at),
                now, now, now, *_estimate(r),
            ))
        await conn.copy_records_to_table("shipments", columns=SHIPMENT_COLUMNS, records=records)
        if progress:
            progress(len(records))
        records = []
        for e in events.itertuples(index=False):
            location = {k: v for k, v in (
                ("city", _py(getattr(e, "location_city", None))),
                ("region", _py(getattr(e, "location_region", None))),
                ("postal_code", _py(getattr(e, "location_postal_code", None))),
                ("country", _py(getattr(e, "location_country", None)))) if v}
            occurred = _py(e.occurred_at)
            payload = {"carrier": e.carrier, "tracking_number": e.tracking_number,
                       "event_id": e.event_id, "status": e.status,
                       "occurred_at": occurred.isoformat(), "description": _py(e.description),
                       "location": location or None, "source": "history"}
            location_json = orjson.dumps(location).decode() if location else None
            records.append((
                _event_key(str(e.carrier), str(e.tracking_number), str(e.event_id)),
                str(e.carrier), str(e.tracking_number), str(e.event_id), str(e.status),
                status_rank(str(e.status)), None, _py(e.description), location_json, occurred,
                now, orjson.dumps(payload).decode(),
            ))
        # Each event's dedupe key claimed first, with the id its row takes (a key already
        # stored fails the load, as a duplicate always did).
        ids = await conn.fetchval(
            "SELECT coalesce(array_agg(nextval('tracking_events_id_seq')), '{}') "
            "FROM generate_series(1, $1)", len(records))
        await conn.copy_records_to_table(
            "tracking_event_keys", columns=["dedupe_key", "event_id", "received_at"],
            records=[(r[0], i, now) for r, i in zip(records, ids, strict=True)])
        await conn.copy_records_to_table(
            "tracking_events", columns=["id", *EVENT_COLUMNS],
            records=[(i, *r) for r, i in zip(records, ids, strict=True)])
        if progress:
            progress(len(records))
    return {"orders": 0 if orders is None else len(orders), "shipments": len(s),
            "events": len(events)}


def _estimate(r: Any) -> tuple[Any, Any, Any]:
    """The carrier's own delivery estimate, when the history has one (date, source, as of)."""
    day = _day(getattr(r, "carrier_estimated_delivery", None))
    if day is None:
        return None, None, None
    return day, "history", _py(getattr(r, "carrier_estimate_as_of", None))


def _day(value: Any) -> Any:
    value = _py(value)
    if isinstance(value, datetime):
        return value.date()
    return value


async def training_frames(conn: asyncpg.Connection, until: datetime | None = None,
                          since: datetime | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shipments labelled before `until` and their events, as the predictor expects them;
    with `since`, only those labelled or delivered since then (and those still out)."""
    return (await training_shipments(conn, until, since),
            await training_events(conn, until, since))


async def training_shipments(conn: asyncpg.Connection, until: datetime | None = None,
                             since: datetime | None = None) -> pd.DataFrame:
    """The shipments of :func:`training_frames` (one row each, no events)."""
    until = until or datetime.max.replace(tzinfo=UTC)
    since = since or datetime.min.replace(tzinfo=UTC)
    shipments = await conn.fetch(
        """SELECT shipment_id, order_id, carrier, service_level, tracking_number,
                  origin_postal_code, origin_country, destination_postal_code,
                  destination_country, weight_grams, promised_delivery_date, label_created_at,
                  coalesce(shipped_at, first_scan_at) AS shipped_at,
                  -- the carrier's estimate, as far as it was known by `until`
                  CASE WHEN carrier_estimate_as_of < $1 THEN carrier_estimated_delivery
                  END AS carrier_estimated_delivery,
                  CASE WHEN carrier_estimate_as_of < $1 THEN carrier_estimate_as_of
                  END AS carrier_estimate_as_of,
                  -- a delivery after `until` is the future: training must not see it
                  CASE WHEN delivered_at < $1 THEN delivered_at END AS delivered_at
           FROM shipments WHERE label_created_at < $1
             AND (label_created_at >= $2 OR delivered_at IS NULL OR delivered_at >= $2)""",
        until, since)
    # A frame of tens of thousands of rows is CPU work: off the event loop.
    return await asyncio.to_thread(_frame, shipments, (
        "label_created_at", "shipped_at", "delivered_at", "carrier_estimate_as_of"))


async def training_events(conn: asyncpg.Connection, until: datetime | None = None,
                          since: datetime | None = None, *,
                          labelled: tuple[datetime, datetime] | None = None) -> pd.DataFrame:
    """The events of :func:`training_frames`; with ``labelled`` = (from, to), only those of
    shipments labelled in that half-open range (training on a cluster reads the history
    one such partition at a time)."""
    until = until or datetime.max.replace(tzinfo=UTC)
    since = since or datetime.min.replace(tzinfo=UTC)
    low, high = labelled or (datetime.min.replace(tzinfo=UTC), until)
    events = await conn.fetch(
        """SELECT e.carrier, e.tracking_number, e.carrier_event_id AS event_id, e.status,
                  e.occurred_at, e.description, e.location->>'city' AS location_city,
                  e.location->>'region' AS location_region,
                  e.location->>'postal_code' AS location_postal_code,
                  e.location->>'country' AS location_country
           FROM tracking_events e JOIN shipments s USING (carrier, tracking_number)
           WHERE s.label_created_at < $1 AND e.occurred_at < $1
             AND s.label_created_at >= $3 AND s.label_created_at < $4
             AND (s.label_created_at >= $2 OR s.delivered_at IS NULL OR s.delivered_at >= $2)""",
        until, since, low, high)
    return await asyncio.to_thread(_frame, events, ("occurred_at",))


def _frame(rows: list[asyncpg.Record], times: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(r) for r in rows])
    for column in times:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


# A lane of recent deliveries: the shipment columns its ETA features' keys come from.
RECENT_LANE_COLUMNS = ["carrier", "service_level", "origin_postal_code", "origin_country",
                       "destination_postal_code", "destination_country"]
# An unknown instant among the packed ones (int64's least value).
_NO_INSTANT = -(2 ** 63)


async def recent_deliveries(conn: asyncpg.Connection, since: datetime, until: datetime
                            ) -> list[asyncpg.Record]:
    """Shipments delivered in [since, until): what "recent lane performance" is built from.

    One row per distinct lane (RECENT_LANE_COLUMNS) with its deliveries' handover and
    delivery instants packed as big-endian int64 microseconds since the epoch: a process
    rebuilds this every minute from a window of weeks, and a record, a dict and a dozen
    Python values per delivery had made that rebuild's memory and CPU grow with the
    window's deliveries (~1 kB and ~10 µs each). Decoding is CPU work for a thread
    (`deliveries_by_lane`).
    """
    lane = ", ".join(RECENT_LANE_COLUMNS)
    rows = await conn.fetch(
        f"""SELECT {lane}, count(*) AS deliveries,
                   string_agg(int8send(coalesce(
                       (extract(epoch FROM coalesce(shipped_at, first_scan_at)) * 1000000)::int8,
                       {_NO_INSTANT})), ''::bytea ORDER BY shipment_id) AS shipped_us,
                   string_agg(int8send((extract(epoch FROM delivered_at) * 1000000)::int8),
                              ''::bytea ORDER BY shipment_id) AS delivered_us
            FROM shipments WHERE delivered_at >= $1 AND delivered_at < $2
            GROUP BY {lane}""", since, until)
    return list(rows)


def deliveries_by_lane(rows: list[asyncpg.Record]
                       ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """(lanes, deliveries per lane, handover and delivery instants as float epoch seconds,
    NaN unknown) of :func:`recent_deliveries`, as
    ``predictor.features.recent_performance_by_lane`` takes them."""
    lanes = pd.DataFrame([tuple(r[c] for c in RECENT_LANE_COLUMNS) for r in rows],
                         columns=RECENT_LANE_COLUMNS, dtype=object)
    counts = np.array([r["deliveries"] for r in rows], dtype=np.int64)
    instants = []
    for column in ("shipped_us", "delivered_us"):
        us = np.frombuffer(b"".join(r[column] for r in rows), dtype=">i8").astype(np.int64)
        seconds = us / 1e6  # as predictor.features reads timestamps: exact microseconds
        seconds[us == _NO_INSTANT] = np.nan
        instants.append(seconds)
    return lanes, counts, instants[0], instants[1]
