"""Chunked snapshot building and scoring (what keeps 1M-shipment training under 4 GB)
give exactly what one pass over everything gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import predictor.features as features
import predictor.oracle as oracle
import predictor.train as train
from predictor.features import recent_performance, shipment_attributes, training_snapshots
from predictor.simulator import SimulatedHistory


def test_snapshots_do_not_depend_on_the_chunk_size(history: SimulatedHistory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    s, ev = history.shipments.head(1500), history.events
    recent = recent_performance(history.shipments)
    X, y, meta = training_snapshots(s, ev, recent=recent)
    monkeypatch.setattr(features, "_CHUNK", 997)
    X2, y2, meta2 = training_snapshots(s, ev, recent=recent)
    assert len(X) > 3 * 997
    pd.testing.assert_frame_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    pd.testing.assert_frame_equal(meta, meta2)


def test_unsorted_and_text_events_give_the_same_snapshots(history: SimulatedHistory) -> None:
    s = history.shipments.head(300)
    ev = history.events[history.events["tracking_number"].isin(s["tracking_number"])]
    shuffled = ev.sample(frac=1.0, random_state=3).astype(
        {"tracking_number": str, "status": str})
    recent = recent_performance(history.shipments)
    a = training_snapshots(s, ev, recent=recent)
    b = training_snapshots(s, shuffled, recent=recent)
    pd.testing.assert_frame_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_chunked_oracle_equals_one_pass(history: SimulatedHistory,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    s, ev = history.shipments.head(800), history.events
    attrs = shipment_attributes(s)
    _, _, meta = training_snapshots(s, ev, recent=recent_performance(history.shipments))
    rows = train.snapshot_rows(attrs, meta["shipment_id"])
    as_of = pd.DatetimeIndex(meta["as_of"]).tz_localize(None).as_unit("ns").values
    uniq, inverse = np.unique(rows, return_inverse=True)
    whole = oracle.oracle_quantiles(oracle.oracle_grid(s.iloc[uniq].reset_index(drop=True)),
                                    inverse, as_of)
    monkeypatch.setattr(train, "ORACLE_CHUNK", 53)
    monkeypatch.setattr(oracle, "_ROWS_PER_CHUNK", 101)
    np.testing.assert_array_equal(train._oracle_forecasts(s, rows, as_of), whole)
