"""The champion's p10–p90 window follows the recent errors: once a day (clock time) it is
recalibrated from the deliveries of the last weeks (:func:`predictor.calibration.recalibrate`,
CPU work in a thread) and the factors are stored beside the model, never in its artefact.
Services and workers pick the newest up with the champion (:class:`service.eta.runtime.EtaRuntime`)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
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


@dataclass(frozen=True)
class Recalibration:
    version: str
    as_of: datetime
    factors: dict[str, float]
    stored: bool


async def recalibrate_champion(conn: asyncpg.Connection, now: datetime) -> Recalibration | None:
    """Recompute and store the champion's calibration as of `now` (None without a champion
    or any history)."""
    row = await eta_models.champion(conn)
    if row is None:
        return None
    shipments, events = await history.training_frames(conn, until=now, since=now - LOOKBACK)
    if shipments.empty:
        return None
    # Seconds of CPU: in a process of its own, so the worker's jobs and event loop (which
    # a thread would starve of the GIL) keep their pace.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        factors, info = await asyncio.get_running_loop().run_in_executor(
            process, _recalibrated, row.artefact, shipments, events, now)
    stored = await eta_models.store_calibration(conn, row.version, now, factors, info, now)
    shadow = await eta_models.shadow(conn)
    if shadow is not None:
        # The challenger in shadow follows the recent errors too: it is judged on the ETAs
        # it would have shown, calibrated as the champion's are.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
            s_factors, s_info = await asyncio.get_running_loop().run_in_executor(
                process, _recalibrated, shadow.artefact, shipments, events, now)
        await eta_models.store_calibration(conn, shadow.version, now, s_factors, s_info, now)
    return Recalibration(row.version, now, factors, stored)


def _recalibrated(artefact: bytes, shipments: pd.DataFrame, events: pd.DataFrame,
                  now: datetime) -> tuple[dict[str, float], dict[str, str]]:
    model = EtaModel.from_bytes(artefact)
    factors = recalibrate(model, shipments, events, now)
    info = {str(k): str(v) for k, v in model.metadata.get("calibration", {}).items()}
    return {str(k): float(v) for k, v in factors.items()}, info


async def recalibrate_when_due(pool: asyncpg.Pool, clock: Clock, every: timedelta
                               ) -> Recalibration | None:
    """One worker at a time (advisory lock): recalibrate when the champion's newest
    calibration is older than `every` of clock time."""
    return await when_champion_due(pool, clock, RECALIBRATE_LOCK, every,
                                   eta_models.latest_calibration, recalibrate_champion)


async def recalibrate_forever(pool: asyncpg.Pool, clock: Clock, every: timedelta,
                              poll_s: float, beat: Beat) -> None:
    """Check every `poll_s` seconds whether a recalibration is due, until cancelled
    (supervised: a store failure ends it, to be restarted)."""
    while True:
        try:
            done = await recalibrate_when_due(pool, clock, every)
            if done is not None:
                log.info("recalibrated %s as of %s", done.version, done.as_of.isoformat())
        except ValueError as exc:
            # The data cannot be calibrated on (yet): not the loop's failure, and not worth
            # trying again before the next check.
            log.warning("recalibration failed (%s); trying again later", exc)
        beat()
        await asyncio.sleep(poll_s)
