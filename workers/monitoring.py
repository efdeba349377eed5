"""The ETA watching itself: live-accuracy gauges and the champion's drift checks.

Deliveries are scored where they are refreshed (workers.refresh, service.store.accuracy).
Every ``accuracy_poll_s`` seconds this loop first judges the late ones (one worker at a
time): a shown ETA whose date (the p90's local date) ended with its parcel still out (or
ended undelivered) is scored as a censored miss, reading only the ETAs whose p90 passed since
the previous poll (less a day; nothing when no quarter hour passed since, as every date
shown ends on one), and the poll is recorded: the misses still out have their error
counted up to it when read (no row rewritten). It
then turns the scores into the worker's gauges (one aggregate query), and once every
``drift_check_every_hours`` of clock time checks the champion for drift
(:mod:`predictor.drift`): its main features' population stability over the last week of
inputs against its training set, and its live errors against its own validation errors.
The check's CPU work runs in a process of its own; its result is stored (``eta_drift``)
and shown by ``parcelcast models accuracy``."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pandas as pd

from predictor.drift import (
    feature_psi,
    psi_alarms,
    recent_inputs,
    residual_alarms,
    validation_errors,
)
from predictor.lanes import lane_key
from predictor.model import EtaModel
from service.clock import Clock
from service.settings import Settings
from service.store import accuracy, eta_models, history
from service.zones import customer_zone
from workers.exclusive import when_champion_due
from workers.metrics import WorkerMetrics
from workers.supervisor import Beat

log = logging.getLogger(__name__)
DRIFT_LOCK = 0x4452_4946  # arbitrary, fixed advisory-lock key
OVERDUE_LOCK = 0x4c41_5445  # arbitrary, fixed advisory-lock key
INPUT_WINDOW = timedelta(days=7)
# The recent-performance features look back this far before the window's first input.
FEATURE_LOOKBACK = timedelta(days=21)


async def check_drift(conn: asyncpg.Connection, settings: Settings, now: datetime
                      ) -> accuracy.DriftCheck | None:
    """Check the champion for drift as of `now` and store the result (None without a
    champion)."""
    row = await eta_models.champion(conn)
    if row is None:
        return None
    since = now - INPUT_WINDOW
    shipments, events = await history.training_frames(conn, until=now,
                                                      since=since - FEATURE_LOOKBACK)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        psi, inputs, metadata = await asyncio.get_running_loop().run_in_executor(
            process, _input_drift, row.artefact, shipments, events, since, now)
    live = await accuracy.champion_live_accuracy(
        conn, row.version, now - timedelta(days=settings.accuracy_window_days))
    validation_mae, validation_coverage = validation_errors(metadata)
    alarms = psi_alarms(psi, settings.drift_psi_threshold)
    if live.scored >= settings.drift_min_scored:
        alarms += residual_alarms(live.mae_days, validation_mae, live.coverage,
                                  validation_coverage, settings.drift_mae_ratio,
                                  settings.drift_coverage_drop)
    check = accuracy.DriftCheck(
        model_version=row.version, as_of=now, feature_psi=psi, inputs=inputs,
        scored=live.scored, live_mae_days=live.mae_days, validation_mae_days=validation_mae,
        live_coverage=live.coverage, validation_coverage=validation_coverage, alarms=alarms)
    await accuracy.store_drift(conn, check, now)
    if alarms:
        log.warning("ETA model %s drifts: %s", row.version, ", ".join(alarms))
    return check


def _input_drift(artefact: bytes, shipments: pd.DataFrame, events: pd.DataFrame,
                 since: datetime, until: datetime) -> tuple[dict[str, float], int,
                                                           dict[str, Any]]:
    model = EtaModel.from_bytes(artefact)
    reference = model.metadata.get("drift_reference") or {}
    X = recent_inputs(shipments, events, since.timestamp(), until.timestamp())
    metadata = {"metrics": model.metadata.get("metrics") or {}}
    return feature_psi(reference, X) if reference else {}, len(X), metadata


async def check_drift_when_due(pool: asyncpg.Pool, clock: Clock, settings: Settings
                               ) -> accuracy.DriftCheck | None:
    """One worker at a time (advisory lock): check when the champion's newest check is
    older than ``drift_check_every_hours`` of clock time."""
    async def check(conn: asyncpg.Connection, now: datetime) -> accuracy.DriftCheck | None:
        return await check_drift(conn, settings, now)

    return await when_champion_due(pool, clock, DRIFT_LOCK,
                                   timedelta(hours=settings.drift_check_every_hours),
                                   accuracy.latest_drift, check)


async def judge_overdue(pool: asyncpg.Pool, clock: Clock, settings: Settings) -> int:
    """Score as censored misses the shown ETAs whose date passed with the parcel still out
    or ended undelivered (dates in the customer's zone), those whose p90 passed since the
    previous poll less a day, and record the poll (the errors of the misses still out run to
    it); how many new misses. One worker at a time (an advisory lock); 0 when another has it."""
    now = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", OVERDUE_LOCK):
            return 0
        judged = []
        last = await accuracy.last_check(conn)
        candidates = (await accuracy.overdue(conn, now, accuracy.judge_since(last, now))
                      if accuracy.dates_may_have_ended(last, now) else [])
        for o in candidates:
            zone = customer_zone(o.order_timezone, o.destination_postal_code,
                                 o.destination_country, settings.shop_timezone)
            ended = accuracy.date_shown_ends(o.eta_p90, zone)
            if ended <= now:
                judged.append((o, lane_key(o.origin_postal_code, o.destination_postal_code),
                               ended))
        scored = await accuracy.score_censored(conn, judged, now)
        await accuracy.mark_checked(conn, now)
        return scored


async def publish(pool: asyncpg.Pool, clock: Clock, settings: Settings,
                  metrics: WorkerMetrics) -> None:
    """Set the live-accuracy and drift gauges from the store (one aggregate, one read)."""
    since = clock.now() - timedelta(days=settings.accuracy_window_days)
    async with pool.acquire() as conn:
        rows = await accuracy.by_carrier_service(conn, since, settings.accuracy_segments)
        version = await eta_models.champion_version(conn)
        drift = await accuracy.latest_drift(conn, version) if version else None
    for gauge in (metrics.live_mae, metrics.live_coverage, metrics.live_on_time,
                  metrics.live_scored, metrics.live_still_out, metrics.feature_psi,
                  metrics.drift_alarm):
        gauge.clear()
    for r in rows:
        labels = (r.carrier, r.service_level)
        metrics.live_mae.labels(*labels).set(r.mae_days)
        metrics.live_coverage.labels(*labels).set(r.coverage)
        metrics.live_on_time.labels(*labels).set(r.on_time_shown)
        metrics.live_scored.labels(*labels).set(r.scored)
        metrics.live_still_out.labels(*labels).set(r.still_out)
    if drift is not None:
        for feature, value in drift.feature_psi.items():
            metrics.feature_psi.labels(feature).set(value)
        names = {f"feature_drift:{f}" for f in drift.feature_psi}
        names |= {"residual_drift:mae", "residual_drift:coverage"}
        for name in sorted(names | set(drift.alarms)):
            metrics.drift_alarm.labels(name).set(1.0 if name in drift.alarms else 0.0)


async def watch_forever(pool: asyncpg.Pool, clock: Clock, settings: Settings,
                        metrics: WorkerMetrics, beat: Beat) -> None:
    """Judge the late ETAs and publish the gauges every ``accuracy_poll_s`` seconds, and
    check for drift when due, until cancelled (supervised: a store failure ends it, to be
    restarted)."""
    while True:
        await judge_overdue(pool, clock, settings)
        if settings.drift_check_every_hours > 0:
            try:
                await check_drift_when_due(pool, clock, settings)
            except ValueError as exc:
                log.warning("drift check failed (%s); trying again later", exc)
        await publish(pool, clock, settings, metrics)
        beat()
        await asyncio.sleep(settings.accuracy_poll_s)
