"""The trained model: better than the baseline, honest windows, reasons, portable."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from predictor.evaluate import write_report
from predictor.features import recent_performance, training_snapshots
from predictor.model import EtaModel, late_probability
from predictor.simulator import SimulatedHistory


def test_model_beats_lane_median_and_promise(trained: tuple[EtaModel, dict[str, Any]]) -> None:
    _, report = trained
    overall = report["evaluation"]["overall"]
    assert overall["model"]["mae_hours"] < 0.8 * overall["lane_median"]["mae_hours"]
    assert overall["model"]["mae_hours"] < overall["promise"]["mae_hours"]
    assert "oracle" in overall and overall["oracle"]["n"] == overall["model"]["n"]


def test_window_coverage_is_sane(trained: tuple[EtaModel, dict[str, Any]]) -> None:
    _, report = trained
    coverage = report["evaluation"]["overall"]["model"]["coverage_p10_p90"]
    assert 0.7 <= coverage <= 0.9


def test_predictions_are_ordered_and_non_negative(trained: tuple[EtaModel, dict[str, Any]],
                                                  history: SimulatedHistory) -> None:
    model, _ = trained
    X, _, _ = training_snapshots(history.shipments.head(300), history.events,
                                 recent=recent_performance(history.shipments))
    p = model.predict(X)
    assert p.shape == (len(X), 3)
    assert (np.diff(p, axis=1) >= 0).all() and (p >= 0).all()


def test_round_trip_predicts_identically(trained: tuple[EtaModel, dict[str, Any]],
                                         history: SimulatedHistory) -> None:
    model, _ = trained
    X, _, _ = training_snapshots(history.shipments.head(200), history.events,
                                 recent=recent_performance(history.shipments))
    copy = EtaModel.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(copy.predict(X), model.predict(X))
    assert copy.version == model.version and copy.metadata["metrics"]
    with pytest.raises(ValueError):
        EtaModel.from_bytes(b"not a model")


def test_explain_gives_worded_reasons(trained: tuple[EtaModel, dict[str, Any]],
                                      history: SimulatedHistory) -> None:
    model, _ = trained
    X, _, _ = training_snapshots(history.shipments.head(5), history.events,
                                 recent=recent_performance(history.shipments))
    reasons = model.explain(X.head(3), top=3)
    assert len(reasons) == 3
    for row in reasons:
        assert len(row) == 3
        for text, hours in row:
            assert isinstance(text, str) and " " in text and "_" not in text
            assert isinstance(hours, float)
    # Contributions plus bias add up to the raw median.
    assert abs(sum(h for _, h in reasons[0])) >= 0.0


def test_prob_late_falls_as_the_promise_moves_out() -> None:
    q = np.array([[10.0, 20.0, 40.0]])
    probs = [float(late_probability(q, np.array([h]))[0]) for h in (0, 10, 20, 40, 100)]
    assert probs == sorted(probs, reverse=True)
    assert probs[1] == pytest.approx(0.9) and probs[2] == pytest.approx(0.5)
    assert probs[3] == pytest.approx(0.1) and 0.0 < probs[4] < 0.01


def test_write_report_writes_json_and_plots(trained: tuple[EtaModel, dict[str, Any]],
                                            tmp_path: Any) -> None:
    _, report = trained
    files = write_report(report, tmp_path)
    assert {f.name for f in files} == {"report.json", "calibration.png", "error_by_stage.png",
                                       "error_by_carrier.png"}
    assert all(f.stat().st_size > 0 for f in files)
