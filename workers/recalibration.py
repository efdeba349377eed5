"""The champion's p10–p90 window follows the recent errors: once a day of clock time, as of
the day's start (UTC), it is recalibrated from the deliveries of the last weeks
(:func:`predictor.calibration.recalibrate`, CPU work in a process) and the factors are stored
beside the model, never in its artefact. Services and workers pick the newest up with the
champion (:class:`service.eta.runtime.EtaRuntime`).

As of the day's start, as the model's own test period was evaluated (and the walk-forward
backtest scores the deployed configuration): factors recomputed at the start of every UTC
day (:func:`predictor.calibration.online_quantiles`). Keyed to the injected clock, so the
demo's clock, thousands of times faster than real time, gets one per simulated day too."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import pandas as pd

from predictor.calibration import WINDOW_DAYS, recalibrate
from predictor.model import EtaModel
from service.clock import Clock
from service.store import eta_models, history
from workers.exclusive import when_champion_due
from workers.supervisor import Beat

log = logging.getLogger(__name__)
# The cohort window, plus the 14 days the recent-performance features look back.
LOOKBACK = timedelta(days=WINDOW_DAYS + 14)
RECALIBRATE_LOCK = 0x4341_4C42  # arbitrary, fixed advisory-lock key
BACKGROUND_NICENESS = 10


@dataclass(frozen=True)
class Recalibration:
    version: str
    as_of: datetime
    factors: dict[str, float]
    stored: bool


async def recalibrate_champion(conn: asyncpg.Connection, now: datetime, *,
                               clock: Clock | None = None,
                               stored: Callable[[], None] | None = None
                               ) -> Recalibration | None:
    """Recompute and store the champion's calibration as of `now` (None without a champion
    or any history); recorded as created at `clock`'s time when given (else at `now`).
    `stored` is called as soon as the champion's is committed (this process's runtime
    applies it at its next refresh; other processes within their check interval)."""
    row = await eta_models.champion(conn)
    if row is None:
        return None
    shipments, events = await history.training_frames(conn, until=now, since=now - LOOKBACK)
    if shipments.empty:
        return None
    # Seconds of CPU: in a process of its own, so the worker's jobs and event loop (which
    # a thread would starve of the GIL) keep their pace; at a lower priority, so that on a
    # busy machine the ETA refreshes come first (background_process).
    with background_process() as process:
        factors, info = await asyncio.get_running_loop().run_in_executor(
            process, _recalibrated, row.artefact, shipments, events, now)
    created = clock.now() if clock is not None else now
    kept = await eta_models.store_calibration(conn, row.version, now, factors, info, created)
    if stored is not None:
        stored()
    shadow = await eta_models.shadow(conn)
    if shadow is not None:
        # The challenger in shadow follows the recent errors too: it is judged on the ETAs
        # it would have shown, calibrated as the champion's are.
        with background_process() as process:
            s_factors, s_info = await asyncio.get_running_loop().run_in_executor(
                process, _recalibrated, shadow.artefact, shipments, events, now)
        await eta_models.store_calibration(conn, shadow.version, now, s_factors, s_info,
                                           created)
    return Recalibration(row.version, now, factors, kept)


def background_process() -> ProcessPoolExecutor:
    """One spawned process for background CPU work, niced by BACKGROUND_NICENESS."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=os.nice, initargs=(BACKGROUND_NICENESS,))


def _recalibrated(artefact: bytes, shipments: pd.DataFrame, events: pd.DataFrame,
                  now: datetime) -> tuple[dict[str, float], dict[str, str]]:
    model = EtaModel.from_bytes(artefact)
    factors = recalibrate(model, shipments, events, now)
    info = {str(k): str(v) for k, v in model.metadata.get("calibration", {}).items()}
    return {str(k): float(v) for k, v in factors.items()}, info


async def recalibrate_when_due(pool: asyncpg.Pool, clock: Clock, every: timedelta,
                               stored: Callable[[], None] | None = None
                               ) -> Recalibration | None:
    """One worker at a time (advisory lock): once the clock passes the start of a period of
    `every` (a UTC day for 24 h) that the champion's calibration in force predates (its
    newest stored one, else its artefact's), recalibrate as of that start."""
    async def recalibrate(conn: asyncpg.Connection, as_of: datetime) -> Recalibration | None:
        return await recalibrate_champion(conn, as_of, clock=clock, stored=stored)

    return await when_champion_due(pool, clock, RECALIBRATE_LOCK, every,
                                   eta_models.calibrated_as_of, recalibrate, aligned=True)


async def recalibrate_forever(pool: asyncpg.Pool, clock: Clock, every: timedelta,
                              poll_s: float, stored: Callable[[], None], beat: Beat) -> None:
    """Check every `poll_s` seconds whether a recalibration is due, until cancelled
    (supervised: a store failure ends it, to be restarted)."""
    while True:
        try:
            started = time.monotonic()
            done = await recalibrate_when_due(pool, clock, every, stored)
            if done is not None:
                log.info("recalibrated %s as of %s in %.1f s (clock now %s)", done.version,
                         done.as_of.isoformat(), time.monotonic() - started,
                         clock.now().isoformat())
        except ValueError as exc:
            # The data cannot be calibrated on (yet): not the loop's failure, and not worth
            # trying again before the next check.
            log.warning("recalibration failed (%s); trying again later", exc)
        beat()
        await asyncio.sleep(poll_s)
