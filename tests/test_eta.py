"""The ETA in the running system: trained from history in the database, refreshed by the
worker after every event, shown with its first window kept, quotable at checkout, and
replaced without a restart when another model is promoted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from predictor.features import recent_performance, serving_rows
from predictor.simulator import simulate
from service.api.keys import eta_key
from service.clock import ManualClock
from service.eta.runtime import RECENT_WINDOW, EtaRuntime
from service.eta.training import train_and_register
from service.settings import Settings
from service.store import eta_models
from service.store.history import load_history, training_shipments
from tests.builders import event, order, shipment
from tests.notifying import drain

NOW = datetime(2026, 10, 20, 18, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def history() -> object:
    return simulate(2500, 45, NOW - timedelta(days=46), seed=3)


@pytest.fixture
async def trained(pool: asyncpg.Pool, history: object, clock: ManualClock) -> AsyncIterator[str]:
    clock.set(NOW)
    async with pool.acquire() as conn:
        await load_history(conn, history.orders, history.shipments, history.events, NOW)  # type: ignore[attr-defined]
        outcome = await train_and_register(conn, NOW, rounds=40)
    assert outcome.promoted and outcome.reason == "first model"
    yield outcome.version


async def test_eta_window_after_label_and_after_each_scan(
    trained: str, client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock,
) -> None:
    await client.put("/v1/orders/o-new", json=order(), headers=admin)
    await client.put("/v1/shipments/s-new", headers=admin, json=shipment(
        "o-new", "1ZNEW", label_created_at="2026-10-20T17:30:00Z",
        promised_delivery_date="2026-10-26",
        origin={"postal_code": "07094", "country": "US"},
        destination={"postal_code": "94105", "country": "US"}))
    await drain(settings, clock, pool)
    first = (await (await client.get("/v1/shipments/s-new", headers=admin)).json())["eta"]
    assert first is not None and first["model_version"] == trained
    assert first["earliest"] <= first["likely"] <= first["latest"]
    assert first["stage"] == "label" and len(first["reasons"]) == 3
    assert all(r["reason"] and isinstance(r["hours"], float) for r in first["reasons"])
    assert first["local"]["timezone"] == "America/Los_Angeles"
    assert 0.0 <= first["probability_late"] <= 1.0
    clock.advance(timedelta(hours=6))
    await client.post("/v1/tracking-events", headers=admin, json=event(
        "in_transit", "2026-10-20T23:10:00Z", tracking_number="1ZNEW"))
    await drain(settings, clock, pool)
    later = (await (await client.get("/v1/shipments/s-new", headers=admin)).json())["eta"]
    assert later["stage"] == "first_scan"
    assert later["predicted_at"] > first["predicted_at"]
    assert later["first_shown"] == first["first_shown"]  # the first ETA shown is kept
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM shipment_etas WHERE shipment_id = 's-new'") == 2

    # A carrier the model never saw (kept as other:<slug>) is scored as an unseen category.
    await client.put("/v1/shipments/s-pigeon", headers=admin, json=shipment(
        "o-new", "pigeon-1", carrier="Pigeon Post", label_created_at="2026-10-21T00:00:00Z",
        promised_delivery_date="2026-10-27", origin={"postal_code": "07094", "country": "US"},
        destination={"postal_code": "94105", "country": "US"}))
    await drain(settings, clock, pool)
    pigeon = await (await client.get("/v1/shipments/s-pigeon", headers=admin)).json()
    assert (pigeon["carrier"], pigeon["carrier_name"]) == ("other:pigeon-post", "Pigeon Post")
    assert pigeon["eta"] is not None
    assert pigeon["eta"]["earliest"] <= pigeon["eta"]["likely"] <= pigeon["eta"]["latest"]


async def test_checkout_quote_and_promotion_without_restart(
    trained: str, client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, history: object,
) -> None:
    body = {"origin": {"postal_code": "07094", "country": "US"},
            "destination": {"postal_code": "60601", "country": "US"},
            "order_time": "2026-10-20T15:00:00-04:00"}
    answer = await client.post("/v1/eta/quote", json=body, headers=admin)
    assert answer.status == 200
    quote = await answer.json()
    assert quote["model_version"] == trained
    assert len(quote["options"]) >= 6
    for option in quote["options"]:
        assert option["earliest"] <= option["likely"] <= option["latest"]
        assert option["earliest"] >= "2026-10-20"
    express = [o for o in quote["options"] if o["service_level"] == "express"]
    economy = [o for o in quote["options"] if o["service_level"] == "economy"]
    assert min(o["likely"] for o in express) <= min(o["likely"] for o in economy)
    one = await client.post("/v1/eta/quote", headers=admin,
                            json={**body, "carrier": "ups", "service_level": "ground"})
    assert [(o["carrier"], o["service_level"]) for o in (await one.json())["options"]] == [
        ("ups", "ground")]
    bad = await client.post("/v1/eta/quote", headers=admin,
                            json={**body, "order_time": "2026-10-20T15:00:00"})
    assert bad.status == 422 and (await bad.json())["errors"][0]["field"] == "order_time"

    async with pool.acquire() as conn:
        challenger = await train_and_register(conn, NOW + timedelta(hours=1), rounds=20)
        await eta_models.promote(conn, challenger.version, "test", NOW)
    client.app[eta_key].check_every = 0.0
    again = await (await client.post("/v1/eta/quote", json=body, headers=admin)).json()
    assert again["model_version"] == challenger.version != trained


async def test_quote_without_a_model_is_a_clear_503(
    client: TestClient, admin: dict[str, str]
) -> None:
    answer = await client.post("/v1/eta/quote", headers=admin, json={
        "origin": {"postal_code": "07094"}, "destination": {"postal_code": "60601"},
        "order_time": "2026-10-20T15:00:00Z"})
    assert answer.status == 503 and "parcelcast train" in (await answer.json())["detail"]


async def test_batch_refresh_scores_like_one_at_a_time(
    trained: str, pool: asyncpg.Pool, history: object
) -> None:
    """The worker scores refreshes in batches; each ETA must equal the single-shipment one."""
    from service.eta.runtime import EtaRuntime

    ships = history.shipments  # type: ignore[attr-defined]
    in_flight = ships[(ships["label_created_at"] < NOW) & (ships["delivered_at"].isna()
                                                           | (ships["delivered_at"] > NOW))]
    ids = list(in_flight["shipment_id"].astype(str)[:40])
    runtime = EtaRuntime(ManualClock(NOW))
    async with pool.acquire() as conn:
        await conn.execute("UPDATE shipments SET status = 'in_transit', delivered_at = NULL "
                           "WHERE shipment_id = ANY($1::text[])", ids)
        batch = await runtime.refresh_many(conn, ids, NOW)
        single = {i: await runtime.refresh(conn, i, NOW) for i in ids}
    assert set(batch) == set(ids)
    for shipment_id in ids:
        a, b = batch[shipment_id], single[shipment_id]
        assert b is not None
        assert abs((a.p10 - b.p10).total_seconds()) < 1
        assert abs((a.p50 - b.p50).total_seconds()) < 1
        assert abs((a.p90 - b.p90).total_seconds()) < 1
        assert a.stage == b.stage
        assert (a.prob_late is None) == (b.prob_late is None)
        assert a.prob_late is None or b.prob_late is None or abs(a.prob_late - b.prob_late) < 1e-3
        assert a.reasons == b.reasons
    # Every window is ordered and after `now`, and the batch mixes stages.
    assert all(NOW <= p.p10 <= p.p50 <= p.p90 for p in batch.values())
    assert len({p.stage for p in batch.values()}) > 1


def test_a_batch_of_eta_instants_is_now_plus_each_predicted_hours() -> None:
    """The batch's instants (made in one pass) are what `now + timedelta(hours=h)` gives."""
    import numpy as np

    from service.eta.runtime import _instants

    now = datetime(2026, 10, 20, 18, 0, 7, 123456, tzinfo=UTC)
    hours = np.array([[0.0, 1.5, 100.123456789], [3.3333333, 47.77777, 2000.0]])
    got = _instants(now, hours)
    assert [[abs((g - (now + timedelta(hours=float(h)))).total_seconds()) <= 1e-6
             for g, h in zip(row, hs, strict=True)]
            for row, hs in zip(got, hours, strict=True)] == [[True] * 3] * 2
    assert got[1][2] == datetime(2027, 1, 12, 2, 0, 7, 123456, tzinfo=UTC)
    many = np.linspace(0.0, 900.0, 60).reshape(20, 3)  # a batch's many instants
    assert [[abs((g - (now + timedelta(hours=float(h)))).total_seconds()) <= 1e-6
             for g, h in zip(row, hs, strict=True)]
            for row, hs in zip(_instants(now, many), many, strict=True)] == [[True] * 3] * 20


