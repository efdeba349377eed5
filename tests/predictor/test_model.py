"""The trained model: better than the baseline, honest windows, reasons, portable."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from predictor.attributions import TreePaths
from predictor.evaluate import write_report
from predictor.features import recent_performance, training_snapshots
from predictor.model import WALK_MAX_ROWS, EtaModel, base_margin, late_probability
from predictor.simulator import SimulatedHistory
from predictor.train import train_model


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


def test_explain_gives_reason_codes_not_words(trained: tuple[EtaModel, dict[str, Any]],
                                              history: SimulatedHistory) -> None:
    """The predictor says which feature moved the median and by how much, with the row's
    values a sentence may name; the wording is the service's (service.eta.reasons)."""
    model, _ = trained
    X, _, _ = training_snapshots(history.shipments.head(5), history.events,
                                 recent=recent_performance(history.shipments))
    reasons = model.explain(X.head(3), top=3)
    assert len(reasons) == 3
    for row, carrier in zip(reasons, X["carrier"].head(3), strict=True):
        assert len(row) == 3
        for reason in row:
            assert reason.feature in model.feature_names
            assert isinstance(reason.hours, float)
            assert reason.context["carrier"] == str(carrier)
    # The reasons are the largest contributions, largest first.
    contrib = model.contributions(X.head(3))
    top = np.sort(np.abs(contrib[0]))[::-1][:3]
    assert [abs(r.hours) for r in reasons[0]] == pytest.approx(np.round(top, 2), abs=0.011)


def test_fast_attributions_equal_xgboosts_approx_contribs(
        trained: tuple[EtaModel, dict[str, Any]], history: SimulatedHistory) -> None:
    """The numpy Saabas walk of the median trees gives XGBoost's own numbers, including
    for missing values and categories the model never saw."""
    model, _ = trained
    X, _, _ = training_snapshots(history.shipments.head(400), history.events,
                                 recent=recent_performance(history.shipments))
    matrix = model.encode(X)
    matrix[::7, model.feature_names.index("lane")] = 10_000  # unseen category code
    matrix[::5, model.feature_names.index("carrier")] = np.nan
    matrix[::3, model.feature_names.index("distance_km")] = np.nan
    dm = xgb.DMatrix(matrix, feature_names=model.feature_names, enable_categorical=True,
                     feature_types=["c" if f in model.categories else "q"
                                    for f in model.feature_names])
    expected = model.booster.predict(dm, pred_contribs=True, approx_contribs=True)[:, 1, :-1]
    got = model.contributions(X, approx=True, encoded=matrix)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert np.abs(got).sum() > 0
    # The categorical sets as a dense table (default here) and as sorted keys agree.
    keyed = TreePaths.from_booster(model.booster, max_dense_cells=0)
    assert keyed.cat_table is None and model._paths().cat_table is not None
    raw_keyed, contrib_keyed = keyed.walk(matrix, 1)
    raw_dense, contrib_dense = model._paths().walk(matrix, 1)
    np.testing.assert_array_equal(contrib_keyed, contrib_dense)
    np.testing.assert_array_equal(raw_keyed, raw_dense)


@pytest.mark.parametrize("margin", [False, True])
def test_the_numpy_walk_predicts_what_xgboost_predicts(
        margin: bool, trained: tuple[EtaModel, dict[str, Any]],
        history: SimulatedHistory) -> None:
    """A refresh's few rows are scored by the numpy walk: same quantiles as XGBoost's
    inplace_predict (with and without a base margin), same reasons as explain()."""
    model, _ = trained
    if margin:
        model, _ = train_model(history.shipments, history.events, num_boost_round=15,
                               params={"max_depth": 4, "base_margin": True,
                                                          "nthread": 1})
    X, _, _ = training_snapshots(history.shipments.head(60), history.events,
                                 recent=recent_performance(history.shipments))
    X = X.head(40).copy()
    X.loc[X.index[::4], "carrier"] = np.nan  # missing category
    for rows in range(0, 40, WALK_MAX_ROWS):  # a refresh's few rows: the walk predicts
        few = X.iloc[rows:rows + WALK_MAX_ROWS]
        hours, reasons = model.predict_explained(few, top=3)
        np.testing.assert_allclose(hours, model.predict(few), atol=1e-3)
        assert reasons == model.explain(few, top=3, approx=True)
        raw, _ = model._paths().walk(model.encode(few), 1, base_margin(few) if margin else None)
        np.testing.assert_allclose(raw, model.predict_raw(few), atol=1e-3)
    hours, reasons = model.predict_explained(X)  # a batch: XGBoost predicts, walk explains
    np.testing.assert_allclose(hours, model.predict(X), atol=1e-6)
    assert reasons == model.explain(X, top=3, approx=True)


def test_one_row_arrays_predict_and_explain_like_the_frame(
        trained: tuple[EtaModel, dict[str, Any]], history: SimulatedHistory) -> None:
    model, _ = trained
    X, _, _ = training_snapshots(history.shipments.head(20), history.events,
                                 recent=recent_performance(history.shipments))
    for i in (0, 7, 15):
        row = {name: np.asarray(X[name])[i:i + 1] for name in X.columns}
        np.testing.assert_array_equal(model.encode(row), model.encode(X.iloc[[i]]))
        np.testing.assert_allclose(model.predict(row), model.predict(X.iloc[[i]]))
        assert model.explain(row, approx=True) == model.explain(X.iloc[[i]], approx=True)


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
