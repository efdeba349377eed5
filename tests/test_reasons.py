"""ETA reasons in words an agent can read out: the shipment's fact beside the effect, so a
sign the model learnt never contradicts what the agent sees."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from service.eta.reasons import ReasonFacts, agent_reasons, describe, duration, facts_at, feature_of

AS_OF = datetime(2026, 11, 20, 15, tzinfo=UTC)
ROW = {"carrier": "ups", "service_level": "ground", "destination_state": "CA",
       "latest_status": "in_transit"}


def _facts() -> ReasonFacts:
    """Last scanned eight days ago; promised ten days ago."""
    return facts_at(AS_OF, "America/Los_Angeles", "UPS", "ground", "94105 US",
                    AS_OF - timedelta(days=12), date(2026, 11, 10), None,
                    [("label_created", AS_OF - timedelta(days=12)),
                     ("in_transit", AS_OF - timedelta(days=10)),
                     ("in_transit", AS_OF - timedelta(days=8)),
                     ("unknown", AS_OF - timedelta(days=1))])


def test_the_sentences_that_read_oddly() -> None:
    stored = [{"reason": describe("hours_since_last_scan", -5.0, ROW), "hours": -5.0},
              {"reason": describe("hours_to_promise", -3.2, ROW), "hours": -3.2}]
    assert [s["reason"] for s in stored] == ["A recent scan lately", "The promised date is close"]
    worded = agent_reasons(stored, _facts())
    assert [r["text"] for r in worded] == [
        "Time since the last carrier scan (8 days): takes about 5 h off",
        "Time left to the promised date (promised 2026-11-10, 10 days ago): "
        "takes about 3.2 h off",
    ]


def test_facts_count_carrier_scans_only_and_ignore_unreadable_codes() -> None:
    facts = _facts()
    assert facts.scans == 2 and facts.latest_status == "in_transit"
    assert facts.handover_at == AS_OF - timedelta(days=10)


def test_a_stored_feature_wins_and_an_unknown_sentence_is_kept() -> None:
    worded = agent_reasons([{"reason": "whatever", "hours": 30.0, "feature": "n_scans"},
                            {"reason": "Something new", "hours": 0.2}], _facts())
    assert [r["text"] for r in worded] == ["Carrier scans so far (2): adds about 30 h",
                                           "Something new (hardly changes it)"]


@pytest.mark.parametrize(("hours", "text"), [
    (0.25, "0.2 h"), (1, "1 h"), (2.5, "2.5 h"), (30, "30 h"), (-48, "2 days"), (60, "2.5 days"),
    (300, "12 days")])
def test_durations(hours: float, text: str) -> None:
    assert duration(hours) == text


def test_every_feature_is_recognised_from_its_sentence() -> None:
    from predictor.features import FEATURES

    for feature in FEATURES:
        for hours in (4.0, -4.0):
            assert feature_of(describe(feature, hours, ROW)) == feature


def test_stored_reasons_keep_the_code_and_the_sentence() -> None:
    from predictor.model import Reason
    from service.eta.reasons import stored_reasons

    stored = stored_reasons([Reason("carrier", 6.5, ROW), Reason("hours_to_promise", -3.2, ROW)])
    assert stored == [
        {"feature": "carrier", "reason": "UPS Ground runs slower than average", "hours": 6.5},
        {"feature": "hours_to_promise", "reason": "The promised date is close", "hours": -3.2}]
    # The agent's wording reads the code, not the sentence.
    worded = agent_reasons(stored, _facts())
    assert [r["feature"] for r in worded] == ["carrier", "hours_to_promise"]
