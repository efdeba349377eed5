"""The simulator: deterministic, calendar-respecting, with realistic scan sequences."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import phonenumbers

from predictor.calendar import busday_calendar, local_dates_by_zone
from predictor.lanes import zip_timezone
from predictor.payloads import to_api_payloads
from predictor.simulator import SimulatedHistory, simulate


def test_same_seed_same_history_other_seed_differs() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    a, b = simulate(300, 20, start, seed=3), simulate(300, 20, start, seed=3)
    pd.testing.assert_frame_equal(a.shipments, b.shipments)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.orders, b.orders)
    c = simulate(300, 20, start, seed=4)
    assert not a.shipments["delivered_at"].equals(c.shipments["delivered_at"])


def test_no_delivery_on_sundays_or_holidays(history: SimulatedHistory) -> None:
    s = history.shipments.dropna(subset=["delivered_at"])
    zones = s["destination_postal_code"].map(zip_timezone)
    days = local_dates_by_zone(s["delivered_at"], zones)
    assert np.is_busday(days, busdaycal=busday_calendar("US")).all()
    pickup = local_dates_by_zone(s["shipped_at"],
                                 s["origin_postal_code"].astype(str).map(zip_timezone))
    assert np.is_busday(pickup, busdaycal=busday_calendar("US")).all()


def test_scan_sequences_are_ordered_and_complete(history: SimulatedHistory) -> None:
    ev = history.events
    assert ev["event_id"].is_unique
    assert set(ev["status"].astype(str)) <= {
        "label_created", "in_transit", "out_for_delivery", "delivery_attempted",
        "available_for_pickup", "delivered", "exception", "returned_to_sender",
        "cancelled", "unknown"}
    assert ev["occurred_at"].dt.tz is not None
    grouped = ev.groupby("tracking_number", observed=True, sort=False)
    assert grouped["occurred_at"].apply(lambda t: t.is_monotonic_increasing).all()
    assert (grouped["status"].first().astype(str) == "label_created").all()
    s = history.shipments.set_index("tracking_number")
    last = grouped.last()
    delivered = s["delivered_at"].notna()
    ids = s.index[delivered]
    assert (last.loc[ids, "status"].astype(str) == "delivered").all()
    assert (last.loc[ids, "occurred_at"] == s.loc[ids, "delivered_at"]).all()
    # A delivered parcel went out for delivery first, and was picked up before that.
    ofd = ev[ev["status"] == "out_for_delivery"].groupby("tracking_number", observed=True)[
        "occurred_at"].min()
    assert (ofd.reindex(ids) < s.loc[ids, "delivered_at"]).all()
    assert (s.loc[ids, "shipped_at"] < ofd.reindex(ids)).all()
    attempted = ev[ev["status"] == "delivery_attempted"]
    assert len(attempted) > 0  # the failed-attempt path is exercised


def test_incidents_exist_and_lost_parcels_have_no_delivery(history: SimulatedHistory) -> None:
    s = history.shipments
    assert s["delivered_at"].isna().sum() > 0
    assert s["shipped_at"].isna().sum() > 0
    assert (history.events["status"] == "exception").sum() > 0


def test_customers_have_valid_phone_numbers_and_locales(history: SimulatedHistory) -> None:
    o = history.orders
    sample = o["customer_phone"].head(300)
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(p)) for p in sample)
    assert set(o["locale"].astype(str)) == {"en", "es", "de", "pt-BR"}
    assert o["placed_at"].dt.tz is not None


def test_api_payloads_carry_offsets() -> None:
    h = simulate(20, 5, datetime(2024, 3, 1, tzinfo=UTC), seed=1)
    payloads = list(to_api_payloads(h))
    assert len(payloads) == 20 + 20 + len(h.events)
    method, path, order = payloads[0]
    assert (method, path) == ("PUT", "/v1/orders/ord_1_0000000")
    assert order["placed_at"].endswith("Z") and order["items"]
    _, path, shipment = payloads[20]
    assert path.startswith("/v1/shipments/")
    assert len(shipment["promised_delivery_date"]) == 10
    _, path, event = payloads[-1]
    assert path == "/v1/tracking-events" and event["occurred_at"].endswith("Z")
    assert set(event["location"]) == {"city", "region", "postal_code", "country"}
