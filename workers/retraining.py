"""Scheduled retraining as an arq cron job (RETRAIN_EVERY; off by default): every ten
minutes of real time the job asks, under an advisory lock (one worker at a time), whether
the shadow challenger should be promoted or dropped and the champion rolled back
(:func:`service.eta.lifecycle.review`), and whether a retrain is due by the injected clock;
training runs in a process of its own, never on the event loop."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from arq import cron
from arq.cron import CronJob

from service.eta.lifecycle import retrain_due, review, rules_from
from service.eta.training import train_and_register
from service.settings import Settings
from workers.context import worker_context
from workers.exclusive import one_worker

log = logging.getLogger(__name__)
LIFECYCLE_LOCK = 0x5245_5452  # arbitrary, fixed advisory-lock key
TICK_MINUTES = set(range(0, 60, 10))
TRAIN_TIMEOUT_S = 4 * 3600


async def model_lifecycle(ctx: dict[str, Any]) -> dict[str, Any]:
    """One tick: review, then retrain when due. Returns what it did (arq keeps it)."""
    wc = worker_context(ctx)
    every = wc.settings.retrain_interval()
    if every is None:
        return {"skipped": "RETRAIN_EVERY is never"}
    rules = rules_from(wc.settings)
    done: dict[str, Any] = {}
    async with one_worker(wc.pool, LIFECYCLE_LOCK) as conn:
        if conn is None:
            return {"skipped": "another worker holds the lifecycle lock"}
        now = wc.clock.now()
        actions = await review(conn, now, rules,
                               timedelta(days=wc.settings.promotion_window_days),
                               wc.settings.shop_timezone)
        for action in actions:
            if wc.metrics is not None:
                wc.metrics.model_actions.labels(action.kind).inc()
        done["actions"] = [(a.kind, a.version, a.reason) for a in actions]
        if await retrain_due(conn, now, every):
            try:
                outcome = await train_and_register(conn, now, rules=rules,
                                                   in_process=True)
            except ValueError as exc:
                log.warning("scheduled retraining skipped: %s", exc)
                return done | {"retrain": str(exc)}
            log.info("retrained %s: %s (%s)", outcome.version, outcome.status,
                     outcome.reason)
            if wc.metrics is not None:
                wc.metrics.model_actions.labels("retrained").inc()
                if outcome.promoted:
                    wc.metrics.model_actions.labels("promoted").inc()
            done["retrain"] = {"version": outcome.version, "status": outcome.status,
                               "reason": outcome.reason}
    return done


def cron_jobs(settings: Settings) -> list[CronJob]:
    """The lifecycle's cron job when RETRAIN_EVERY is set, else none."""
    if settings.retrain_interval() is None:
        return []
    return [cron(model_lifecycle, name="model_lifecycle", minute=TICK_MINUTES,
                 timeout=TRAIN_TIMEOUT_S, run_at_startup=True)]