async def test_the_window_is_recalibrated_daily_and_picked_up_without_restart(
    trained: str, pool: asyncpg.Pool, clock: ManualClock,
) -> None:
    """A worker recalibrates the champion once a clock day (one at a time), as of the day's
    start; the runtime applies the stored factors at its next check; the artefact never
    changes."""
    from service.eta.runtime import EtaRuntime
    from workers.recalibration import recalibrate_when_due

    runtime = EtaRuntime(clock, check_every=0)
    async with pool.acquire() as conn:
        assert await runtime.current(conn) is not None
        artefact = (await eta_models.get(conn, trained)).artefact  # type: ignore[union-attr]
    # The model comes calibrated as of its last label: nothing is due before the next day.
    assert await recalibrate_when_due(pool, clock, timedelta(hours=24)) is None
    clock.advance(timedelta(hours=7))
    done = await recalibrate_when_due(pool, clock, timedelta(hours=24))
    assert done is not None and done.stored and done.version == trained
    assert done.as_of == datetime(2026, 10, 21, tzinfo=UTC)
    assert any(k.startswith("log_") for k in done.factors)
    clock.advance(timedelta(hours=21))  # 23:00: the same day
    assert await recalibrate_when_due(pool, clock, timedelta(hours=24)) is None  # not due
    clock.advance(timedelta(hours=2))
    later = await recalibrate_when_due(pool, clock, timedelta(hours=24))
    assert later is not None and later.as_of == datetime(2026, 10, 22, tzinfo=UTC)
    async with pool.acquire() as conn:
        model = await runtime.current(conn)
        assert model is not None and model.conformal == later.factors
        assert (await eta_models.get(conn, trained)).artefact == artefact  # type: ignore[union-attr]
        assert await conn.fetchval("SELECT count(*) FROM eta_calibrations") == 2


