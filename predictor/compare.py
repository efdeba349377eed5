"""Champion vs challenger on the same evaluation snapshots (the promotion rule's input)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from predictor.calibration import recalibrate
from predictor.features import recent_performance, shipment_attributes, training_snapshots
from predictor.model import EtaModel


def compare_on_test(models: Mapping[str, EtaModel], shipments: pd.DataFrame,
                    events: pd.DataFrame, cutoff: datetime) -> dict[str, dict[str, Any]]:
    """p50 MAE (hours) and p10-p90 coverage of each model on snapshots labelled after cutoff.

    Each model is scored with its calibration recomputed as known at the cutoff (the same
    procedure for all: a challenger's stored factors have seen the test period, a
    champion's are from its own training), on a copy: the models themselves are unchanged.
    """
    attrs = shipment_attributes(shipments)
    recent = recent_performance(shipments, attrs)
    X, y, meta = training_snapshots(shipments, events, recent=recent)
    label_s = pd.Series(attrs["label_s"].to_numpy(), index=attrs["shipment_id"].to_numpy())
    rows = np.flatnonzero(label_s.reindex(meta["shipment_id"]).to_numpy()
                          >= pd.Timestamp(cutoff).timestamp())
    out: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        if len(rows) == 0:
            out[name] = {"rows": 0, "p50_mae_hours": None, "coverage_p10_p90": None}
            continue
        fair = dataclasses.replace(model, conformal=dict(model.conformal),
                                   metadata=dict(model.metadata))
        recalibrate(fair, shipments, events, cutoff)
        q = fair.predict(X.iloc[rows])
        actual = y[rows]
        out[name] = {
            "rows": int(len(rows)),
            "p50_mae_hours": float(np.mean(np.abs(q[:, 1] - actual))),
            "coverage_p10_p90": float(np.mean((actual >= q[:, 0]) & (actual <= q[:, 2]))),
        }
    return out


def challenger_wins(results: Mapping[str, Mapping[str, Any]], challenger: str,
                    champion: str) -> bool:
    """Lower p50 MAE on the same snapshots, without a badly miscalibrated window."""
    new, old = results[challenger], results[champion]
    if new["p50_mae_hours"] is None or old["p50_mae_hours"] is None:
        return False
    sane = new["coverage_p10_p90"] is not None and 0.65 <= new["coverage_p10_p90"] <= 0.95
    return bool(sane and new["p50_mae_hours"] < old["p50_mae_hours"])
