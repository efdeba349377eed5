"""The carrier's own estimate: simulated, a feature only from when it was given, a baseline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from predictor.features import (
    recent_performance,
    serving_row,
    shipment_attributes,
    training_snapshots,
)
from predictor.lanes import zip_timezone
from predictor.model import EtaModel
from predictor.simulator import SimulatedHistory


def test_simulated_carriers_estimate_most_parcels_at_pickup(history: SimulatedHistory) -> None:
    s = history.shipments
    shipped = s["shipped_at"].notna()
    has = s["carrier_estimated_delivery"].notna()
    assert not (has & ~shipped).any()
    assert 0.80 < has[shipped].mean() < 0.90
    assert (s.loc[has, "carrier_estimate_as_of"] == s.loc[has, "shipped_at"]).all()
    assert s.loc[has, "carrier_estimate_as_of"].notna().all()
    assert s.loc[~has, "carrier_estimate_as_of"].isna().all()
    # A business day on or after pickup, and on time for most parcels outside peak.
    est = pd.to_datetime(s.loc[has, "carrier_estimated_delivery"])
    assert (est.dt.day_of_week != 6).all()
    assert (est.dt.date >= s.loc[has, "shipped_at"].dt.date - timedelta(days=1)).all()
    delivered = s.loc[has, "delivered_at"].dt.tz_convert("America/New_York").dt.date
    on_time = (delivered <= est.dt.date)[delivered.notna()]
    assert 0.4 < on_time.mean() < 0.95


def test_estimate_feature_only_from_when_the_carrier_gave_it(history: SimulatedHistory) -> None:
    s, ev = history.shipments.head(400), history.events
    X, _, meta = training_snapshots(s, ev, recent=recent_performance(history.shipments))
    attrs = shipment_attributes(s)
    row = pd.Index(attrs["shipment_id"]).get_indexer(meta["shipment_id"].astype(str))
    told = attrs["estimate_s"].to_numpy()[row]
    as_of = pd.DatetimeIndex(meta["as_of"]).as_unit("us").asi8 / 1e6
    value = X["carrier_estimate_hours"].to_numpy()
    before = ~(told <= as_of)  # no estimate yet (or none at all)
    assert np.isnan(value[before]).all()
    assert np.isfinite(value[~before]).all() and (~before).sum() > 100
    assert np.isnan(value[(meta["stage"] == "label").to_numpy()]).all()
    # Hours from the snapshot to the end of the estimate's local day at the destination.
    i = int(np.flatnonzero(~before)[0])
    ship = s.iloc[row[i]]
    zone = ZoneInfo(zip_timezone(ship["destination_postal_code"], "US"))
    end = pd.Timestamp(ship["carrier_estimated_delivery"]).tz_localize(zone) + pd.Timedelta(days=1)
    expected = (end - meta.at[i, "as_of"]).total_seconds() / 3600
    assert abs(float(value[i]) - expected) < 1e-3


def test_one_row_path_hides_an_estimate_given_after_as_of(history: SimulatedHistory) -> None:
    s, ev = history.shipments, history.events
    recent = recent_performance(s)
    ship = s[s["carrier_estimated_delivery"].notna() & s["delivered_at"].notna()].iloc[0]
    scans = [{"status": str(r.status), "occurred_at": r.occurred_at}
             for r in ev[ev["tracking_number"] == ship["tracking_number"]].itertuples()]
    told = ship["carrier_estimate_as_of"].to_pydatetime()
    row = ship.to_dict()
    before = serving_row(row, scans, told - timedelta(minutes=5), recent)
    after = serving_row(row, scans, told + timedelta(minutes=5), recent)
    assert np.isnan(before["carrier_estimate_hours"][0])
    assert np.isfinite(after["carrier_estimate_hours"][0])
    # A shop without estimates (Olist, a quote) simply has none.
    bare = {k: v for k, v in row.items() if not k.startswith("carrier_estimate")}
    assert np.isnan(serving_row(bare, scans, told + timedelta(minutes=5),
                                recent)["carrier_estimate_hours"][0])


def test_carrier_estimate_is_a_baseline_where_it_exists(
        trained: tuple[EtaModel, dict[str, Any]]) -> None:
    _, report = trained
    ev = report["evaluation"]
    subset = ev["subsets"]["with_carrier_estimate"]
    n = subset["n_snapshots"]
    assert 0 < n < ev["n_snapshots"]
    assert ev["overall"]["carrier_estimate"]["n"] == n == subset["model"]["n"]
    assert subset["carrier_estimate"]["on_or_before_p90_date"] is not None
    assert ev["by_stage"]["label"]["carrier_estimate"] == {"n": 0}
    assert subset["model"]["mae_hours"] < subset["carrier_estimate"]["mae_hours"]
