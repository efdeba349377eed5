"""Adaptive calibration: only what was known at each instant, and it follows a slowdown."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from predictor.calibration import (
    C_HOURS,
    LEVELS,
    Outcomes,
    apply_factors,
    is_adaptive,
    km_quantiles,
    online_quantiles,
    recalibrate,
)
from predictor.model import EtaModel
from predictor.simulator import SimulatedHistory

DAY = 86_400.0


def _pool(n: int, slow_from: float | None = None, seed: int = 0) -> Outcomes:
    """Snapshots over 60 days; raw p10/p50/p90 right for a log-normal transit, which
    becomes 1.6x slower for snapshots taken from ``slow_from`` on."""
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0, 60 * DAY, n))
    horizon = rng.uniform(24, 240, n)  # hours: short and long horizons mixed
    y = horizon * np.exp(0.3 * rng.standard_normal(n))
    if slow_from is not None:
        y = np.where(s >= slow_from, y * 1.6, y)
    raw = horizon[:, None] * np.exp(0.3 * np.array([-1.2816, 0.0, 1.2816]))[None, :]
    return Outcomes(s, raw, s + y * 3600, np.full(n, 1))


def test_km_quantiles_match_plain_quantiles_without_censoring() -> None:
    v = np.random.default_rng(1).normal(size=5000)
    got = km_quantiles(v, np.ones(len(v), dtype=bool), (0.1, 0.5, 0.9))
    np.testing.assert_allclose(got, np.quantile(v, [0.1, 0.5, 0.9]), atol=0.01)
    # Censored values only bound the truth from below: the median of 1..10 with the five
    # largest censored early is not estimable past the censoring point.
    assert np.isnan(km_quantiles(np.arange(10.0), np.arange(10) < 3, (0.9,))[0])


def test_km_is_not_fooled_by_parcels_still_in_flight() -> None:
    rng = np.random.default_rng(2)
    truth = rng.exponential(10.0, 20_000)
    start = rng.uniform(0, 60, len(truth))  # shipped at `start`, observed at t = 60
    seen = start + truth < 60
    value = np.where(seen, truth, 60 - start)
    km = km_quantiles(value, seen, (0.5,))[0]
    naive = np.median(truth[seen])  # only deliveries that already happened: too fast
    assert abs(km - np.median(truth)) < 0.5 < abs(naive - np.median(truth))


def test_factors_never_read_snapshots_or_deliveries_from_after_the_instant() -> None:
    pool = _pool(20_000)
    at = 40 * DAY
    before = pool.factors(at)
    # Rewrite the future: deliveries at/after `at` become absurdly late, new snapshots
    # after `at` are added, and raw forecasts after `at` change.
    late = pool.delivered_s >= at
    changed = Outcomes(np.r_[pool.snapshot_s, at + np.arange(500.0)],
                       np.r_[pool.raw, np.full((500, 3), 1.0)],
                       np.r_[np.where(late, pool.delivered_s + 90 * DAY, pool.delivered_s),
                             np.full(500, at + 1.0)],
                       np.r_[pool.group, np.ones(500, dtype=int)])
    assert changed.factors(at) == before


def test_online_quantiles_use_only_what_was_known_each_day() -> None:
    pool = _pool(20_000)
    q_s = np.array([30.5, 31.2, 45.9]) * DAY
    raw = np.array([[50.0, 80.0, 120.0]] * 3)
    group = np.ones(3, dtype=int)
    out, _ = online_quantiles(pool, q_s, raw, group, {"log_c_hours": C_HOURS, "log_q10": 0.0,
                                                      "log_q50": 0.0, "log_q90": 0.0})
    for i, t in enumerate(q_s):
        start = np.floor(t / DAY) * DAY
        future = pool.snapshot_s >= start
        cut = Outcomes(pool.snapshot_s[~future], pool.raw[~future],
                       np.where(pool.delivered_s < start, pool.delivered_s, np.nan)[~future],
                       pool.group[~future])
        np.testing.assert_allclose(out[i], apply_factors(raw[i:i + 1], group[i:i + 1],
                                                         cut.factors(start))[0])


def test_factors_follow_a_slowdown_sooner_than_recent_deliveries_do() -> None:
    calm, slow = _pool(40_000), _pool(40_000, slow_from=30 * DAY)
    at = 40 * DAY  # ten days into the slowdown: most slow long-horizon parcels still out
    plain = (0.1, 0.5, 0.9)  # the raw quantiles' own levels: a calm world needs no factor
    f_calm, f_slow = calm.factors(at, 21, levels=plain), slow.factors(at, 21, levels=plain)
    assert abs(f_calm["log_q50"]) < 0.02 and abs(f_calm["log_q90"]) < 0.02
    assert f_slow["log_q50"] > 0.07 and f_slow["log_q90"] > 0.12
    # The errors of parcels delivered in the same window only show half of it yet.
    recent = (slow.delivered_s < at) & (slow.delivered_s >= at - 21 * DAY)
    y = (slow.delivered_s - slow.snapshot_s)[recent] / 3600
    ratio = np.log((y[:, None] + C_HOURS) / (slow.raw[recent] + C_HOURS))
    assert np.quantile(ratio[:, 1], 0.5) < f_slow["log_q50"] - 0.04
    assert np.quantile(ratio[:, 2], 0.9) < f_slow["log_q90"] - 0.08


def test_calibrated_window_keeps_the_promise_on_each_side() -> None:
    """About 80 % of parcels inside the window and at least 92 % by its late end: the
    calibrated ends reach the targeted miss rate on each side, whatever the booster's
    own quantiles say (here: right for the 10 % / 90 % points, too narrow)."""
    pool = _pool(40_000)
    at = 50 * DAY  # the cohort: the last 28 days, parcels still in flight censored
    factors = pool.factors(at)
    fresh = _pool(40_000, seed=7)  # later parcels from the same world
    y = (fresh.delivered_s - fresh.snapshot_s) / 3600
    q = apply_factors(fresh.raw, fresh.group, factors)
    below, above = float(np.mean(y < q[:, 0])), float(np.mean(y > q[:, 2]))
    assert abs(below - LEVELS[0]) < 0.01 and abs(above - (1 - LEVELS[2])) < 0.01
    assert float(np.mean(y <= q[:, 2])) >= 0.915  # delivered by the window's late end
    assert 0.78 <= 1 - below - above <= 0.82  # inside the window


def test_trained_model_carries_adaptive_factors_through_bytes(
        trained: tuple[EtaModel, dict[str, Any]]) -> None:
    model, report = trained
    assert is_adaptive(model.conformal)
    as_of = pd.Timestamp(model.metadata["calibration"]["as_of"])
    assert abs(as_of - pd.Timestamp(report["model"]["data_range"]["to"])) < pd.Timedelta("1ms")
    copy = EtaModel.from_bytes(model.to_bytes())
    assert copy.conformal == model.conformal
    raw = np.array([[10.0, 20.0, 40.0], [5.0, 30.0, 90.0]])
    np.testing.assert_array_equal(copy.calibrate(raw, np.array([0.0, 3.0])),
                                  model.calibrate(raw, np.array([0.0, 3.0])))
    # The evaluation also reports the static offsets on the same snapshots.
    overall = report["evaluation"]["overall"]
    assert overall["model_static_calibration"]["n"] == overall["model"]["n"]


def test_recalibrate_ignores_what_happened_after_as_of(
        trained: tuple[EtaModel, dict[str, Any]], history: SimulatedHistory) -> None:
    model, _ = trained
    s, ev = history.shipments, history.events
    as_of = (s["label_created_at"].min() + timedelta(days=40)).to_pydatetime()
    # The same history as a database would have held it at as_of.
    known = s[s["label_created_at"] < as_of].copy()
    for col in ("shipped_at", "delivered_at"):
        known[col] = known[col].where(known[col] < as_of)
    known_ev = ev[ev["occurred_at"] < as_of]
    a = dataclasses.replace(model, conformal=dict(model.conformal),
                            metadata=dict(model.metadata))
    b = dataclasses.replace(model, conformal=dict(model.conformal),
                            metadata=dict(model.metadata))
    fa = recalibrate(a, s, ev, as_of)
    fb = recalibrate(b, known, known_ev, as_of)
    assert fa == fb and a.conformal == fa
    assert a.metadata["calibration"]["as_of"] == pd.Timestamp(as_of).isoformat()
    assert a.metadata["calibration"]["levels"] == list(LEVELS)  # the service's daily job
    assert model.conformal != fa  # the original is untouched


def test_recalibrate_without_news_keeps_the_calibration(
        trained: tuple[EtaModel, dict[str, Any]], history: SimulatedHistory) -> None:
    model, _ = trained
    copy = dataclasses.replace(model, conformal=dict(model.conformal),
                               metadata=dict(model.metadata))
    as_of = history.shipments["label_created_at"].min().to_pydatetime() - timedelta(days=1)
    assert recalibrate(copy, history.shipments, history.events, as_of) == model.conformal
    assert copy.conformal == model.conformal


def test_weighted_km_counts_a_weight_like_that_many_copies() -> None:
    rng = np.random.default_rng(4)
    v = rng.normal(size=3000)
    seen = rng.uniform(size=3000) < 0.8
    np.testing.assert_array_equal(km_quantiles(v, seen, (0.2, 0.5)),
                                  km_quantiles(v, seen, (0.2, 0.5), np.ones(3000)))
    twice = np.where(np.arange(3000) < 1000, 2.0, 1.0)
    copies = np.r_[np.arange(3000), np.arange(1000)]
    np.testing.assert_allclose(km_quantiles(v, seen, (0.2, 0.5, 0.7), twice),
                               km_quantiles(v[copies], seen[copies], (0.2, 0.5, 0.7)))


def test_a_recency_weighted_cohort_follows_a_slowdown_sooner() -> None:
    """Ten days into a 1.6x slowdown, a cohort whose snapshots count half as much every
    7 days of age has moved its median and late end further towards the new transit than
    the flat 28-day cohort; in a calm world both agree."""
    calm, slow = _pool(40_000), _pool(40_000, slow_from=30 * DAY)
    at, plain = 40 * DAY, (0.1, 0.5, 0.9)
    flat, weighted = slow.factors(at, 28, levels=plain, half_life_days=None), slow.factors(
        at, 28, levels=plain, half_life_days=7)
    assert weighted["log_q50"] > flat["log_q50"] + 0.03
    assert weighted["log_q90"] > flat["log_q90"] + 0.03
    f_flat, f_weighted = calm.factors(at, 28, levels=plain, half_life_days=None), calm.factors(
        at, 28, levels=plain, half_life_days=7)
    for k in ("log_q10", "log_q50", "log_q90"):
        assert abs(f_flat[k] - f_weighted[k]) < 0.02
