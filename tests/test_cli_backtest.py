"""`parcelcast backtest` on a small Olist-layout history written by the test (no file from
outside the repository): per-month, per-stage tables, JSON, plots and an HTML page, and no
look-ahead through the CSV path."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from predictor.simulator import simulate
from service.cli import main

START = datetime(2024, 8, 1, tzinfo=UTC)
ZONE = "America/Sao_Paulo"
# Retrain points every 14 days from 2024-08-22: 08-22, 09-05, 09-19.
LAST_RETRAIN = datetime(2024, 9, 19, tzinfo=UTC)
ARGS = ["--format", "olist", "--start", "2024-08-22", "--retrain-every", "14d",
        "--rounds", "5", "--quiet"]


def _local(value: object) -> str:
    if value is None or pd.isna(value):
        return ""
    return pd.Timestamp(value).tz_convert(ZONE).strftime("%Y-%m-%d %H:%M:%S")


def write_olist(path: Path, planted: timedelta | None = None) -> list[str]:
    """A simulated shop in Olist's layout; `planted`: parcels labelled after the last retrain
    point are delivered that much later (a label from the future of every model)."""
    shipments = simulate(1800, 60, START, seed=5).shipments
    moved = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["order_id", "customer_id", "order_status", "order_purchase_timestamp",
                      "order_approved_at", "order_delivered_carrier_date",
                      "order_delivered_customer_date", "order_estimated_delivery_date"])
        for s in shipments.itertuples():
            delivered = s.delivered_at
            if (planted is not None and pd.notna(delivered)
                    and s.label_created_at >= LAST_RETRAIN):
                delivered = delivered + planted
                moved.append(s.order_id)
            out.writerow([s.order_id, f"c-{s.order_id}",
                          "delivered" if pd.notna(delivered) else "shipped",
                          _local(s.label_created_at - timedelta(hours=2)),
                          _local(s.label_created_at), _local(s.shipped_at), _local(delivered),
                          f"{s.promised_delivery_date} 00:00:00"])
    return moved


@pytest.fixture(scope="module")
def olist_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("olist") / "orders.csv"
    write_olist(path)
    return path


def test_backtest_prints_month_by_stage_tables_and_writes_json_plots_and_html(
        olist_csv: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["backtest", "--history", str(olist_csv), *ARGS,
                                       "--json", str(tmp_path / "bt.json"),
                                       "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    out = result.output
    for stage in ("label", "handover (first scan)", "between scans"):  # Olist: no scans
        assert f"### {stage}: p50 MAE in days" in out
    assert "| 2024-08 |" in out and "| 2024-09 |" in out and "| overall |" in out
    assert "recent_median_14d" in out and "promise" in out
    data = json.loads((tmp_path / "bt.json").read_text())
    assert data["data"]["format"] == "olist"
    assert [r["at"][:10] for r in data["retrains"]] == ["2024-08-22", "2024-09-05",
                                                         "2024-09-19"]
    handover = data["overall"]["first_scan"]["model"]
    assert handover["n"] > 300 and 0.0 < handover["mae_days"] < 5.0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<img src='mae_by_month.png'" in page and "<img src='coverage_by_month.png'" in page
    assert (tmp_path / "report" / "mae_by_month.png").stat().st_size > 1000
    assert "<td>2024-09</td>" in page


def test_a_planted_future_label_changes_nothing_served_before_it(
        olist_csv: Path, tmp_path: Path) -> None:
    """Parcels labelled after the last retrain point delivered ten days later: every booster
    (all trained before those deliveries), its calibration, and every ETA served before
    those deliveries could be known are the same."""
    planted = tmp_path / "planted.csv"
    moved = write_olist(planted, planted=timedelta(days=10))
    assert len(moved) > 50
    runs = {}
    for name, path in (("real", olist_csv), ("planted", planted)):
        result = CliRunner().invoke(main, ["backtest", "--history", str(path), *ARGS,
                                           "--end", "2024-09-19",
                                           "--json", str(tmp_path / f"{name}.json")])
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    real, fake = runs["real"], runs["planted"]
    assert [r["booster"] for r in real["retrains"]] == [r["booster"] for r in fake["retrains"]]
    assert [r["factors"] for r in real["retrains"]] == [r["factors"] for r in fake["retrains"]]
    # Every handover ETA served before the planted deliveries could be known, day by day.
    before = [d for d in real["daily"]["all"] if d < str(LAST_RETRAIN.date())]
    assert len(before) >= 25
    for day in before:
        assert real["daily"]["all"][day] == fake["daily"]["all"][day]
    assert real["by_month"]["2024-08"] == fake["by_month"]["2024-08"]


def test_backtest_needs_a_history_file_for_olist() -> None:
    result = CliRunner().invoke(main, ["backtest", "--format", "olist"])
    assert result.exit_code == 2 and "--history" in result.output
