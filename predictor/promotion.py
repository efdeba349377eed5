"""Champion / challenger rules: when a new model replaces the champion, and when the
champion is rolled back. Pure: figures in, a decision out (the service gathers the figures:
:mod:`service.eta.lifecycle`).

* **Promotion.** A challenger replaces the champion only on evidence neither was trained
  on: the same parcels, scored with each model's ETAs as they were served (live shadow
  scores, the parcels still out past a served window counting as misses) or, offline,
  the parcels labelled after both models' training data. It must be more accurate at
  the median by at least ``min_gain`` (relative), keep a sane p10-p90 window, and both
  must have been scored on at least ``min_parcels`` parcels.
* **Rollback.** The champion's live p50 MAE, on parcels delivered in the recent weeks and
  those still out past a window it served (misses, their error counted so far), is
  compared with its own validation MAE (out of sample, at training): past
  ``rollback_ratio`` times it (on at least ``min_parcels``) it has degraded and the
  previous champion comes back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """How well one model's ETAs matched deliveries: over ``parcels`` parcels (``rows``
    ETAs), mean |p50 - delivery| in hours and the share inside [p10, p90]. ``late`` of the
    parcels were still out past a window the model served: misses, their error counted up
    to the end of the period (a lower bound), so a slowdown shows before its parcels
    arrive."""

    parcels: int
    rows: int
    mae_hours: float | None
    coverage: float | None
    late: int = 0


@dataclass(frozen=True)
class Rules:
    """Thresholds (settings: PROMOTION_MIN_PARCELS, PROMOTION_MIN_GAIN, ROLLBACK_RATIO)."""

    min_parcels: int = 200
    min_gain: float = 0.02  # the challenger's MAE at most 98 % of the champion's
    coverage_low: float = 0.65
    coverage_high: float = 0.95
    rollback_ratio: float = 1.5


@dataclass(frozen=True)
class Decision:
    act: bool
    reason: str
    # False: not enough evidence either way yet (keep the challenger in shadow, ask later).
    final: bool = True


def promotion(challenger: Score, champion: Score, rules: Rules | None = None) -> Decision:
    """Should the challenger replace the champion? (Both scored on the same parcels.)"""
    rules = rules or Rules()
    if challenger.mae_hours is None or champion.mae_hours is None:
        return Decision(False, "not scored yet", final=False)
    enough = min(challenger.parcels, champion.parcels)
    if enough < rules.min_parcels:
        return Decision(False, f"only {enough} delivered parcels scored "
                               f"(needs {rules.min_parcels})", final=False)
    cov = challenger.coverage
    if cov is None or not rules.coverage_low <= cov <= rules.coverage_high:
        return Decision(False, f"window holds {_pct(cov)} of deliveries (needs "
                               f"{rules.coverage_low:.0%}-{rules.coverage_high:.0%})")
    needed = champion.mae_hours * (1.0 - rules.min_gain)
    figures = (f"p50 MAE {challenger.mae_hours:.1f} h vs champion {champion.mae_hours:.1f} h "
               f"on {enough} parcels{_late(champion)}")
    if challenger.mae_hours < needed:
        return Decision(True, f"beats the champion: {figures}")
    return Decision(False, f"does not beat the champion: {figures}")


def rollback(live: Score, validation_mae_hours: float | None, has_previous: bool,
             rules: Rules | None = None) -> Decision:
    """Should the champion give way to the previous one? (``live``: its own served ETAs
    of recently delivered parcels.)"""
    rules = rules or Rules()
    if live.mae_hours is None or validation_mae_hours is None or validation_mae_hours <= 0:
        return Decision(False, "no live or validation figure", final=False)
    if live.parcels < rules.min_parcels:
        return Decision(False, f"only {live.parcels} delivered parcels scored "
                               f"(needs {rules.min_parcels})", final=False)
    ratio = live.mae_hours / validation_mae_hours
    figures = (f"live p50 MAE {live.mae_hours:.1f} h on {live.parcels} parcels{_late(live)} is "
               f"{ratio:.2f}x its validation {validation_mae_hours:.1f} h")
    if ratio <= rules.rollback_ratio:
        return Decision(False, f"healthy: {figures}")
    if not has_previous:
        return Decision(False, f"degraded, but no previous champion: {figures}")
    return Decision(True, f"degraded: {figures} (limit {rules.rollback_ratio:.2f}x)")


def _late(score: Score) -> str:
    return f" ({score.late} still out past a window)" if score.late else ""


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"
