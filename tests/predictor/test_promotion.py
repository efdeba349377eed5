"""The champion / challenger rules (predictor.promotion)."""

from __future__ import annotations

from predictor.promotion import Rules, Score, promotion, rollback

RULES = Rules(min_parcels=100, min_gain=0.05, rollback_ratio=1.5)


def score(mae: float | None, parcels: int = 500, coverage: float | None = 0.8) -> Score:
    return Score(parcels=parcels, rows=parcels * 3, mae_hours=mae, coverage=coverage)


def test_a_clearly_better_challenger_with_a_sane_window_is_promoted() -> None:
    decision = promotion(score(20.0), score(24.0), RULES)
    assert decision.act and "20.0 h vs champion 24.0 h" in decision.reason


def test_a_challenger_within_the_margin_is_not_promoted() -> None:
    assert not promotion(score(23.0), score(24.0), RULES).act  # 4 % better, needs 5 %
    assert not promotion(score(24.0), score(24.0), RULES).act
    assert not promotion(score(30.0), score(24.0), RULES).act


def test_too_few_parcels_or_no_scores_is_no_verdict() -> None:
    few = promotion(score(10.0, parcels=99), score(24.0), RULES)
    assert not few.act and not few.final and "only 99" in few.reason
    assert promotion(score(30.0), score(24.0), RULES).final
    assert not promotion(score(10.0), score(24.0, parcels=50), RULES).act
    assert not promotion(score(None), score(24.0), RULES).act


def test_a_miscalibrated_window_blocks_promotion_however_accurate() -> None:
    for coverage in (0.5, 0.99, None):
        decision = promotion(score(5.0, coverage=coverage), score(24.0), RULES)
        assert not decision.act and "window" in decision.reason


def test_rollback_only_when_live_error_is_past_the_ratio_and_there_is_a_previous() -> None:
    assert not rollback(score(29.0), 20.0, True, RULES).act  # 1.45x
    degraded = rollback(score(31.0), 20.0, True, RULES)
    assert degraded.act and "1.55x" in degraded.reason
    assert not rollback(score(31.0), 20.0, False, RULES).act
    assert not rollback(score(31.0, parcels=10), 20.0, True, RULES).act
    assert not rollback(score(31.0), None, True, RULES).act
    assert not rollback(score(None), 20.0, True, RULES).act
