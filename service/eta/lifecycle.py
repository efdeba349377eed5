"""The model lifecycle in production: scheduled retraining, the shadow challenger's
promotion on live scores, and the champion's automatic rollback. The rules are
:mod:`predictor.promotion` (pure); here the figures are gathered and the decisions applied.

* **Retrain** (every RETRAIN_EVERY of clock time since the newest model): train on every
  label known now, in a process of its own, calibrated on the rolling cohort of recent
  outcomes (:func:`service.eta.training.train_and_register`). It is promoted at once only
  if its holdout beats the champion on parcels neither has seen; usually those are not
  delivered yet and it runs in **shadow**: every refresh scores it beside the champion
  and stores its ETAs flagged shadow (never shown, never used for a message).
* **Review** (at each tick): the shadow is promoted once it beats the champion on the
  parcels delivered in the last PROMOTION_WINDOW_DAYS, both scored on the ETAs they served
  for the same parcels at the same instants; it is dropped when the verdict goes against
  it. The champion is rolled back to the previous one when its live p50 MAE over that
  window exceeds ROLLBACK_RATIO times its validation MAE; both verdicts count the parcels
  still out past a window a model served as its misses (error up to now), not only the
  delivered ones, which in a slowdown are the fast ones; the degraded model is marked
  rolled_back (never restored automatically).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from predictor.promotion import Decision, Rules, Score, promotion, rollback
from service.settings import Settings
from service.store import eta_models, etas

log = logging.getLogger(__name__)


def rules_from(settings: Settings) -> Rules:
    return Rules(min_parcels=settings.promotion_min_parcels,
                 min_gain=settings.promotion_min_gain,
                 rollback_ratio=settings.rollback_ratio)


@dataclass(frozen=True)
class Action:
    """What a review did: 'promoted', 'dropped', 'rolled_back' (or 'kept': nothing)."""

    kind: str
    version: str
    reason: str


def _score(found: etas.ModelScore | None) -> Score:
    if found is None:
        return Score(parcels=0, rows=0, mae_hours=None, coverage=None)
    return Score(parcels=found.parcels, rows=found.rows, mae_hours=found.mae_hours,
                 coverage=found.coverage, late=found.late)


async def review(conn: asyncpg.Connection, now: datetime, rules: Rules,
                 window: timedelta, shop_timezone: str = "UTC") -> list[Action]:
    """Judge the shadow challenger and the champion on the parcels delivered in the last
    `window` (and those still out whose date shown ended then: dates in the customer's zone,
    else `shop_timezone`); apply and return what was decided."""
    actions: list[Action] = []
    champion = await eta_models.champion(conn)
    if champion is None:
        return actions
    since = now - window
    shadow = await eta_models.shadow(conn)
    if shadow is not None:
        scored = await etas.scores(conn, [shadow.version, champion.version], since, now,
                                   shop_timezone=shop_timezone)
        decision = promotion(_score(scored.get(shadow.version)),
                             _score(scored.get(champion.version)), rules)
        if decision.act:
            reason = f"shadow {decision.reason}"
            await eta_models.promote(conn, shadow.version, reason, now)
            log.info("promoted %s over %s: %s", shadow.version, champion.version, reason)
            return [Action("promoted", shadow.version, reason)]
        if decision.final:
            await eta_models.end_shadow(conn, shadow.version)
            log.info("shadow %s dropped: %s", shadow.version, decision.reason)
            actions.append(Action("dropped", shadow.version, decision.reason))
    decision, previous = await _rollback_decision(conn, champion, since, now, rules,
                                                  shop_timezone)
    if decision.act and previous is not None:
        reason = f"automatic rollback of {champion.version}: {decision.reason}"
        await eta_models.promote(conn, previous, reason, now, previous_becomes="rolled_back")
        log.warning("rolled back from %s to %s: %s", champion.version, previous,
                    decision.reason)
        actions.append(Action("rolled_back", champion.version, reason))
    return actions


async def _rollback_decision(conn: asyncpg.Connection, champion: eta_models.ModelRecord,
                             since: datetime, now: datetime, rules: Rules,
                             shop_timezone: str) -> tuple[Decision, str | None]:
    previous = await eta_models.previous_champion(conn)
    if previous is not None:
        row = await eta_models.get(conn, previous)
        if row is None or row.status == "rolled_back":
            previous = None
    live = await etas.scores(conn, [champion.version], since, now, common=False,
                             shop_timezone=shop_timezone)
    return rollback(_score(live.get(champion.version)), champion.validation_mae_hours,
                    previous is not None, rules), previous


async def retrain_due(conn: asyncpg.Connection, now: datetime, every: timedelta) -> bool:
    newest = await eta_models.newest_created_at(conn)
    return newest is None or now - newest >= every
