"""The trained model does not change when training's memory layout does: a fixed small
history gives the same snapshot features, the same targets and the same booster
predictions as the fingerprint recorded before the memory work (fixtures/
training_parity.json). A feature that changed meaning (a recent-performance key looked up
in the wrong family, a category remapped, a window shifted) moves its column's sums and
the boosters' quantiles, and fails here.

Regenerate only for an intended model change:
    .venv/bin/python -m tests.predictor.test_training_parity
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from predictor.features import CATEGORICAL, NUMERIC, training_snapshots
from predictor.simulator import simulate
from predictor.train import train_model

FIXTURE = Path(__file__).parent / "fixtures" / "training_parity.json"
START = datetime(2024, 9, 2, tzinfo=UTC)
PREDICTED_ROWS = 400


def fingerprint() -> dict[str, Any]:
    history = simulate(900, 50, START, seed=23)
    X, y, meta = training_snapshots(history.shipments, history.events)
    weight = (np.arange(len(X)) % 97 + 1).astype(float)
    columns: dict[str, Any] = {}
    for f in NUMERIC:
        v = X[f].to_numpy(dtype=float)
        columns[f] = {"missing": int(np.isnan(v).sum()), "sum": float(np.nansum(v)),
                      "weighted": float(np.nansum(v * weight))}
    for f in CATEGORICAL:
        text = X[f].astype(object).to_numpy()
        values, counts = np.unique(text.astype(str), return_counts=True)
        codes = pd.factorize(text, sort=True)[0].astype(float)
        columns[f] = {"counts": dict(zip(map(str, values), map(int, counts), strict=True)),
                      "weighted": float((codes * weight).sum())}
    model, report = train_model(history.shipments, history.events, num_boost_round=20,
                                params={"nthread": 1})
    rows = np.linspace(0, len(X) - 1, PREDICTED_ROWS).astype(int)
    sample = X.iloc[rows].reset_index(drop=True)
    return {
        "snapshots": int(len(X)), "columns": columns,
        "y": {"sum": float(y.sum()), "weighted": float((y * weight).sum())},
        "as_of_us_checksum": int(pd.DatetimeIndex(meta["as_of"]).as_unit("us").asi8.sum()),
        "rows": report["model"]["rows"],
        # Scored on the test snapshots without the calibration (which may change on its own).
        "lane_median": report["evaluation"]["overall"]["lane_median"],
        "categories": model.categories,
        "refit_raw": model.predict_raw(sample).round(6).tolist(),
        "holdout_raw": report["holdout_model"].predict_raw(sample).round(6).tolist(),
    }


def test_training_gives_the_recorded_model() -> None:
    want = json.loads(FIXTURE.read_text())
    got = json.loads(json.dumps(fingerprint()))  # the same JSON types as the fixture
    assert got["snapshots"] == want["snapshots"]
    assert got["rows"] == want["rows"]
    assert got["as_of_us_checksum"] == want["as_of_us_checksum"]
    assert got["categories"] == want["categories"]
    assert got["lane_median"].keys() == want["lane_median"].keys()
    for k, v in want["lane_median"].items():
        assert got["lane_median"][k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float)
                                         else v), k
    for f in NUMERIC:
        g, w = got["columns"][f], want["columns"][f]
        assert g["missing"] == w["missing"], f
        np.testing.assert_allclose([g["sum"], g["weighted"]], [w["sum"], w["weighted"]],
                                   rtol=1e-6, atol=1e-6, err_msg=f)
    for f in CATEGORICAL:
        assert got["columns"][f] == want["columns"][f], f
    np.testing.assert_allclose([got["y"]["sum"], got["y"]["weighted"]],
                               [want["y"]["sum"], want["y"]["weighted"]], rtol=1e-9)
    np.testing.assert_allclose(got["refit_raw"], want["refit_raw"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["holdout_raw"], want["holdout_raw"], rtol=1e-5, atol=1e-4)


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(fingerprint(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
