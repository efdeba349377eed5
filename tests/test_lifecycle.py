"""The model lifecycle against real PostgreSQL: a challenger in shadow scores live traffic
(stored, never shown), is promoted on the parcels delivered since, or dropped; a champion
whose live accuracy degrades is rolled back automatically; the scheduled retrain trains in
a process of its own and puts its model in shadow."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from predictor.model import EtaModel
from predictor.promotion import Rules
from predictor.simulator import simulate
from service.clock import ManualClock
from service.eta.lifecycle import review
from service.eta.runtime import EtaRuntime, Prediction
from service.settings import Settings
from service.store import eta_models, etas
from service.store.history import load_history
from tests.builders import order, shipment
from tests.models import TRAINED_AT, install_champion
from tests.notifying import drain
from workers.context import WorkerContext
from workers.metrics import WorkerMetrics
from workers.render import Renderer
from workers.retraining import cron_jobs, model_lifecycle
from workers.sending.transports import build_transports

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RULES = Rules(min_parcels=100, min_gain=0.05, rollback_ratio=1.5)
WINDOW = timedelta(days=14)


async def register(conn: asyncpg.Connection, version: str, *,
                   validation_mae_hours: float | None = 12.0) -> None:
    await eta_models.register(conn, version, b"artefact", ["f"], {}, {}, None, None,
                              NOW - timedelta(days=30),
                              validation_mae_hours=validation_mae_hours)


async def delivered_parcels(conn: asyncpg.Connection, n: int) -> list[tuple[str, datetime]]:
    """n shipments delivered in the last days (ids and delivery times)."""
    out = []
    for i in range(n):
        delivered = NOW - timedelta(days=1 + (i % 10), hours=i % 7)
        sid = f"s-{i:04d}"
        await conn.execute(
            """INSERT INTO shipments (shipment_id, order_id, carrier, service_level,
                                      tracking_number, status, label_created_at,
                                      delivered_at, created_at, updated_at)
               VALUES ($1, $1, 'ups', 'ground', $1, 'delivered', $2, $3, $2, $3)""",
            sid, delivered - timedelta(days=4), delivered)
        out.append((sid, delivered))
    return out


async def serve(conn: asyncpg.Connection, version: str, parcels: list[tuple[str, datetime]],
                off_hours: float, *, shadow: bool = False) -> None:
    """ETAs served two days before each delivery, their p50 `off_hours` late, the window
    holding four deliveries in five."""
    for i, (sid, delivered) in enumerate(parcels):
        p50 = delivered + timedelta(hours=off_hours)
        half = timedelta(hours=abs(off_hours) * (0.5 if i % 5 == 0 else 1.5))
        await etas.store_many(conn, [sid], delivered - timedelta(days=2), version, [
            Prediction("first_scan", p50 - half, p50, p50 + half, None, [])], shadow=shadow)


async def test_a_shadow_models_etas_are_stored_but_never_shown(
        client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, settings: Settings,
        clock: ManualClock, eta_model: EtaModel) -> None:
    clock.set(TRAINED_AT)
    challenger = EtaModel.from_bytes(eta_model.to_bytes())
    challenger.metadata["version"] = "eta-challenger"
    challenger.conformal = {k: v + 5.0 for k, v in challenger.conformal.items()}
    async with pool.acquire() as conn:
        champion = await install_champion(conn, eta_model, TRAINED_AT)
        await eta_models.register(conn, "eta-challenger", challenger.to_bytes(),
                                  challenger.feature_names, {}, {}, None, None, TRAINED_AT)
        await eta_models.start_shadow(conn, "eta-challenger")
    await client.put("/v1/orders/o-1", json=order(), headers=admin)
    await client.put("/v1/shipments/s-1", headers=admin, json=shipment(
        "o-1", "1ZSHADOW", label_created_at="2026-10-20T17:30:00Z",
        promised_delivery_date="2026-10-26",
        origin={"postal_code": "07094", "country": "US"},
        destination={"postal_code": "94105", "country": "US"}))
    await drain(settings, clock, pool)
    async with pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT model_version, shadow, eta_p10, eta_p90 FROM shipment_etas "
            "WHERE shipment_id = 's-1' ORDER BY shadow")
        shown_id = await conn.fetchval(
            "SELECT eta_id FROM shipments WHERE shipment_id = 's-1'")
        first, latest = await etas.first_and_latest(conn, "s-1")
        history = await etas.history(conn, "s-1")
    assert [(r["model_version"], r["shadow"]) for r in stored] == [
        (champion, False), ("eta-challenger", True)]
    # Its window is different (wider) and it is kept, but the shipment points elsewhere.
    assert stored[1]["eta_p90"] - stored[1]["eta_p10"] > stored[0]["eta_p90"] - stored[0]["eta_p10"]
    assert first is not None and latest is not None and first.id == latest.id == shown_id
    assert [h.model_version for h in history] == [champion]
    answer = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert answer["eta"]["model_version"] == champion


async def test_a_shadow_that_beats_the_champion_on_delivered_parcels_is_promoted(
        pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await register(conn, "eta-old")
        await eta_models.promote(conn, "eta-old", "first model", NOW - timedelta(days=30))
        await register(conn, "eta-new")
        await eta_models.start_shadow(conn, "eta-new")
        parcels = await delivered_parcels(conn, 150)
        await serve(conn, "eta-old", parcels, 14.0)
        # Not yet: only 80 delivered parcels have the challenger's ETAs.
        await serve(conn, "eta-new", parcels[:80], -6.0, shadow=True)
        assert await review(conn, NOW, RULES, WINDOW) == []
        assert await eta_models.shadow_version(conn) == "eta-new"
        await serve(conn, "eta-new", parcels[80:], -6.0, shadow=True)
        actions = await review(conn, NOW, RULES, WINDOW)
        assert [(a.kind, a.version) for a in actions] == [("promoted", "eta-new")]
        assert "6.0 h vs champion 14.0 h on 150 parcels" in actions[0].reason
        assert await eta_models.champion_version(conn) == "eta-new"
        assert (await eta_models.get(conn, "eta-old")).status == "retired"  # type: ignore[union-attr]
        reason = await conn.fetchval(
            "SELECT reason FROM eta_model_promotions ORDER BY id DESC LIMIT 1")
        assert reason.startswith("shadow beats the champion")


async def test_a_shadow_that_loses_is_dropped_and_the_champion_stays(
        pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await register(conn, "eta-old")
        await eta_models.promote(conn, "eta-old", "first model", NOW - timedelta(days=30))
        await register(conn, "eta-new")
        await eta_models.start_shadow(conn, "eta-new")
        parcels = await delivered_parcels(conn, 150)
        await serve(conn, "eta-old", parcels, 10.0)
        await serve(conn, "eta-new", parcels, 10.5, shadow=True)
        actions = await review(conn, NOW, RULES, WINDOW)
        assert [(a.kind, a.version) for a in actions] == [("dropped", "eta-new")]
        assert await eta_models.champion_version(conn) == "eta-old"
        assert await eta_models.shadow_version(conn) is None
        # Live scores of the champion alone: 10 h against a validation of 12 h, healthy.
        assert await review(conn, NOW, RULES, WINDOW) == []


async def test_a_champion_that_degrades_live_is_rolled_back_once(
        pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture) -> None:
    async with pool.acquire() as conn:
        await register(conn, "eta-a")
        await eta_models.promote(conn, "eta-a", "first model", NOW - timedelta(days=30))
        await register(conn, "eta-b", validation_mae_hours=10.0)
        await eta_models.promote(conn, "eta-b", "operator", NOW - timedelta(days=20))
        parcels = await delivered_parcels(conn, 120)
        await serve(conn, "eta-b", parcels[:60], 12.0)
        # Healthy enough on too few parcels: no verdict.
        assert await review(conn, NOW, RULES, WINDOW) == []
        await serve(conn, "eta-b", parcels[60:], 30.0)
        with caplog.at_level(logging.WARNING, logger="service.eta.lifecycle"):
            actions = await review(conn, NOW, RULES, WINDOW)
        assert [(a.kind, a.version) for a in actions] == [("rolled_back", "eta-b")]
        assert "2.10x its validation 10.0 h" in actions[0].reason
        assert "rolled back from eta-b to eta-a" in caplog.text
        assert await eta_models.champion_version(conn) == "eta-a"
        assert (await eta_models.get(conn, "eta-b")).status == "rolled_back"  # type: ignore[union-attr]
        # eta-a has served nothing since: no verdict, and never back to the degraded one.
        assert await review(conn, NOW, RULES, WINDOW) == []
        assert await eta_models.champion_version(conn) == "eta-a"


async def test_parcels_still_out_past_their_window_count_against_the_champion(
        pool: asyncpg.Pool) -> None:
    """In a slowdown the delivered parcels are the fast ones: the late ones, still out past
    the window served, are misses already, and weigh in the rollback verdict."""
    async with pool.acquire() as conn:
        await register(conn, "eta-a")
        await eta_models.promote(conn, "eta-a", "first model", NOW - timedelta(days=30))
        await register(conn, "eta-b", validation_mae_hours=10.0)
        await eta_models.promote(conn, "eta-b", "operator", NOW - timedelta(days=20))
        await serve(conn, "eta-b", await delivered_parcels(conn, 120), 12.0)  # 1.2x: healthy
        for i in range(60):
            sid = f"late-{i:03d}"
            p50 = NOW - timedelta(days=3)
            await conn.execute(
                """INSERT INTO shipments (shipment_id, order_id, carrier, service_level,
                                          tracking_number, status, label_created_at,
                                          created_at, updated_at)
                   VALUES ($1, $1, 'ups', 'ground', $1, 'in_transit', $2, $2, $2)""",
                sid, p50 - timedelta(days=4))
            # Its window ended two days ago (a miss, 72 h late so far); the one served
            # since (p90 tomorrow) is not judged yet.
            await etas.store_many(conn, [sid], p50 - timedelta(days=2), "eta-b", [
                Prediction("first_scan", p50 - timedelta(hours=12), p50,
                           p50 + timedelta(days=1), None, [])])
            await etas.store_many(conn, [sid], NOW - timedelta(hours=1), "eta-b", [
                Prediction("later", NOW, NOW + timedelta(hours=12), NOW + timedelta(days=1),
                           None, [])])
        live = (await etas.scores(conn, ["eta-b"], NOW - WINDOW, NOW, common=False))["eta-b"]
        assert (live.parcels, live.rows, live.late) == (180, 180, 60)
        assert live.mae_hours == pytest.approx((120 * 12 + 60 * 72) / 180, abs=0.01)
        assert live.coverage == pytest.approx(96 / 180, abs=1e-6)  # 4 in 5 delivered inside
        actions = await review(conn, NOW, RULES, WINDOW)
        assert [(a.kind, a.version) for a in actions] == [("rolled_back", "eta-b")]
        assert "on 180 parcels (60 still out past a window) is 3.20x" in actions[0].reason


def test_retraining_is_off_by_default() -> None:
    assert cron_jobs(Settings()) == []
    jobs = cron_jobs(Settings(retrain_every="7d"))
    assert [j.name for j in jobs] == ["model_lifecycle"]


async def test_the_scheduled_retrain_trains_in_a_process_and_runs_in_shadow(
        pool: asyncpg.Pool, settings: Settings, clock: ManualClock) -> None:
    now = datetime(2026, 10, 20, 18, 0, tzinfo=UTC)
    history = simulate(1500, 40, now - timedelta(days=41), seed=4)
    clock.set(now)
    tuned = settings.model_copy(update={"retrain_every": "7d"})
    metrics = WorkerMetrics()
    transports = build_transports(tuned)
    ctx: dict[str, Any] = WorkerContext(pool, clock, tuned, Renderer(), transports,
                                        EtaRuntime(clock), metrics).as_arq_ctx()
    try:
        async with pool.acquire() as conn:
            await load_history(conn, history.orders, history.shipments, history.events, now)
        first = await model_lifecycle(ctx)
        assert first["retrain"]["status"] == "champion"
        # Not due again until a week of clock time has passed.
        assert "retrain" not in await model_lifecycle(ctx)
        clock.advance(timedelta(days=7, minutes=1))
        second = await model_lifecycle(ctx)
        assert second["retrain"]["status"] == "shadow", second
        async with pool.acquire() as conn:
            assert await eta_models.shadow_version(conn) == second["retrain"]["version"]
            assert await eta_models.champion_version(conn) == first["retrain"]["version"]
        assert metrics.model_actions.labels("retrained")._value.get() == 2
    finally:
        await transports.aclose()


async def test_the_shadow_is_recalibrated_with_the_champion_and_followed_by_the_runtime(
        pool: asyncpg.Pool, clock: ManualClock, eta_model: EtaModel) -> None:
    from workers.recalibration import recalibrate_when_due

    history = simulate(800, 30, TRAINED_AT - timedelta(days=31), seed=3)
    clock.set(TRAINED_AT)
    challenger = EtaModel.from_bytes(eta_model.to_bytes())
    challenger.metadata["version"] = "eta-challenger"
    challenger.conformal = {k: v + 5.0 for k, v in challenger.conformal.items()}
    runtime = EtaRuntime(clock, check_every=0)
    async with pool.acquire() as conn:
        await load_history(conn, history.orders, history.shipments, history.events,
                           TRAINED_AT)
        champion = await install_champion(conn, eta_model, TRAINED_AT)
        await eta_models.register(conn, "eta-challenger", challenger.to_bytes(),
                                  challenger.feature_names, {}, {}, None, None, TRAINED_AT)
        await eta_models.start_shadow(conn, "eta-challenger")
        await runtime.current(conn)
        assert runtime.shadow is not None and runtime.shadow.conformal == challenger.conformal
    done = await recalibrate_when_due(pool, clock, timedelta(hours=24))
    assert done is not None and done.version == champion
    async with pool.acquire() as conn:
        stored = await eta_models.latest_calibration(conn, "eta-challenger")
        # As of the start of the clock's day (workers.recalibration).
        assert stored is not None and stored.as_of == TRAINED_AT.replace(hour=0)
        await runtime.current(conn)
    assert runtime.shadow is not None and runtime.shadow.conformal == stored.factors
    assert runtime.shadow.conformal != challenger.conformal


async def test_the_offline_gate_scores_the_holdout_on_parcels_neither_model_saw(
        pool: asyncpg.Pool, eta_model: EtaModel) -> None:
    """`parcelcast train` with a champion trained three weeks ago: the new model (refitted
    on everything) is judged by its holdout booster, on parcels labelled after the
    champion's data and after the holdout's own training slice, and that verdict is final."""
    from service.eta.training import train_and_register

    now = datetime(2026, 10, 20, 18, 0, tzinfo=UTC)
    history = simulate(2500, 45, now - timedelta(days=46), seed=3)
    champion_to = now - timedelta(days=21)
    async with pool.acquire() as conn:
        await load_history(conn, history.orders, history.shipments, history.events, now)
        await eta_models.register(conn, eta_model.version, eta_model.to_bytes(),
                                  eta_model.feature_names, {}, {}, None, champion_to,
                                  champion_to, validation_mae_hours=20.0)
        await eta_models.promote(conn, eta_model.version, "first model", champion_to)
        outcome = await train_and_register(conn, now, rounds=30,
                                           rules=Rules(min_parcels=100))
        status = (await eta_models.get(conn, outcome.version)).status  # type: ignore[union-attr]
    data_range = outcome.report["model"]["data_range"]
    holdout, old = outcome.comparison[outcome.version], outcome.comparison[eta_model.version]
    gate_from = datetime.fromisoformat(holdout["from"])
    assert gate_from > champion_to
    assert gate_from >= datetime.fromisoformat(data_range["cutoff"])
    assert holdout["parcels"] == old["parcels"] >= 100
    assert outcome.status in ("champion", "candidate") and status == outcome.status
    assert "parcels" in outcome.reason and "shadow" not in outcome.reason
