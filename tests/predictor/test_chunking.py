"""Chunked snapshot building and scoring, and the snapshot table waiting on disk during
the fits (what keeps 1M-shipment training's memory down) give exactly what one pass over
everything in memory gives."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import predictor.features as features
import predictor.fitting as fitting
import predictor.oracle as oracle
import predictor.train as train
from predictor.features import (
    NUMERIC,
    recent_performance,
    shipment_attributes,
    spilled_snapshots,
    training_snapshots,
)
from predictor.simulator import SimulatedHistory
from predictor.spill import SpilledTable, take_rows


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


def test_a_spilled_table_gives_back_the_rows_it_was_given(history: SimulatedHistory,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    s, ev = history.shipments.head(600), history.events
    recent = recent_performance(history.shipments)
    X, y, meta = training_snapshots(s, ev, recent=recent)
    monkeypatch.setattr(features, "_CHUNK", 997)  # written to disk in several chunks
    (tmp_path / "built").mkdir()
    built, y2, meta2 = spilled_snapshots(s, ev, tmp_path / "built", recent=recent)
    (tmp_path / "written").mkdir()
    written = SpilledTable.write(X, tmp_path / "written")
    assert len(X) > 3 * 997 and len(built) == len(written) == len(X)
    assert len(list((tmp_path / "built").iterdir())) == len(NUMERIC)  # numbers on disk
    np.testing.assert_array_equal(y, y2)
    pd.testing.assert_frame_equal(meta, meta2)
    rows = np.sort(np.random.default_rng(1).choice(len(X), len(X) // 3, replace=False))
    for table in (built, written):
        assert list(table.columns) == list(X.columns)
        pd.testing.assert_frame_equal(table.take(rows), X.iloc[rows].reset_index(drop=True))
        pd.testing.assert_frame_equal(take_rows(table, rows, ["lane", "n_scans"]),
                                      take_rows(X, rows, ["lane", "n_scans"]))
    assert list(take_rows(X, rows, ["n_scans", "lane"]).columns) == ["lane", "n_scans"]


def test_training_with_the_table_on_disk_gives_the_same_model(
        history: SimulatedHistory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, ev = history.shipments.head(2500), history.events
    # Small chunks: the matrices are built from several chunks read back from disk.
    monkeypatch.setattr(fitting, "ENCODE_CHUNK", 1999)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[str] = []

    def progress(stage: str, _fraction: float) -> None:
        if stage == "boosting":
            seen.extend(p.name for p in tmp_path.rglob("*") if p.suffix in (".float32",
                                                                            ".pickle"))

    kwargs: dict[str, Any] = {"num_boost_round": 8, "params": {"nthread": 1}}
    kept, kept_report = train.train_model(s, ev, spill_shipments=None, **kwargs)
    assert not seen and not list(tmp_path.iterdir())
    spilled, spilled_report = train.train_model(s, ev, spill_shipments=0, progress=progress,
                                                **kwargs)
    # The first fit boosted while the snapshot table was on disk, and what the later
    # phases read (the attributes, the refit's rows) waited there too.
    assert any(name.endswith(".float32") for name in seen)
    assert {"shelf-later.pickle", "shelf-refit_rows.pickle"} <= set(seen)
    assert not list(tmp_path.iterdir())  # and the folder is gone once the fits are done
    X, _, _ = training_snapshots(s, ev)
    sample = X.iloc[:: max(1, len(X) // 500)]
    assert spilled_report["model"]["rows"]["train"] > 2 * 1999
    np.testing.assert_array_equal(spilled.predict_raw(sample), kept.predict_raw(sample))
    np.testing.assert_array_equal(spilled_report["holdout_model"].predict_raw(sample),
                                  kept_report["holdout_model"].predict_raw(sample))
    assert spilled.conformal == kept.conformal
    assert spilled_report["evaluation"]["overall"] == kept_report["evaluation"]["overall"]
