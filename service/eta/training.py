"""`parcelcast train`: train on the shop's history in the database, evaluate, register, and
promote only when the new model beats the champion on the same evaluation data."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import pandas as pd

from predictor.compare import challenger_wins, compare_on_test
from predictor.model import EtaModel
from predictor.train import train_model
from service.store import eta_models, history

Progress = Callable[[str, float], None]


@dataclass
class TrainOutcome:
    version: str
    promoted: bool
    reason: str
    report: dict[str, Any]
    comparison: dict[str, dict[str, Any]]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN
        return None
    if hasattr(value, "item"):
        return _json_safe(value.item())
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    return value


async def train_and_register(conn: asyncpg.Connection, now: datetime, *,
                             until: datetime | None = None, rounds: int | None = None,
                             progress: Progress | None = None, frames: tuple[pd.DataFrame,
                             pd.DataFrame] | None = None,
                             max_train_rows: int | None = None) -> TrainOutcome:
    shipments, events = frames if frames is not None else await history.training_frames(
        conn, until or now)
    if shipments.empty:
        raise ValueError("no shipment history to train on: load or import some first")
    kwargs: dict[str, Any] = {"progress": progress, "trained_at": now,
                              "max_train_rows": max_train_rows}
    if rounds is not None:
        kwargs["num_boost_round"] = rounds
    model, report = await asyncio.to_thread(train_model, shipments, events, **kwargs)
    version = model.version
    if await eta_models.get(conn, version) is not None:
        return TrainOutcome(version, False, "this exact model is already registered", report, {})
    data_range = report["model"].get("data_range") or {}
    cutoff = pd.Timestamp(report["evaluation"].get("cutoff") or data_range.get("cutoff")
                          or shipments["label_created_at"].quantile(0.8))
    champion_row = await eta_models.champion(conn)
    contenders = {version: model}
    if champion_row is not None:
        contenders[champion_row.version] = await asyncio.to_thread(
            EtaModel.from_bytes, champion_row.artefact)
    comparison = await asyncio.to_thread(compare_on_test, contenders, shipments, events,
                                         cutoff.floor("us").to_pydatetime())
    metrics = _json_safe({"evaluation": report["evaluation"], "comparison": comparison})
    await eta_models.register(
        conn, version, model.to_bytes(), model.feature_names, _json_safe(report["model"]),
        metrics, shipments["label_created_at"].min().to_pydatetime(),
        shipments["label_created_at"].max().to_pydatetime(), now)
    if champion_row is None:
        promoted, reason = True, "first model"
    elif challenger_wins(comparison, version, champion_row.version):
        promoted, reason = True, (
            f"p50 MAE {comparison[version]['p50_mae_hours']:.1f} h < champion "
            f"{comparison[champion_row.version]['p50_mae_hours']:.1f} h")
    else:
        promoted, reason = False, "does not beat the champion on the same evaluation data"
    if promoted:
        await eta_models.promote(conn, version, reason, now)
    return TrainOutcome(version, promoted, reason, report, comparison)
