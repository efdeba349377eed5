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
from predictor.promotion import Decision, Rules, Score, promotion


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
            out[name] = {"rows": 0, "parcels": 0, "p50_mae_hours": None,
                         "coverage_p10_p90": None}
            continue
        fair = dataclasses.replace(model, conformal=dict(model.conformal),
                                   metadata=dict(model.metadata))
        recalibrate(fair, shipments, events, cutoff)
        q = fair.predict(X.iloc[rows])
        actual = y[rows]
        out[name] = {
            "rows": int(len(rows)),
            "parcels": int(meta["shipment_id"].iloc[rows].nunique()),
            "p50_mae_hours": float(np.mean(np.abs(q[:, 1] - actual))),
            "coverage_p10_p90": float(np.mean((actual >= q[:, 0]) & (actual <= q[:, 2]))),
        }
    return out


def as_score(result: Mapping[str, Any]) -> Score:
    """One model's :func:`compare_on_test` figures as the promotion rules read them."""
    return Score(parcels=int(result.get("parcels", 0)), rows=int(result.get("rows", 0)),
                 mae_hours=result.get("p50_mae_hours"),
                 coverage=result.get("coverage_p10_p90"))


def challenger_wins(results: Mapping[str, Mapping[str, Any]], challenger: str,
                    champion: str, rules: Rules | None = None) -> Decision:
    """:func:`predictor.promotion.promotion` on the same snapshots. Only fair when neither
    model was trained on them (score a refitted challenger's holdout booster, on parcels
    labelled after both models' training data)."""
    return promotion(as_score(results[challenger]), as_score(results[champion]),
                     rules or Rules())
