"""Drift: a carrier whose network slows for good mid-history raises the feature-drift alarm
on the champion (stored, in the worker's gauges), and the same history without the change
raises none; residual drift compares live errors with the model's own validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from predictor.drift import residual_alarms
from predictor.simulator import simulate
from service.clock import ManualClock
from service.eta.training import train_and_register
from service.settings import Settings
from service.store import accuracy
from service.store.history import load_history
from workers.metrics import WorkerMetrics
from workers.monitoring import check_drift, publish

START = datetime(2026, 8, 1, tzinfo=UTC)
TRAINED = START + timedelta(days=38)  # the champion knows the history up to here
CHECKED = START + timedelta(days=58)  # the drift check's week: days 51-58
CHANGE = ("ups", 35, 2.5)  # UPS 2.5 times slower from day 35 on


async def _checked(pool: asyncpg.Pool, settings: Settings,
                   regime_change: tuple[str, int, float] | None) -> accuracy.DriftCheck:
    history = simulate(3000, 60, START, seed=5, regime_change=regime_change)
    async with pool.acquire() as conn:
        await load_history(conn, history.orders, history.shipments, history.events,
                           START + timedelta(days=60))
        outcome = await train_and_register(conn, TRAINED, rounds=30)
        assert outcome.promoted
        check = await check_drift(conn, settings, CHECKED)
        assert check is not None
        stored = await accuracy.latest_drift(conn)
        assert stored is not None
        assert (stored.model_version, stored.as_of, stored.alarms, stored.feature_psi) == (
            check.model_version, check.as_of, check.alarms, check.feature_psi)
    return check


@pytest.mark.parametrize("regime_change", [CHANGE, None], ids=["ups-slows", "no-change"])
async def test_a_carrier_slowing_for_good_raises_the_feature_drift_alarm(
    pool: asyncpg.Pool, settings: Settings, clock: ManualClock,
    regime_change: tuple[str, int, float] | None,
) -> None:
    check = await _checked(pool, settings, regime_change)
    assert check.inputs > 1000
    assert set(check.feature_psi) >= {"carrier", "carrier_transit_median_14d",
                                      "promised_lead_bdays"}
    # who ships what did not change, either way
    assert check.feature_psi["carrier"] < 0.05
    transit = {"feature_drift:carrier_transit_median_7d",
               "feature_drift:carrier_transit_median_14d"}
    if regime_change:
        assert transit <= set(check.alarms)
    else:
        assert not [a for a in check.alarms if a.startswith("feature_drift")]
    clock.set(CHECKED)
    metrics = WorkerMetrics()
    await publish(pool, clock, settings, metrics)
    raised = metrics.registry.get_sample_value(
        "parcelcast_eta_drift_alarm", {"alarm": "feature_drift:carrier_transit_median_14d"})
    assert raised == (1.0 if regime_change else 0.0)
    assert metrics.registry.get_sample_value(
        "parcelcast_eta_feature_psi", {"feature": "carrier_transit_median_14d"}
    ) == pytest.approx(check.feature_psi["carrier_transit_median_14d"])


def test_residual_drift_compares_live_errors_with_validation() -> None:
    assert residual_alarms(1.2, 1.0, 0.78, 0.8, mae_ratio=1.5, coverage_drop=0.15) == []
    assert residual_alarms(1.6, 1.0, 0.78, 0.8, mae_ratio=1.5,
                           coverage_drop=0.15) == ["residual_drift:mae"]
    assert residual_alarms(1.0, 1.0, 0.6, 0.8, mae_ratio=1.5,
                           coverage_drop=0.15) == ["residual_drift:coverage"]
    assert residual_alarms(None, 1.0, None, 0.8, mae_ratio=1.5, coverage_drop=0.15) == []
