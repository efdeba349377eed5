"""Walk-forward backtest: production's order of events, no look-ahead, adapting baselines."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from predictor.backtest import BacktestConfig, Prepared, evaluate, main, prepare, replay
from predictor.backtest_baselines import rolling_baselines, rolling_tables
from predictor.features import shipment_attributes
from predictor.fitting import FitOptions
from predictor.simulator import SimulatedHistory

from .conftest import START

DAY = timedelta(days=1)
# Retrain points at START + 14, 28 and 42 days; the planted deliveries land between the
# second and the third.
CONFIG = BacktestConfig(start=START + 14 * DAY, end=START + 50 * DAY, retrain_every_days=14,
                        rounds=8, params={"max_depth": 4, "learning_rate": 0.3, "nthread": 1},
                        options=FitOptions(min_label_age_days=7.0))
RETRAIN = START + 28 * DAY


@pytest.fixture(scope="module")
def prepared(history: SimulatedHistory) -> Prepared:
    return prepare(history.shipments, history.events, oracle=False)


@pytest.fixture(scope="module")
def played(prepared: Prepared) -> dict[str, Any]:
    return replay(prepared, CONFIG)


def _planted(history: SimulatedHistory) -> tuple[pd.DataFrame, pd.DataFrame, pd.Index]:
    """The history with 150 parcels that were in flight at RETRAIN delivered 10 days after
    it instead (an absurd transit for this shop), scan and all."""
    s, ev = history.shipments.copy(), history.events.copy()
    in_flight = s.index[(s["label_created_at"] < RETRAIN) & (s["delivered_at"] >= RETRAIN)
                        & (s["delivered_at"] < RETRAIN + 3 * DAY)][:150]
    late = pd.Timestamp(RETRAIN + 10 * DAY)
    s.loc[in_flight, "delivered_at"] = late
    moved = (ev["tracking_number"].isin(s.loc[in_flight, "tracking_number"])
             & (ev["status"] == "delivered")).to_numpy()
    ev.loc[moved, "occurred_at"] = late
    return s, ev, in_flight


def test_a_model_never_learns_from_parcels_still_in_flight_at_its_retrain_point(
        history: SimulatedHistory, prepared: Prepared, played: dict[str, Any]) -> None:
    s, ev, planted = _planted(history)
    assert len(planted) == 150
    other = replay(prepare(s, ev, oracle=False), CONFIG)
    at = [r["at"][:10] for r in played["retrains"]]
    assert at == [str((START + k * DAY).date()) for k in (14, 28, 42)]
    before, same, after = played["retrains"], other["retrains"], None
    # The boosters trained at and before the retrain point are the same bytes, and so is
    # the calibration they started with; the next one learnt the absurd transits.
    for k in (0, 1):
        assert before[k]["booster"] == same[k]["booster"]
        assert before[k]["factors"] == same[k]["factors"]
        assert before[k]["train_parcels"] == same[k]["train_parcels"]
    after = (before[2]["booster"], same[2]["booster"])
    assert after[0] != after[1]
    # Exactly the parcels delivered before the retrain point (and labelled early enough)
    # were learnt from.
    delivered = history.shipments["delivered_at"]
    labelled = history.shipments["label_created_at"]
    old = labelled < RETRAIN - timedelta(days=CONFIG.options.min_label_age_days)
    assert before[1]["train_parcels"] == int(((delivered < RETRAIN) & old).sum())


def test_what_was_served_before_a_delivery_does_not_depend_on_it(
        history: SimulatedHistory, prepared: Prepared, played: dict[str, Any]) -> None:
    s, ev, planted = _planted(history)
    prep2 = prepare(s, ev, oracle=False)
    other = replay(prep2, CONFIG)
    np.testing.assert_array_equal(played["scored"], other["scored"])
    rows = played["scored"]
    when = prepared.snap_s[rows]
    mine = np.isin(prepared.rows[rows], planted.to_numpy())
    early = (when < RETRAIN.timestamp()) & ~mine
    assert early.sum() > 1000
    np.testing.assert_array_equal(played["model"][early], other["model"][early])


def test_rolling_baselines_only_read_deliveries_known_at_the_snapshot(
        history: SimulatedHistory) -> None:
    s = history.shipments
    attrs = shipment_attributes(s)
    segment = np.where(np.arange(len(s)) % 2 == 0, "a", "b").astype(object)
    cut = (START + 30 * DAY).timestamp()
    slower = attrs.copy()
    late = slower["delivered_s"] >= cut
    # Everything delivered from `cut` on took ten times longer.
    slower.loc[late, "delivered_s"] = (slower["shipped_s"] + 10 * (
        slower["delivered_s"] - slower["shipped_s"]))[late]
    X = pd.DataFrame({"hours_since_handover": [np.nan, 5.0, 30.0, np.nan, 10.0],
                      "hours_since_label": [2.0, 20.0, 60.0, 1.0, 30.0]})
    seg = np.array(["a", "b", "a", "b", "a"], dtype=object)
    # Queries on the day before the cut (whatever the hour) and well after it.
    before = np.full(5, cut - 3600.0)
    after = np.full(5, cut + 10 * 86_400.0)
    a = rolling_baselines(rolling_tables(attrs, segment), X, seg, before)
    b = rolling_baselines(rolling_tables(slower, segment), X, seg, before)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert np.isfinite(a[name]).all()
    later_a = rolling_baselines(rolling_tables(attrs, segment), X, seg, after)
    later_b = rolling_baselines(rolling_tables(slower, segment), X, seg, after)
    assert (later_b["recent_median_14d"][:, 1] > later_a["recent_median_14d"][:, 1]).all()
    # A parcel still on its way gets a later answer than a fresh one.
    fresh = rolling_baselines(rolling_tables(attrs, segment), X.assign(
        hours_since_handover=0.0), seg, before)["recent_median_28d"]
    assert a["recent_median_28d"][2, 1] + 30.0 >= fresh[2, 1]


def test_scores_every_method_on_the_same_snapshots(prepared: Prepared,
                                                  played: dict[str, Any]) -> None:
    result = evaluate(prepared, played, CONFIG)
    head = result["overall"]["first_scan"]
    assert {"model", "recent_median_14d", "recent_median_28d", "global_median_28d",
            "promise", "carrier_estimate"} <= set(head)
    n = head["model"]["n"]
    assert n > 500
    for name in ("recent_median_14d", "recent_median_28d", "global_median_28d", "promise"):
        assert head[name]["n"] == n
    m = head["model"]
    assert 0.5 < m["coverage"] <= 1.0 and m["width_days"] > 0
    assert 0.0 <= m["by_p50_date"] <= m["by_p90_date"] <= 1.0
    assert set(result["by_month"]) == {"2024-09", "2024-10"}


def test_main_writes_table_json_and_plots(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--format", "simulated", "--shipments", "1500", "--days", "40",
                 "--seed", "3", "--sim-start", "2024-08-01T00:00:00+00:00",
                 "--start", "2024-08-22", "--retrain-every", "14d", "--rounds", "5",
                 "--regime-change", "ups:20:1.5", "--json", str(tmp_path / "r.json"),
                 "--report", str(tmp_path / "plots"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "handover" in out and "oracle" in out and "recent_median_14d" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["data"]["regime_change"] == ["ups", 20, 1.5]
    assert result["overall"]["first_scan"]["model"]["n"] > 0
    pngs = {p.name for p in (tmp_path / "plots").glob("*.png")}
    assert {"mae_by_month.png", "coverage_by_month.png", "calibration.png",
            "error_by_segment.png"} <= pngs


def test_the_recent_median_baselines_are_per_route_not_per_correction_segment(
        prepared: Prepared) -> None:
    """The correction's segments carry the scan group (``c:ups|ground|g1``); the rolling
    baselines are the recent transit of the parcel's route (carrier|service), whatever its
    stage: at handover they are not the shop-wide median."""
    group = np.minimum(np.nan_to_num(prepared.X["n_scans"].to_numpy(float)), 2).astype(int)
    assert [f"{r}|g{g}" for r, g in zip(prepared.route, group, strict=True)] \
        == prepared.segment.tolist()
    head = (prepared.stage == "first_scan") & np.isfinite(prepared.y)
    route = prepared.baselines["recent_median_28d"][head, 1]
    shop = prepared.baselines["global_median_28d"][head, 1]
    known = np.isfinite(route) & np.isfinite(shop)
    assert known.sum() > 500 and np.mean(route[known] != shop[known]) > 0.5


def test_parcels_long_in_flight_are_scored_as_their_own_slice(
        prepared: Prepared, played: dict[str, Any]) -> None:
    """Issue #14: the windows of parcels already two days out when asked (the parcels in
    flight when an import or the demo starts) are judged on their own, overall and per
    month, beside the stages."""
    result = evaluate(prepared, played, CONFIG)
    rows = played["scored"]
    since = (prepared.snap_s[rows] - prepared.label_s[rows]) / 3600.0
    survivors = (prepared.stage[rows] == "between_scans") & (since > 48)
    n = result["overall"]["survivors_48h"]["model"]["n"]
    assert n == int(survivors.sum()) > 100
    assert n < result["overall"]["between_scans"]["model"]["n"]
    assert sum(b["survivors_48h"]["model"]["n"] for b in result["by_month"].values()
               if "survivors_48h" in b) == n
    assert 0.0 <= result["overall"]["survivors_48h"]["model"]["coverage"] <= 1.0
