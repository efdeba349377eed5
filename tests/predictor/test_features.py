"""One feature path for training and serving, and no peeking into the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from predictor.features import (
    CATEGORICAL,
    FEATURES,
    current_features,
    recent_performance,
    serving_features,
    serving_rows,
    training_snapshots,
)
from predictor.recent import RecentPerformance
from predictor.simulator import SimulatedHistory


def test_training_and_serving_features_are_identical(history: SimulatedHistory) -> None:
    s, ev = history.shipments, history.events
    recent = recent_performance(s)
    X, y, meta = training_snapshots(s, ev, recent=recent)
    assert list(X.columns) == list(FEATURES)
    assert (y > 0).all()
    by_id = s.set_index("shipment_id")
    # Every stage, and a spread of shipments and instants (the one-row reader of the
    # refresh must agree with the frame-based one used for training, row for row).
    rng = np.random.default_rng(3)
    picks = np.union1d(meta.groupby("stage", observed=True).head(3).index,
                       rng.choice(len(meta), 150, replace=False))
    for i in picks:
        sid, as_of = meta.at[i, "shipment_id"], meta.at[i, "as_of"].to_pydatetime()
        ship = by_id.loc[sid].to_dict() | {"shipment_id": sid}
        scans = ev[ev["tracking_number"] == ship["tracking_number"]]
        rows = [{"tracking_number": str(r.tracking_number), "status": str(r.status),
                 "occurred_at": r.occurred_at.isoformat()} for r in scans.itertuples()]
        served = serving_features(ship, rows, as_of, recent)
        pd.testing.assert_frame_equal(_plain(served), _plain(X.loc[[i]]))


def test_one_row_reader_matches_frames_on_awkward_shipments(history: SimulatedHistory) -> None:
    """Missing carrier, lane, promise, country; other countries; upper-case codes; no scans."""
    s, ev = history.shipments, history.events
    recent = recent_performance(s)
    base = s.dropna(subset=["delivered_at"]).iloc[5].to_dict()
    scans = ev[ev["tracking_number"] == base["tracking_number"]]
    rows = [{"status": str(r.status), "occurred_at": r.occurred_at.to_pydatetime()}
            for r in scans.itertuples()]
    as_of = base["label_created_at"].to_pydatetime() + timedelta(hours=30)
    variants = [
        {}, {"carrier": None}, {"carrier": " UPS "}, {"service_level": float("nan")},
        {"origin_postal_code": None}, {"destination_postal_code": "00000"},
        {"destination_postal_code": None, "destination_country": "BR"},
        {"destination_country": "DE"}, {"promised_delivery_date": None},
        {"shipped_at": pd.NaT}, {"carrier": "", "service_level": "unknown"},
    ]
    for change in variants:
        ship = base | change
        for events in (rows, []):
            served = serving_features(ship, events, as_of, recent)
            frame = pd.DataFrame([ship])
            for col in ("label_created_at", "shipped_at", "delivered_at"):
                frame[col] = pd.to_datetime(frame[col], utc=True)
            ev_frame = pd.DataFrame(
                [{"tracking_number": ship["tracking_number"], **e} for e in events],
                columns=["tracking_number", "status", "occurred_at"])
            ev_frame["occurred_at"] = pd.to_datetime(ev_frame["occurred_at"], utc=True)
            batch = current_features(frame, ev_frame, as_of, recent)
            pd.testing.assert_frame_equal(_plain(served), _plain(batch), obj=str(change))


def test_a_batch_of_rows_matches_the_frame_path(history: SimulatedHistory) -> None:
    s, ev = history.shipments, history.events
    recent = recent_performance(s)
    batch = s.iloc[100:140].reset_index(drop=True)
    as_of = batch["label_created_at"].max().to_pydatetime() + timedelta(hours=20)
    mine = ev[ev["tracking_number"].isin(batch["tracking_number"])]
    scans = [[{"status": str(r.status), "occurred_at": r.occurred_at.to_pydatetime()}
              for r in mine[mine["tracking_number"] == t].itertuples()]
             for t in batch["tracking_number"]]
    rows = serving_rows([r._asdict() for r in batch.itertuples(index=False)], scans, as_of,
                        recent)
    frame = current_features(batch, mine[["tracking_number", "status", "occurred_at"]], as_of,
                             recent)
    served = pd.DataFrame({f: pd.Categorical(rows[f]) if f in CATEGORICAL
                           else rows[f].astype(np.float32) for f in FEATURES})
    pd.testing.assert_frame_equal(_plain(served), _plain(frame))
    assert served["n_scans"].sum() > 0


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as text: a one-row frame's category list is naturally shorter."""
    return frame.astype({c: object for c in CATEGORICAL}).reset_index(drop=True)


