"""Training and registering a model, and the promotion gate it passes.

`parcelcast train` and the scheduled retraining (:mod:`service.eta.lifecycle`) train on the
shop's history in the database. The model handed back is refitted on every label known
(``train_model(refit=True)``), so it has seen every recent delivery: scoring it on them
would flatter it. The gate therefore scores its *holdout* booster (the same configuration
fitted before its calibration slice) against the champion on the parcels labelled after
both were trained (:func:`predictor.compare.challenger_wins`). Without enough of those
delivered yet, the new model runs in shadow on live traffic and is promoted later on its
own served ETAs (:func:`service.eta.lifecycle.review`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import pandas as pd

from predictor.compare import challenger_wins, compare_on_test
from predictor.model import EtaModel
from predictor.promotion import Rules
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
    status: str = "candidate"  # champion, shadow or candidate (registered, not used)


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


def fit_and_compare(shipments: pd.DataFrame, events: pd.DataFrame, kwargs: dict[str, Any],
                    champion: tuple[str, bytes, datetime | None] | None
                    ) -> tuple[EtaModel, dict[str, Any], dict[str, dict[str, Any]]]:
    """Train, then score the new model's holdout booster and the champion on the snapshots
    labelled after both were trained (CPU work: a thread or a process of its own)."""
    model, report = train_model(shipments, events, **kwargs)
    holdout: EtaModel = report.pop("holdout_model")
    if champion is None:
        return model, report, {}
    name, artefact, champion_to = champion
    data_range = report["model"].get("data_range") or {}
    gate_from = pd.Timestamp(data_range.get("cutoff")
                             or shipments["label_created_at"].quantile(0.8))
    if champion_to is not None:
        gate_from = max(gate_from, pd.Timestamp(champion_to) + pd.Timedelta(microseconds=1))
    comparison = compare_on_test({model.version: holdout, name: EtaModel.from_bytes(artefact)},
                                 shipments, events, gate_from.floor("us").to_pydatetime())
    for result in comparison.values():
        result["from"] = gate_from.isoformat()
    return model, report, comparison


async def train_and_register(conn: asyncpg.Connection, now: datetime, *,
                             until: datetime | None = None, rounds: int | None = None,
                             progress: Progress | None = None, frames: tuple[pd.DataFrame,
                             pd.DataFrame] | None = None,
                             max_train_rows: int | None = None, rules: Rules | None = None,
                             in_process: bool = False) -> TrainOutcome:
    """Train on the history known at `until` (default `now`), register, and then: the first
    model becomes champion; a model that beats the champion on parcels neither was trained
    on is promoted; a model that cannot be judged yet runs in shadow; one that loses stays a
    candidate. `in_process`: train in a process of its own (a worker's event loop and jobs
    keep their pace); else in a thread (the CLI)."""
    shipments, events = frames if frames is not None else await history.training_frames(
        conn, until or now)
    if shipments.empty:
        raise ValueError("no shipment history to train on: load or import some first")
    kwargs: dict[str, Any] = {"trained_at": now, "max_train_rows": max_train_rows}
    if rounds is not None:
        kwargs["num_boost_round"] = rounds
    champion_row = await eta_models.champion(conn)
    champion = None if champion_row is None else (
        champion_row.version, champion_row.artefact, champion_row.data_to)
    if in_process:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            model, report, comparison = await asyncio.get_running_loop().run_in_executor(
                pool, fit_and_compare, shipments, events, kwargs, champion)
    else:
        model, report, comparison = await asyncio.to_thread(
            fit_and_compare, shipments, events, kwargs | {"progress": progress}, champion)
    version = model.version
    if await eta_models.get(conn, version) is not None:
        return TrainOutcome(version, False, "this exact model is already registered", report, {})
    metrics = _json_safe({"evaluation": report["evaluation"], "comparison": comparison})
    overall = (report.get("evaluation") or {}).get("overall", {}).get("model", {})
    await eta_models.register(
        conn, version, model.to_bytes(), model.feature_names, _json_safe(report["model"]),
        metrics, shipments["label_created_at"].min().to_pydatetime(),
        shipments["label_created_at"].max().to_pydatetime(), now,
        validation_mae_hours=overall.get("mae_hours"))
    if champion_row is None:
        await eta_models.promote(conn, version, "first model", now)
        return TrainOutcome(version, True, "first model", report, comparison, "champion")
    decision = challenger_wins(comparison, version, champion_row.version, rules)
    if decision.act:
        reason = f"holdout {decision.reason}"
        await eta_models.promote(conn, version, reason, now)
        return TrainOutcome(version, True, reason, report, comparison, "champion")
    if not decision.final:
        await eta_models.start_shadow(conn, version)
        return TrainOutcome(version, False, f"runs in shadow until judged on delivered "
                                             f"parcels ({decision.reason})", report,
                            comparison, "shadow")
    return TrainOutcome(version, False, decision.reason, report, comparison)
