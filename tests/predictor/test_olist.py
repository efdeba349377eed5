"""CSV history import: bad rows reported by line number, good rows kept, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from predictor.features import current_features, recent_performance
from predictor.olist import OLIST, load_csv

FIXTURE = Path(__file__).parent / "fixtures" / "olist_small.csv"


def test_bad_rows_are_reported_with_line_numbers_and_the_rest_kept() -> None:
    shipments, events, errors = load_csv(FIXTURE, OLIST.mapping, OLIST.tz,
                                         defaults=OLIST.defaults)
    by_line = {e.line: e.reason for e in errors}
    assert set(by_line) == {4, 5, 6, 8}
    assert "cannot parse time" in by_line[4]
    assert "delivered before" in by_line[5]
    assert "missing shipment id" in by_line[6]
    assert "duplicate" in by_line[8]
    assert list(shipments["shipment_id"]) == ["a1", "a2", "a6", "a8"]
    assert set(events["status"]) == {"label_created", "in_transit", "delivered"}


def test_local_brazil_times_become_utc() -> None:
    shipments, _, _ = load_csv(FIXTURE, OLIST.mapping, OLIST.tz, defaults=OLIST.defaults)
    a1 = shipments.set_index("shipment_id").loc["a1"]
    # March 2017: Sao Paulo is on daylight time until 19 Feb, so UTC-3 in March.
    assert a1["placed_at"] == pd.Timestamp("2017-03-01 13:00:00", tz="UTC")
    # 20 Nov 2017 is in Brazilian summer time (UTC-2).
    a8 = shipments.set_index("shipment_id").loc["a8"]
    assert a8["placed_at"] == pd.Timestamp("2017-11-20 15:00:00", tz="UTC")
    assert pd.isna(a8["delivered_at"])
    # Missing approval time falls back to the purchase time for the label.
    a2 = shipments.set_index("shipment_id").loc["a2"]
    assert a2["label_created_at"] == a2["placed_at"]
    assert str(a1["promised_delivery_date"]) == "2017-03-20"


def test_features_work_without_carrier_or_lane() -> None:
    shipments, events, _ = load_csv(FIXTURE, OLIST.mapping, OLIST.tz, defaults=OLIST.defaults)
    X = current_features(shipments, events, datetime(2017, 3, 3, tzinfo=UTC),
                         recent_performance(shipments))
    assert (X["carrier"] == "unknown").all()
    assert X["distance_km"].isna().all()
    assert X["promised_lead_bdays"].notna().all()