def test_serving_ignores_scans_after_as_of(history: SimulatedHistory) -> None:
    s, ev = history.shipments, history.events
    recent = recent_performance(s)
    ship = s.dropna(subset=["delivered_at"]).iloc[0]
    scans = ev[ev["tracking_number"] == ship["tracking_number"]]
    as_of = ship["shipped_at"].to_pydatetime() + timedelta(minutes=1)
    all_rows = [{"status": str(r.status), "occurred_at": r.occurred_at} for r in scans.itertuples()]
    past_rows = [r for r in all_rows if r["occurred_at"] <= as_of]
    a = serving_features(ship.to_dict(), all_rows, as_of, recent)
    b = serving_features(ship.to_dict(), past_rows, as_of, recent)
    pd.testing.assert_frame_equal(a, b)
    assert a.at[0, "latest_status"] == "in_transit" and a.at[0, "n_scans"] == 1


def test_recent_performance_uses_only_earlier_deliveries() -> None:
    day = datetime(2024, 10, 10, tzinfo=UTC)
    delivered = [day - timedelta(days=d, hours=3) for d in (1, 2, 3, 4)]
    transit = [10.0, 20.0, 30.0, 40.0]
    before = RecentPerformance(np.array([t.timestamp() for t in delivered]), np.array(transit),
                               {"lane": ["x"] * 4})
    # Add slow deliveries later on the as-of day and after it: they must not count.
    future = delivered + [day + timedelta(hours=1), day + timedelta(days=1)]
    after = RecentPerformance(np.array([t.timestamp() for t in future]),
                              np.array(transit + [500.0, 500.0]), {"lane": ["x"] * 6})
    as_of = np.array([(day + timedelta(hours=2)).timestamp()])
    m1, n1 = before.median("lane", ["x"], as_of, 7)
    m2, n2 = after.median("lane", ["x"], as_of, 7)
    assert n1[0] == n2[0] == 4
    assert m1[0] == m2[0]
    assert 20.0 <= m1[0] <= 30.0
    # Six days later the four old ones have left the 7-day window; the two newer count.
    later = np.array([(day + timedelta(days=6)).timestamp()])
    assert after.median("lane", ["x"], later, 7)[1][0] == 2
    unknown, count = after.median("lane", ["nope"], as_of, 7)
    assert np.isnan(unknown[0]) and count[0] == 0


def test_missing_carrier_lane_and_promise_do_not_break(history: SimulatedHistory) -> None:
    s = history.shipments.head(50).copy()
    s["carrier"] = None
    s["service_level"] = None
    s["origin_postal_code"] = None
    s["destination_postal_code"] = None
    s["promised_delivery_date"] = None
    ev = history.events[history.events["tracking_number"].isin(s["tracking_number"])]
    X = current_features(s, ev, datetime(2024, 10, 1, tzinfo=UTC), recent_performance(s))
    assert (X["carrier"] == "unknown").all() and (X["lane"] == "unknown").all()
    assert X["distance_km"].isna().all() and X["promised_lead_bdays"].isna().all()
    assert X["hours_since_label"].notna().all()
