"""`parcelcast train`: train on the shop's history in the database, evaluate, register, and
promote only when the new model beats the champion on the same evaluation data."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
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
                             max_train_rows: int | None = None,
                             dask_scheduler: str | None = None) -> TrainOutcome:
    """Train, evaluate against the champion, register, promote if better. With
    ``dask_scheduler`` (a Dask scheduler's address) the booster is fitted on that cluster
    (:func:`predictor.distributed.train_model_dask`): the history is read one partition
    at a time, and only the test period is read whole for the comparison."""
    if dask_scheduler is not None:
        model, report, shipments, events, label_range = await _train_on_dask(
            conn, now, until or now, dask_scheduler, rounds, progress)
    else:
        shipments, events = frames if frames is not None else await history.training_frames(
            conn, until or now)
        if shipments.empty:
            raise ValueError("no shipment history to train on: load or import some first")
        kwargs: dict[str, Any] = {"progress": progress, "trained_at": now,
                                  "max_train_rows": max_train_rows}
        if rounds is not None:
            kwargs["num_boost_round"] = rounds
        model, report = await asyncio.to_thread(train_model, shipments, events, **kwargs)
        label_range = (shipments["label_created_at"].min(), shipments["label_created_at"].max())
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
        metrics, label_range[0].to_pydatetime(), label_range[1].to_pydatetime(), now)
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
                         ) -> tuple[EtaModel, dict[str, Any], pd.DataFrame, pd.DataFrame,
                                    tuple[pd.Timestamp, pd.Timestamp]]:
    """The model trained on the cluster at ``address``, its report, the history the
    comparison with the champion scores on (the test period and the weeks its
    calibration looks back over), and the whole history's first and last label."""
    from predictor.calibration import WINDOW_DAYS
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
    cutoff = pd.Timestamp(report["evaluation"]["cutoff"])
    since = cutoff - pd.Timedelta(days=WINDOW_DAYS + 14)
    test_shipments, events = await history.training_frames(conn, until,
                                                           since.to_pydatetime())
    return model, report, test_shipments, events, (shipments["label_created_at"].min(),
                                                   shipments["label_created_at"].max())