async def test_a_worker_on_an_injected_clock_recalibrates_at_the_days_start_for_the_next_refresh(
    trained: str, client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock,
) -> None:
    """A running worker on an injected clock (the demo's runs 7,200 times faster than real
    time) recalibrates the champion once its clock passes a day's start, as of that start,
    and the next refresh it runs serves the new window instead of the one in force."""
    import asyncio

    from predictor.model import EtaModel
    from service.eta.runtime import predict_many, refresh_inputs
    from workers.main import run_worker
    from workers.recalibration import recalibrate_when_due

    async with pool.acquire() as conn:
        record = await eta_models.get(conn, trained)
        assert record is not None
        # In force since 18:00: a window far too wide (p90 factors e times too large).
        wide = {k: v + 1.0 if k.startswith("log_q90") else v
                for k, v in EtaModel.from_bytes(record.artefact).conformal.items()}
        await eta_models.store_calibration(conn, trained, NOW, wide, {}, NOW)
    assert await recalibrate_when_due(pool, clock, timedelta(hours=24)) is None  # same day
    midnight = datetime(2026, 10, 21, tzinfo=UTC)
    clock.set(midnight + timedelta(hours=2))
    own = settings.model_copy(update={"sweep_interval_s": 0.2, "recalibrate_every_hours": 24,
                                      "drift_check_every_hours": 0})
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(own, clock, stop=stop))

    async def eventually(query: str, *args: object) -> asyncpg.Record:
        deadline = asyncio.get_running_loop().time() + 180  # a busy machine's worker start
        while True:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(query, *args)
            if row is not None or worker.done() or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert row is not None, worker
        return row

    try:
        stored = await eventually(
            "SELECT as_of, factors FROM eta_calibrations WHERE model_version = $1 AND as_of > $2",
            trained, NOW)
        assert stored["as_of"] == midnight
        await client.put("/v1/orders/o-cal", json=order(), headers=admin)
        await client.put("/v1/shipments/s-cal", headers=admin, json=shipment(
            "o-cal", "1ZCAL", label_created_at="2026-10-21T01:30:00Z",
            promised_delivery_date="2026-10-26",
            origin={"postal_code": "07094", "country": "US"},
            destination={"postal_code": "94105", "country": "US"}))
        eta = await eventually(
            "SELECT eta_p90, predicted_at FROM shipment_etas WHERE shipment_id = 's-cal'")
    finally:
        stop.set()
        await asyncio.wait_for(worker, 120)
    now = clock.now()
    async with pool.acquire() as conn:
        rows, scans = await refresh_inputs(conn, ["s-cal"], now)
        recent = await EtaRuntime(clock).recent(conn, now)
    windows = {}
    for name, factors in (("new", stored["factors"]), ("in force before", wide)):
        model = EtaModel.from_bytes(record.artefact)
        model.conformal = {k: float(v) for k, v in factors.items()}
        windows[name] = predict_many(model, rows, scans, now, recent)[0].p90
    assert abs((eta["eta_p90"] - windows["new"]).total_seconds()) < 60
    assert windows["in force before"] - windows["new"] > timedelta(hours=12)


