"""Replaying live traffic through the public HTTP API on the simulated clock.

Orders arrive when placed, shipments when their label is printed, carrier scans a few
minutes to an hour after they happen (so some arrive out of order), 5 % of scans are
pushed a second time hours later (a feed retrying), and each push is a batch, shuffled.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pandas as pd

from predictor.payloads import event_payload
from predictor.sim_people import order_items
from service.clock import ScaledClock

TICK = timedelta(minutes=30)


@dataclass(order=True)
class Push:
    at: datetime
    kind: int  # 0 order, 1 shipment, 2 event: the order they go out within a tick
    method: str = field(compare=False)
    path: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)


@dataclass
class ReplayCounts:
    orders: int = 0
    shipments: int = 0
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: Counter[int] = field(default_factory=Counter)


def _iso(value: Any) -> str:
    return str(pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def plan(orders: pd.DataFrame, shipments: pd.DataFrame, events: pd.DataFrame, seed: int,
         duplicate_share: float = 0.05,
         estimates: dict[str, tuple[pd.Timestamp, Any]] | None = None) -> list[Push]:
    """Every call the live days make, in time order. ``estimates``: tracking number ->
    (when the carrier gave its estimated delivery date, the date); it rides on the scan
    of that instant, as a carrier's tracking feed sends it."""
    rng = random.Random(seed)
    estimates = estimates or {}
    pushes: list[Push] = []
    for i, o in enumerate(orders.itertuples(index=False)):
        pushes.append(Push(pd.Timestamp(o.placed_at).to_pydatetime(), 0, "PUT",
                           f"/v1/orders/{o.order_id}", {
            "placed_at": _iso(o.placed_at),
            "customer": {"name": o.customer_name, "email": o.customer_email,
                         "phone": o.customer_phone, "locale": str(o.locale),
                         "timezone": str(o.timezone)},
            "consent": {"email": True, "sms": i % 3 == 0}, "items": order_items(i)}))
    for s in shipments.itertuples(index=False):
        pushes.append(Push(pd.Timestamp(s.label_created_at).to_pydatetime(), 1, "PUT",
                           f"/v1/shipments/{s.shipment_id}", {
            "order_id": s.order_id, "carrier": str(s.carrier),
            "service_level": str(s.service_level), "tracking_number": s.tracking_number,
            "origin": {"postal_code": str(s.origin_postal_code), "country": "US"},
            "destination": {"postal_code": str(s.destination_postal_code), "country": "US"},
            "weight_grams": int(s.weight_grams),
            "promised_delivery_date": pd.Timestamp(s.promised_delivery_date).strftime(
                "%Y-%m-%d"),
            "label_created_at": _iso(s.label_created_at)}))
    for e in events.itertuples(index=False):
        if e.status == "label_created":
            continue  # the OMS's shipment PUT already says so
        body = event_payload(e._asdict())
        told = estimates.get(str(e.tracking_number))
        if told is not None and pd.Timestamp(e.occurred_at) == told[0]:
            body["estimated_delivery"] = pd.Timestamp(told[1]).strftime("%Y-%m-%d")
        occurred = pd.Timestamp(e.occurred_at).to_pydatetime()
        pushes.append(Push(occurred + timedelta(minutes=rng.expovariate(1 / 12)), 2,
                           "POST", "/v1/tracking-events", body))
        if rng.random() < duplicate_share:
            pushes.append(Push(occurred + timedelta(hours=rng.uniform(1, 8)), 2, "POST",
                               "/v1/tracking-events", body))
    pushes.sort()
    return pushes


async def run(base: str, key: str, pushes: list[Push], clock: ScaledClock, until: datetime,
              progress: Callable[[int], None], seed: int) -> ReplayCounts:
    counts = ReplayCounts()
    rng = random.Random(seed + 1)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as http:
        index = 0
        tick = pushes[0].at if pushes else until
        while index < len(pushes) and tick < until:
            tick += TICK
            # Not past `until`: from there the clock may run at real speed.
            wait = clock.real_seconds_until(min(tick, until))
            if wait > 0:
                await asyncio.sleep(wait)
            due: list[Push] = []
            while index < len(pushes) and pushes[index].at < tick:
                due.append(pushes[index])
                index += 1
            await _send_tick(http, due, counts, rng)
            progress(len(due))
    return counts


async def _send_tick(http: aiohttp.ClientSession, due: list[Push], counts: ReplayCounts,
                     rng: random.Random) -> None:
    semaphore = asyncio.Semaphore(16)

    async def put(push: Push) -> None:
        async with semaphore, http.put(push.path, data=orjson.dumps(push.body)) as answer:
            await answer.read()
            if answer.status >= 300:
                counts.errors[answer.status] += 1

    orders = [p for p in due if p.kind == 0]
    shipments = [p for p in due if p.kind == 1]
    events = [p.body for p in due if p.kind == 2]
    await asyncio.gather(*(put(p) for p in orders))
    counts.orders += len(orders)
    await asyncio.gather(*(put(p) for p in shipments))
    counts.shipments += len(shipments)
    rng.shuffle(events)
    for start in range(0, len(events), 500):
        batch = events[start:start + 500]
        async with http.post("/v1/tracking-events", data=orjson.dumps(batch)) as answer:
            result = await answer.json()
            if answer.status != 202:
                counts.errors[answer.status] += 1
                continue
        counts.events_sent += len(batch)
        counts.accepted += result["accepted"]
        counts.duplicates += result["duplicates"]
        counts.rejected += result["rejected"]
