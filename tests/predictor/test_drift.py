"""Adapting to drift: the per-segment correction (fitted from what was known, served the
same way in batch and one-row paths) and the simulator's regime change."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from predictor.calibration import C_HOURS, CORRECTION, Outcomes, recalibrate
from predictor.correction import PREFIX, lead_bucket, segment_factors, segment_keys
from predictor.features import recent_performance, training_snapshots
from predictor.model import WALK_MAX_ROWS, EtaModel
from predictor.simulator import SimulatedHistory, simulate

DAY = 86_400.0


def _pool(n: int, seed: int = 0) -> Outcomes:
    """Snapshots over 60 days in two segments; raw quantiles right for segment "a", while
    segment "b" parcels take 1.5x longer than the booster thinks."""
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0, 60 * DAY, n))
    horizon = rng.uniform(24, 240, n)
    seg = np.where(rng.random(n) < 0.5, "l:a", "l:b").astype(object)
    y = horizon * np.exp(0.3 * rng.standard_normal(n)) * np.where(seg == "l:b", 1.5, 1.0)
    raw = horizon[:, None] * np.exp(0.3 * np.array([-1.2816, 0.0, 1.2816]))[None, :]
    return Outcomes(s, raw, s + y * 3600, np.full(n, 1), segment=seg)


def test_segment_factors_correct_the_segment_that_drifted() -> None:
    pool = _pool(30_000)
    f = pool.factors(45 * DAY)
    a = [f[f"{PREFIX}l:a|{k}"] for k in ("log_q10", "log_q50", "log_q90")]
    b = [f[f"{PREFIX}l:b|{k}"] for k in ("log_q10", "log_q50", "log_q90")]
    # The group factor takes the average drift; the segments split it in opposite ways.
    assert all(x < -0.05 for x in a) and all(x > 0.05 for x in b)
    # Without segments the same cohort gives the same group factors and no segment keys.
    plain = Outcomes(pool.snapshot_s, pool.raw, pool.delivered_s, pool.group).factors(45 * DAY)
    assert plain == {k: v for k, v in f.items() if not k.startswith(PREFIX)}


def test_a_segment_is_corrected_per_scan_group() -> None:
    """Before the handover a segment's parcels are later than the booster thinks, after it
    earlier: one factor per segment would cancel out; per scan group each side is fixed,
    and a calibration keyed before the split still applies to every group."""
    rng = np.random.default_rng(3)
    n = 30_000
    s = np.sort(rng.uniform(0, 60 * DAY, n))
    horizon = rng.uniform(24, 240, n)
    group = rng.integers(0, 2, n)
    y = horizon * np.exp(0.3 * rng.standard_normal(n)) * np.where(group == 0, 1.4, 1 / 1.4)
    raw = horizon[:, None] * np.exp(0.3 * np.array([-1.2816, 0.0, 1.2816]))[None, :]
    keys = segment_keys({"carrier": np.full(n, "ups", dtype=object),
                         "service_level": np.full(n, "ground", dtype=object),
                         "promised_lead_bdays": np.full(n, 4.0), "n_scans": group})
    # Group factors pooled over one group only (as if every parcel had the same scans):
    # what is left of the error is the segment's, opposite in the two groups.
    f = Outcomes(s, raw, s + y * 3600, np.ones(n, dtype=int), segment=keys).factors(45 * DAY)
    before, after = f[f"{PREFIX}c:ups|ground|g0|log_q50"], f[f"{PREFIX}c:ups|ground|g1|log_q50"]
    assert before > 0.15 and after < -0.15
    old = {f"{PREFIX}c:ups|ground|{k}": 0.25 for k in ("log_q10", "log_q50", "log_q90")}
    served = segment_factors(np.array(["c:ups|ground|g0", "c:ups|ground|g1", "l:a|g1"]),
                             old | {f"{PREFIX}c:ups|ground|g1|{k}": -0.1
                                    for k in ("log_q10", "log_q50", "log_q90")})
    np.testing.assert_allclose(served, [[0.25] * 3, [-0.1] * 3, [0.0] * 3])


def test_segment_factors_never_read_the_future() -> None:
    pool = _pool(20_000)
    at = 40 * DAY
    before = pool.factors(at)
    late = pool.delivered_s >= at
    changed = Outcomes(np.r_[pool.snapshot_s, at + np.arange(300.0)],
                       np.r_[pool.raw, np.full((300, 3), 1.0)],
                       np.r_[np.where(late, pool.delivered_s + 90 * DAY, pool.delivered_s),
                             np.full(300, at + 1.0)],
                       np.r_[pool.group, np.ones(300, dtype=int)],
                       segment=np.r_[pool.segment, np.full(300, "l:b", dtype=object)])
    assert changed.factors(at) == before


def test_segments_from_carrier_or_promise_lead_and_scan_group() -> None:
    X = {"carrier": np.array(["ups", "unknown", None, "ups"], dtype=object),
         "service_level": np.array(["ground", "unknown", "unknown", "ground"], dtype=object),
         "promised_lead_bdays": np.array([4.0, 12.0, np.nan, 4.0]),
         "n_scans": np.array([0.0, 1.0, 5.0, 2.0])}
    assert segment_keys(X).tolist() == ["c:ups|ground|g0", "l:11-13|g1", "l:none|g2",
                                        "c:ups|ground|g2"]
    assert lead_bucket(np.array([0.0, 2.9, 3.0, 45.0])).tolist() == ["lt3", "lt3", "3-5", "40+"]


def test_correction_is_served_the_same_in_batch_and_one_row_paths(
        trained: tuple[EtaModel, dict[str, Any]], history: SimulatedHistory) -> None:
    model, _ = trained
    assert model.metadata["correction"] == CORRECTION
    corrected = dataclasses.replace(model, conformal=dict(model.conformal),
                                    metadata=dict(model.metadata))
    corrected.conformal |= {f"{PREFIX}c:ups|ground|log_q10": -0.2,
                            f"{PREFIX}c:ups|ground|log_q50": 0.3,
                            f"{PREFIX}c:ups|ground|log_q90": 0.4}
    X, _, _ = training_snapshots(history.shipments.head(80), history.events,
                                 recent=recent_performance(history.shipments))
    batch = corrected.predict(X)
    ups_ground = (X["carrier"].astype(str) == "ups") & (X["service_level"].astype(str) == "ground")
    assert ups_ground.sum() > 5
    uncorrected = dataclasses.replace(corrected, conformal={
        k: v for k, v in corrected.conformal.items() if not k.startswith(PREFIX)})
    plain = uncorrected.predict(X)
    moved = np.abs(batch - plain).max(axis=1) > 1e-6
    assert moved[ups_ground.to_numpy()].all()
    np.testing.assert_array_equal(batch[~moved], plain[~moved])
    # One shipment's refresh: one array per feature, scored by the numpy tree walk.
    for i in np.flatnonzero(ups_ground.to_numpy())[:5].tolist() + [0, 1, 2]:
        row = {name: np.asarray(X[name])[i:i + 1] for name in X.columns}
        np.testing.assert_allclose(corrected.predict(row)[0], batch[i], rtol=1e-6)
        hours, _ = corrected.predict_explained(row)
        np.testing.assert_allclose(hours[0], batch[i], atol=1e-3)
    few = {name: np.asarray(X[name])[:WALK_MAX_ROWS] for name in X.columns}
    np.testing.assert_allclose(corrected.predict_explained(few)[0], batch[:WALK_MAX_ROWS],
                               atol=1e-3)
    # Through the artefact and the service's float-only factor store.
    copy = EtaModel.from_bytes(corrected.to_bytes())
    copy.conformal = {str(k): float(v) for k, v in corrected.conformal.items()}
    np.testing.assert_array_equal(copy.predict(X), batch)


def test_recalibrate_fits_the_segments_of_a_corrected_model(
        trained: tuple[EtaModel, dict[str, Any]], history: SimulatedHistory) -> None:
    model, _ = trained
    copy = dataclasses.replace(model, conformal=dict(model.conformal),
                               metadata=dict(model.metadata))
    as_of = history.shipments["label_created_at"].max().to_pydatetime()
    factors = recalibrate(copy, history.shipments, history.events, as_of)
    segs = {k for k in factors if k.startswith(PREFIX)}
    assert segs and all(k.split("|")[1].startswith("c:") for k in segs)
    assert all(abs(v) <= 1.0 for v in factors.values() if v != C_HOURS)
    assert all(isinstance(v, float) for v in factors.values())


def test_regime_change_is_off_by_default_and_touches_only_its_carrier() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    a = simulate(600, 30, start, seed=5)
    b = simulate(600, 30, start, seed=5, regime_change=None)
    pd.testing.assert_frame_equal(a.shipments, b.shipments)
    pd.testing.assert_frame_equal(a.events, b.events)
    c = simulate(600, 30, start, seed=5, regime_change=("ups", 15, 2.0))
    ratio = c.shipments["oracle_transit_bdays"] / a.shipments["oracle_transit_bdays"]
    changed = ratio != 1.0
    handover_day = (a.shipments["oracle_handover_at"].dt.tz_convert("America/New_York")
                    .dt.tz_localize(None).dt.normalize())
    expected = ((a.shipments["carrier"] == "ups")
                & (handover_day >= pd.Timestamp("2024-05-16")))
    # Pickup days are local to the warehouse: compare away from the boundary day.
    away = (handover_day - pd.Timestamp("2024-05-16")).abs() > pd.Timedelta(days=1)
    assert (changed[away] == expected[away]).all() and expected.sum() > 30
    np.testing.assert_allclose(ratio[changed], 2.0)
    same = ~changed
    pd.testing.assert_frame_equal(a.shipments[same], c.shipments[same])
    slower = (c.shipments["delivered_at"] - a.shipments["delivered_at"])[changed].dropna()
    assert (slower >= pd.Timedelta(0)).all() and (slower > pd.Timedelta(0)).mean() > 0.5