async def test_served_etas_read_recent_lane_performance_as_the_history_has_it(
    pool: asyncpg.Pool, history: object, clock: ManualClock,
) -> None:
    """What a refresh's features make of recent deliveries (built every minute from the
    window's deliveries, grouped by lane in the database) is what one row per delivered
    shipment of the history gives, for every lane, service and state, in flight or not."""
    async with pool.acquire() as conn:
        await load_history(conn, history.orders, history.shipments, history.events, NOW)  # type: ignore[attr-defined]
        # A parcel delivered without a handover time or a scan: no transit to count.
        await conn.execute(
            """UPDATE shipments SET shipped_at = NULL, first_scan_at = NULL
               WHERE shipment_id = (SELECT min(shipment_id) FROM shipments
                                    WHERE delivered_at BETWEEN $1 AND $2)""",
            NOW - timedelta(days=3), NOW - timedelta(days=1))
        served = await EtaRuntime(clock).recent(conn, NOW)
        shipments = await training_shipments(conn)
    delivered = shipments["delivered_at"]
    window = shipments[(delivered >= NOW - RECENT_WINDOW) & (delivered < NOW)]
    assert len(window) > 500 and window["shipped_at"].isna().any()
    expected = recent_performance(window)
    # Every lane of the history, scored at instants around and after the window's end.
    rows = [dict(r) for r in shipments.to_dict("records")][:600]
    for row in rows:
        row["delivered_at"] = None
    for as_of in (NOW, NOW + timedelta(hours=30), NOW + timedelta(days=9)):
        got = serving_rows(rows, [[] for _ in rows], as_of, served)
        want = serving_rows(rows, [[] for _ in rows], as_of, expected)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
