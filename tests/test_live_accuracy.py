"""Live accuracy: every ETA shown for a parcel is scored when it is delivered (once, however
often the delivery is replayed), or as a miss as soon as its date passed with the parcel
still out; `parcelcast models accuracy` and `models report` show the figures, and the drift
check notices a carrier whose network changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from predictor.simulator import simulate
from service.api.app import create_app
from service.clock import ManualClock
from service.eta.training import train_and_register
from service.settings import Settings
from service.store import accuracy
from service.store.history import load_history
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.builders import event, order, shipment
from tests.notifying import drain, wired
from workers.metrics import WorkerMetrics
from workers.monitoring import check_drift, judge_overdue, publish

NOW = datetime(2026, 10, 20, 18, 0, tzinfo=UTC)  # 11:00 in Los Angeles
CLI = [sys.executable, "-m", "service.cli"]


@pytest.fixture(scope="module")
def history() -> object:
    return simulate(2500, 45, NOW - timedelta(days=46), seed=3)


@pytest.fixture
async def trained(pool: asyncpg.Pool, history: object, clock: ManualClock) -> AsyncIterator[str]:
    clock.set(NOW)
    async with pool.acquire() as conn:
        await load_history(conn, history.orders, history.shipments, history.events, NOW)  # type: ignore[attr-defined]
        outcome = await train_and_register(conn, NOW, rounds=30)
    yield outcome.version


@pytest.fixture
def notify_settings(settings: Settings, twilio: TwilioStandin, smtp: SmtpStandin) -> Settings:
    return wired(settings, twilio, smtp)


@pytest.fixture
async def api(aiohttp_client, notify_settings: Settings, clock: ManualClock,  # type: ignore[no-untyped-def]
              pool: asyncpg.Pool, trained: str) -> TestClient:
    return await aiohttp_client(create_app(notify_settings, clock))


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELCAST_")}
    env.update(DATABASE_URL=settings.database_url or "", REDIS_URL=settings.redis_url or "",
               PARCELCAST_LOG_LEVEL="WARNING")
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=180)


async def _ship_one(api: TestClient, admin: dict[str, str], settings: Settings,
                    clock: ManualClock, pool: asyncpg.Pool) -> None:
    """Label, first scan, a later scan: three ETAs shown, a 'shipped' message."""
    await api.put("/v1/orders/o-1", json=order(), headers=admin)
    await api.put("/v1/shipments/s-1", headers=admin, json=shipment(
        label_created_at="2026-10-20T17:30:00Z", promised_delivery_date="2026-10-26"))
    await drain(settings, clock, pool)
    for status, when in (("in_transit", "2026-10-21T01:10:00Z"),
                         ("in_transit", "2026-10-22T09:00:00Z")):
        clock.set(datetime.fromisoformat(when) + timedelta(minutes=5))
        await api.post("/v1/tracking-events", headers=admin, json=event(status, when))
        await drain(settings, clock, pool)


async def _deliver_one(api: TestClient, admin: dict[str, str], settings: Settings,
                       clock: ManualClock, pool: asyncpg.Pool) -> dict[str, object]:
    """Label, first scan, a later scan, delivery: three ETAs shown, a 'shipped' message."""
    await _ship_one(api, admin, settings, clock, pool)
    clock.set(datetime(2026, 10, 23, 20, 30, tzinfo=UTC))
    delivered = event("delivered", "2026-10-23T20:15:00Z", event_id="dlv-1")
    await api.post("/v1/tracking-events", headers=admin, json=delivered)
    await drain(settings, clock, pool)
    return delivered


async def test_every_shown_eta_is_scored_once_on_delivery(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, trained: str,
) -> None:
    delivered = await _deliver_one(api, admin, notify_settings, clock, pool)
    async with pool.acquire() as conn:
        shown = await conn.fetch("SELECT id, stage, eta_p10, eta_p50, eta_p90 FROM "
                                 "shipment_etas WHERE shipment_id = 's-1' ORDER BY id")
        scores = await accuracy.scores(conn, "s-1")
        sent = await conn.fetchval("SELECT count(*) FROM notifications WHERE shipment_id = "
                                   "'s-1' AND moment = 'shipped' AND state = 'sent'")
    assert [r["stage"] for r in shown] == ["label", "first_scan", "later"]
    assert sent >= 1
    by_kind = {(s["kind"], s["stage"]): s for s in scores}
    # the first ETA shown, the first at each stage, and the one in force for "shipped"
    assert set(by_kind) == {("first", "label"), ("stage", "label"), ("stage", "first_scan"),
                            ("stage", "later"), ("told", "first_scan")}
    assert by_kind["first", "label"]["eta_id"] == shown[0]["id"]
    assert by_kind["told", "first_scan"]["eta_id"] == shown[1]["id"]
    assert all(s["model_version"] == trained for s in scores)
    delivered_at = datetime(2026, 10, 23, 20, 15, tzinfo=UTC)
    for row in shown:
        score = by_kind["stage", row["stage"]]
        error = (delivered_at - row["eta_p50"]).total_seconds() / 86400
        assert score["error_days"] == pytest.approx(error, abs=1e-3)
        assert score["abs_error_days"] == pytest.approx(abs(error), abs=1e-3)
        assert score["inside_window"] == (row["eta_p10"] <= delivered_at <= row["eta_p90"])
        # delivered 13:15 in Los Angeles: on time if the date shown (p90's) is that day or later
        shown_date = row["eta_p90"].astimezone(_la()).date()
        assert score["on_time_shown"] == (shown_date >= datetime(2026, 10, 23).date())

    # The carrier sends the delivery again, twice, and another "delivered" scan: no new score.
    for replay in (delivered, delivered, {**delivered, "event_id": "dlv-2",
                                          "occurred_at": "2026-10-23T20:40:00Z"}):
        clock.advance(timedelta(minutes=10))
        await api.post("/v1/tracking-events", headers=admin, json=replay)
        await drain(notify_settings, clock, pool)
    async with pool.acquire() as conn:
        assert await accuracy.scores(conn, "s-1") == scores
        live = await accuracy.champion_live_accuracy(conn, trained, NOW - timedelta(days=1))
    assert live.scored == 3
    assert live.mae_days == pytest.approx(
        sum(s["abs_error_days"] for s in scores if s["kind"] == "stage") / 3, abs=1e-4)

    # The worker's gauges, per carrier and service.
    metrics = WorkerMetrics()
    await publish(pool, clock, notify_settings, metrics)
    assert metrics.registry.get_sample_value(
        "parcelcast_eta_live_scored", {"carrier": "ups", "service": "ground"}) == 3
    assert metrics.registry.get_sample_value(
        "parcelcast_eta_live_mae_days", {"carrier": "ups", "service": "ground"}
    ) == pytest.approx(live.mae_days, abs=1e-4)


async def test_a_parcel_still_out_after_the_date_shown_counts_as_a_miss_at_once(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, trained: str,
) -> None:
    await _ship_one(api, admin, notify_settings, clock, pool)
    async with pool.acquire() as conn:
        shown = await conn.fetch("SELECT id, stage, eta_p50, eta_p90 FROM shipment_etas "
                                 "WHERE shipment_id = 's-1' ORDER BY id")
    ends = {r["id"]: accuracy.date_shown_ends(r["eta_p90"], "America/Los_Angeles")
            for r in shown}
    # Before any date shown has ended nothing is judged; the moment the first has, it is.
    clock.set(min(ends.values()) - timedelta(seconds=1))
    assert await judge_overdue(pool, clock, notify_settings) == 0
    clock.set(max(ends.values()) + timedelta(days=2))
    assert await judge_overdue(pool, clock, notify_settings) == 5  # first, 3 stages, told
    assert await judge_overdue(pool, clock, notify_settings) == 0  # once
    async with pool.acquire() as conn:
        missed = await accuracy.scores(conn, "s-1")
        live = await accuracy.champion_live_accuracy(conn, trained, NOW - timedelta(days=1))
    p50 = {r["id"]: r["eta_p50"] for r in shown}
    for score in missed:
        assert score["censored"] and not score["inside_window"] and not score["on_time_shown"]
        assert score["judged_at"] == ends[score["eta_id"]]
        late = (clock.now() - p50[score["eta_id"]]).total_seconds() / 86400
        assert score["error_days"] == pytest.approx(late, abs=1e-3)  # so far: a lower bound
    assert (live.scored, live.still_out, live.coverage, live.on_time_shown) == (3, 3, 0, 0)
    metrics = WorkerMetrics()
    await publish(pool, clock, notify_settings, metrics)
    labels = {"carrier": "ups", "service": "ground"}
    assert metrics.registry.get_sample_value("parcelcast_eta_live_still_out", labels) == 3
    assert metrics.registry.get_sample_value("parcelcast_eta_live_coverage", labels) == 0

    # Still out a day later: the error grows with it.
    clock.advance(timedelta(days=1))
    assert await judge_overdue(pool, clock, notify_settings) == 0
    async with pool.acquire() as conn:
        later = await accuracy.scores(conn, "s-1")
    assert [s["error_days"] for s in later] == pytest.approx(
        [s["error_days"] + 1 for s in missed], abs=1e-3)

    # Delivered at last: the misses get the real delivery, and stay judged when they were.
    delivered_at = clock.now().replace(microsecond=0)
    await api.post("/v1/tracking-events", headers=admin, json=event(
        "delivered", delivered_at.isoformat().replace("+00:00", "Z"), event_id="dlv-late"))
    await drain(notify_settings, clock, pool)
    async with pool.acquire() as conn:
        done = {(s["eta_id"], s["kind"]): s for s in await accuracy.scores(conn, "s-1")}
        live = await accuracy.champion_live_accuracy(conn, trained, NOW - timedelta(days=1))
    for score in missed:
        now_known = done[score["eta_id"], score["kind"]]
        assert not now_known["censored"] and now_known["judged_at"] == score["judged_at"]
        error = (delivered_at - p50[score["eta_id"]]).total_seconds() / 86400
        assert now_known["error_days"] == pytest.approx(error, abs=1e-3)
        assert not now_known["inside_window"] and not now_known["on_time_shown"]
    assert (live.scored, live.still_out, live.coverage) == (3, 0, 0)


async def test_accuracy_and_report_commands(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, trained: str, tmp_path: Path,
) -> None:
    await _deliver_one(api, admin, notify_settings, clock, pool)
    async with pool.acquire() as conn:
        assert await check_drift(conn, notify_settings, clock.now()) is not None

    table = _cli(notify_settings, "models", "accuracy", "--by", "carrier",
                 "--since", "2026-10-01")
    assert table.returncode == 0, table.stderr[-2000:]
    lines = table.stdout.splitlines()
    assert lines[1].split()[:2] == ["carrier", "scored"]
    assert lines[2].split()[:2] == ["ups", "3"]
    assert any(line.startswith("drift as of 2026-10-23") for line in lines)
    assert any(line.startswith("alarms:") for line in lines)

    weekly = _cli(notify_settings, "models", "accuracy", "--by", "week", "--since",
                  "2026-10-01", "--kind", "first", "--json")
    assert weekly.returncode == 0, weekly.stderr[-2000:]
    answer = json.loads(weekly.stdout)
    assert answer["champion"] == trained
    assert [(s["segment"], s["scored"]) for s in answer["segments"]] == [("2026-10-19", 1)]
    assert answer["drift"]["model_version"] == trained
    later = _cli(notify_settings, "models", "accuracy", "--since", "2026-10-24", "--json")
    assert json.loads(later.stdout)["segments"] == []

    report = _cli(notify_settings, "models", "report", trained, "--out", str(tmp_path))
    assert report.returncode == 0, report.stderr[-2000:]
    page = _text(tmp_path / f"{trained}.html")
    assert page.startswith("<!doctype html>") and trained in page
    assert page.count("<svg") >= 3  # by week, calibration, by segment
    assert "Live accuracy by week" in page and "2026-10-19" in page
    card_title = _text(Path("docs/model-card.md")).splitlines()[0].lstrip("# ").strip()
    assert card_title in page
    assert not any(tag in page for tag in ("<script", "<link", "<img", "src="))  # self-contained
    missing = _cli(notify_settings, "models", "report", "eta-nope", "--out", str(tmp_path))
    assert missing.returncode == 1 and "models list" in missing.stderr


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _la():  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/Los_Angeles")
