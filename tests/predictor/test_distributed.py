"""Training on a Dask cluster (predictor.distributed) gives the single-machine trainer's
artefact: same features, same format, quantiles within a stated tolerance."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from predictor.features import STAGES, recent_performance, training_snapshots
from predictor.model import EtaModel
from predictor.simulator import SimulatedHistory
from predictor.train import train_model

pytest.importorskip("distributed")
pytest.importorskip("xgboost.dask")
# A cluster of two worker processes and two trainings: minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(1200)
ROUNDS = 30

# Tolerances of the parity test (4,000 simulated shipments, 30 rounds, 2 workers, 3
# partitions): each quantile's median gap to the single-machine model within 12 % of that
# quantile's median, and the p50's mean absolute error on the last fifth of the history
# (both models saw it) within 10 % of the single machine's.
MEDIAN_GAP = 0.12
MAE_GAP = 0.10


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def both(history: SimulatedHistory, client: Any) -> tuple[EtaModel, EtaModel, dict[str, Any]]:
    from predictor.distributed import FramePartitions, train_model_dask

    single, _ = train_model(history.shipments, history.events, num_boost_round=ROUNDS)
    distributed, report = train_model_dask(
        FramePartitions(history.shipments, history.events, 3), client,
        num_boost_round=ROUNDS)
    return single, EtaModel.from_bytes(distributed.to_bytes()), report


def test_partitions_build_the_same_snapshots(history: SimulatedHistory) -> None:
    """Every label and scan snapshot a partition builds is the single-machine one, value
    for value (only the one random instant between scans per shipment is drawn per
    partition)."""
    from predictor.distributed import FramePartitions

    recent = recent_performance(history.shipments)
    X, y, meta = training_snapshots(history.shipments, history.events, recent=recent)
    whole = _keyed(X, y, meta)
    seen = 0
    for chunk, events in FramePartitions(history.shipments, history.events, 3).partitions():
        part = _keyed(*training_snapshots(chunk, events, recent=recent))
        pd.testing.assert_frame_equal(part, whole.loc[part.index], check_categorical=False)
        seen += len(part)
    assert seen == len(whole)


def _keyed(X: pd.DataFrame, y: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
    keep = (meta["stage"] != STAGES[-1]).to_numpy()
    out = X.astype({c: str for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)})
    out["y"] = y
    out.index = pd.MultiIndex.from_arrays([meta["shipment_id"].astype(str), meta["as_of"]])
    return out[keep].sort_index()


def test_the_artefact_is_the_single_machine_trainers(
        both: tuple[EtaModel, EtaModel, dict[str, Any]]) -> None:
    single, distributed, report = both
    assert distributed.feature_names == single.feature_names
    assert distributed.categories == single.categories
    assert distributed.metadata["params"] == single.metadata["params"]
    assert distributed.metadata["rows"]["refit"] == single.metadata["rows"]["refit"]
    assert set(single.metadata) <= set(distributed.metadata)
    assert distributed.metadata["calibration"]["as_of"] == single.metadata["calibration"]["as_of"]
    assert set(distributed.conformal) >= {"log_q10", "log_q50", "log_q90"}
    assert report["model"]["version"] == distributed.version
    assert distributed.booster.num_boosted_rounds() == single.booster.num_boosted_rounds()


def test_quantiles_within_tolerance(history: SimulatedHistory,
                                    both: tuple[EtaModel, EtaModel, dict[str, Any]]) -> None:
    single, distributed, _ = both
    X, y, meta = training_snapshots(history.shipments, history.events)
    late = (meta["as_of"] >= meta["as_of"].quantile(0.8)).to_numpy()
    a, b = single.predict(X[late]), distributed.predict(X[late])
    for k in range(3):
        gap = np.median(np.abs(a[:, k] - b[:, k]))
        assert gap <= MEDIAN_GAP * np.median(a[:, k]), (k, gap, np.median(a[:, k]))
    mae_a, mae_b = (float(np.mean(np.abs(q[:, 1] - y[late]))) for q in (a, b))
    assert abs(mae_b - mae_a) <= MAE_GAP * mae_a, (mae_a, mae_b)


def test_refreshes_walk_the_distributed_trees(
        history: SimulatedHistory, both: tuple[EtaModel, EtaModel, dict[str, Any]]) -> None:
    """What a refresh of one shipment computes (the numpy tree walk) is what XGBoost
    predicts with the distributed booster."""
    from predictor.features import current_features

    _, distributed, _ = both
    as_of = history.shipments["label_created_at"].max() - timedelta(days=3)
    X = current_features(history.shipments.head(4), history.events,
                         as_of.to_pydatetime().astimezone(UTC), recent_performance(
                             history.shipments))
    walked, _ = distributed.predict_explained(X)
    np.testing.assert_allclose(walked, distributed.predict(X), atol=1e-3)


def test_no_history_is_a_clear_error(client: Any) -> None:
    from predictor.distributed import FramePartitions, train_model_dask

    empty = pd.DataFrame({"label_created_at": pd.Series([], dtype="datetime64[ns, UTC]")})
    with pytest.raises(ValueError, match="no shipment history"):
        train_model_dask(FramePartitions(empty, pd.DataFrame({"tracking_number": []}), 2),
                         client)


def test_partition_bounds_cover_every_label() -> None:
    from predictor.distributed import partition_bounds

    times = pd.Series(pd.date_range(datetime(2024, 1, 1, tzinfo=UTC), periods=25, freq="h"))
    bounds = partition_bounds(times, per_partition=10)
    assert len(bounds) == 3
    covered = sum(((times >= a) & (times < b)).sum() for a, b in bounds)
    assert covered == 25
