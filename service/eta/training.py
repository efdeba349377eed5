"""Training and registering a model, and the promotion gate it passes.

`parcelcast train` and the scheduled retraining (:mod:`service.eta.lifecycle`) train on the
shop's history in the database. The model handed back is refitted on every label known
(``train_model(refit=True)``), so it has seen every recent delivery: scoring it on them
would flatter it. The gate therefore scores its *holdout* booster (the same configuration
fitted before its calibration slice) against the champion on the parcels labelled after
both were trained (:func:`predictor.compare.challenger_wins`). Without enough of those
delivered yet, the new model runs in shadow on live traffic and is promoted later on its
own served ETAs (:func:`service.eta.lifecycle.review`). A model trained on a Dask cluster
(``dask_scheduler``) has no holdout booster: it always starts in shadow (or as the first
champion) and is judged on live deliveries.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable, Iterator
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
                             in_process: bool = False,
                             dask_scheduler: str | None = None) -> TrainOutcome:
    """Train on the history known at `until` (default `now`), register, and then: the first
    model becomes champion; a model that beats the champion on parcels neither was trained
    on is promoted; a model that cannot be judged yet runs in shadow; one that loses stays a
    candidate. `in_process`: train in a process of its own (a worker's event loop and jobs
    keep their pace); else in a thread (the CLI). With `dask_scheduler` (a Dask scheduler's
    address) the booster is fitted on that cluster (:func:`predictor.distributed.
    train_model_dask`), the history read one partition at a time."""
    champion_row = await eta_models.champion(conn)
    champion = None if champion_row is None else (
        champion_row.version, champion_row.artefact, champion_row.data_to)
    comparison: dict[str, dict[str, Any]]
    if dask_scheduler is not None:
        model, report, label_range = await _train_on_dask(conn, now, until or now,
                                                          dask_scheduler, rounds, progress)
        comparison = {}
    else:
        shipments, events = frames if frames is not None else await history.training_frames(
            conn, until or now)
        if shipments.empty:
            raise ValueError("no shipment history to train on: load or import some first")
        kwargs: dict[str, Any] = {"trained_at": now, "max_train_rows": max_train_rows}
        if rounds is not None:
            kwargs["num_boost_round"] = rounds
        if in_process:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")
                                     ) as pool:
                model, report, comparison = await asyncio.get_running_loop().run_in_executor(
                    pool, fit_and_compare, shipments, events, kwargs, champion)
        else:
            model, report, comparison = await asyncio.to_thread(
                fit_and_compare, shipments, events, kwargs | {"progress": progress}, champion)
        label_range = (shipments["label_created_at"].min(),
                       shipments["label_created_at"].max())
    version = model.version
    if await eta_models.get(conn, version) is not None:
        return TrainOutcome(version, False, "this exact model is already registered", report, {})
    metrics = _json_safe({"evaluation": report["evaluation"], "comparison": comparison})
    overall = (report.get("evaluation") or {}).get("overall", {}).get("model", {})
    await eta_models.register(
        conn, version, model.to_bytes(), model.feature_names, _json_safe(report["model"]),
        metrics, label_range[0].to_pydatetime(), label_range[1].to_pydatetime(), now,
        validation_mae_hours=overall.get("mae_hours"))
    if champion_row is None:
        await eta_models.promote(conn, version, "first model", now)
        return TrainOutcome(version, True, "first model", report, comparison, "champion")
    if not comparison:  # trained on a cluster: no holdout booster to judge offline
        await eta_models.start_shadow(conn, version)
        return TrainOutcome(version, False, "trained on a Dask cluster: runs in shadow until "
                            "judged on delivered parcels", report, comparison, "shadow")
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


class _DatabasePartitions:
    """The history in the database as :class:`predictor.distributed.HistoryPartitions`:
    the shipments read once, then each partition's events read on the event loop while
    the training thread waits for them."""

    def __init__(self, conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop,
                 shipments: pd.DataFrame, until: datetime) -> None:
        self._conn, self._loop, self._shipments, self._until = conn, loop, shipments, until

    def shipments(self) -> pd.DataFrame:
        return self._shipments

    def partitions(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        from predictor.distributed import partition_bounds

        labels = self._shipments["label_created_at"]
        for low, high in partition_bounds(labels):
            events = asyncio.run_coroutine_threadsafe(history.training_events(
                self._conn, self._until, labelled=(low.to_pydatetime(), high.to_pydatetime())),
                self._loop).result()
            yield self._shipments[(labels >= low) & (labels < high)], events


async def _train_on_dask(conn: asyncpg.Connection, now: datetime, until: datetime,
                         address: str, rounds: int | None, progress: Progress | None
                         ) -> tuple[EtaModel, dict[str, Any], tuple[pd.Timestamp, pd.Timestamp]]:
    """The model trained on the cluster at ``address``, its report, and the whole history's
    first and last label."""
    from predictor.distributed import train_model_dask

    try:
        import distributed  # noqa: F401
        import xgboost.dask  # noqa: F401
    except ImportError:
        raise ValueError("training on a Dask cluster needs the 'dask' extra: "
                         "pip install 'parcelcast[dask]'") from None
    shipments = await history.training_shipments(conn, until)
    if shipments.empty:
        raise ValueError("no shipment history to train on: load or import some first")
    source = _DatabasePartitions(conn, asyncio.get_running_loop(), shipments, until)

    def train() -> tuple[EtaModel, dict[str, Any]]:
        import distributed

        connect: Any = distributed.Client  # untyped
        with connect(address, timeout="30s") as client:
            return train_model_dask(source, client, num_boost_round=rounds, trained_at=now,
                                    progress=progress)

    try:
        model, report = await asyncio.to_thread(train)
    except OSError as exc:  # no scheduler answering at that address
        raise ValueError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    return model, report, (shipments["label_created_at"].min(),
                           shipments["label_created_at"].max())
