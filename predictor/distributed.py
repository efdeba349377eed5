"""Training past one machine: XGBoost's own distributed training on a Dask cluster.

:func:`train_model_dask` produces the artefact :func:`predictor.train.train_model` hands
back for deployment (``refit=True``): one multi-quantile booster fitted on every snapshot
of every parcel old enough (:class:`predictor.fitting.FitOptions`), the same features,
category codes and parameters, calibrated as of the last label by
:func:`predictor.calibration.recalibrate`, in the same :class:`~predictor.model.EtaModel`
format (so the registry, the refresh jobs and the numpy tree walk load it as any other).

What is held where:

* the client holds one row per shipment (the attributes and the recent-performance
  index every snapshot's features read), never the scans nor the snapshots;
* the history arrives as partitions of shipments with their scans
  (:class:`HistoryPartitions`: frames split in memory, or the database read one label
  range at a time); each partition is sent to the cluster as soon as it is read and
  dropped by the client, a worker builds its snapshots and its float32 matrix, and
  :class:`xgboost.dask.DaskQuantileDMatrix` bins them where they are;
* :func:`xgboost.dask.train` fits the booster across the workers (Rabit all-reduce of
  the gradient histograms: every worker sees only its partitions);
* calibration reads only the last ``WINDOW_DAYS`` (plus 14 days of deliveries), which
  the workers hand back.

Unlike :func:`~predictor.train.train_model`, it does not fit a second, out-of-sample
booster for the report: the comparison with the champion (``parcelcast train``) scores it
on the test period as it does every challenger, and the walk-forward backtest
(docs/model-card.md) stays the judge of the modelling choices. Rows are not subsampled
(``max_train_rows``): the point is to learn from all of them.

Parity: on the same history the features are the same (the label and scan snapshots are
identical; the one random instant between scans per shipment is drawn per partition) and
the quantiles agree within the tolerance ``tests/predictor/test_distributed.py`` states.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xgboost as xgb

from predictor.calibration import CORRECTION, WINDOW_DAYS, recalibrate
from predictor.drift import reference_histograms
from predictor.features import (
    CATEGORICAL,
    FEATURES,
    recent_performance,
    shipment_attributes,
    training_snapshots,
)
from predictor.fitting import FitOptions, encode_rows, present_categories
from predictor.model import (
    MARGIN_COLUMNS,
    MARGIN_NAME,
    MARGINS,
    EtaModel,
    feature_types,
    model_margin,
)
from predictor.recent import RecentPerformance

Progress = Callable[[str, float], None]
_DAY_S = 86_400.0
# Deliveries the recent-performance features look back over, beyond the cohort window.
_LOOKBACK_DAYS = 14.0
DEFAULT_PARTITION_SHIPMENTS = 100_000


class HistoryPartitions(Protocol):
    """A shop's history in pieces: every shipment at once (one row each, the small part),
    then the shipments again in partitions, each with its own scans."""

    def shipments(self) -> pd.DataFrame:
        ...

    def partitions(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        ...


class FramePartitions:
    """Frames already in memory, split into ``count`` partitions by label time (tests,
    benchmarks; a cluster reading the database uses ``service.eta.training``'s source)."""

    def __init__(self, shipments: pd.DataFrame, events: pd.DataFrame, count: int) -> None:
        self._shipments, self._events, self._count = shipments, events, max(int(count), 1)

    def shipments(self) -> pd.DataFrame:
        return self._shipments

    def partitions(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        s = self._shipments
        order = np.argsort(pd.to_datetime(s["label_created_at"], utc=True).to_numpy(),
                           kind="stable")
        numbers = self._events["tracking_number"].astype(str).to_numpy()
        for part in np.array_split(order, self._count):
            chunk = s.iloc[np.sort(part)]
            keep = np.isin(numbers, chunk["tracking_number"].astype(str).to_numpy())
            yield chunk, self._events.iloc[np.flatnonzero(keep)]


def partition_bounds(label_times: pd.Series, per_partition: int = DEFAULT_PARTITION_SHIPMENTS
                     ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Half-open label-time ranges of about ``per_partition`` shipments each, covering every
    label (the database source reads one range at a time)."""
    times = pd.to_datetime(label_times, utc=True).dropna().sort_values().reset_index(drop=True)
    if len(times) == 0:
        return []
    edges = [times[i] for i in range(0, len(times), per_partition)]
    edges.append(times.iloc[-1] + pd.Timedelta(microseconds=1))
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def train_model_dask(source: HistoryPartitions, client: Any, *,
                     params: Mapping[str, Any] | None = None, num_boost_round: int | None = None,
                     options: FitOptions | None = None, trained_at: datetime | None = None,
                     progress: Progress | None = None) -> tuple[EtaModel, dict[str, Any]]:
    """Train the deployable :class:`EtaModel` on a Dask cluster (``client``: a
    :class:`distributed.Client`, local or remote). Returns the model and a report with the
    same ``model`` section as :func:`predictor.train.train_model`'s (``evaluation`` holds
    only the cutoff the comparison with the champion uses)."""
    from dask import array
    from xgboost import dask as dxgb

    da: Any = array  # untyped

    from predictor.train import DEFAULT_PARAMS, DEFAULT_ROUNDS

    report_progress = progress or (lambda _msg, _frac: None)
    report_progress("reading shipments", 0.0)
    merged = {**DEFAULT_PARAMS, **(params or {})}
    rounds = int(merged.pop("num_boost_round", num_boost_round or DEFAULT_ROUNDS))
    opts = options or FitOptions()
    if "base_margin" in merged:
        legacy = merged.pop("base_margin")
        opts = replace(opts, base_margin=(MARGIN_NAME if legacy is True else legacy or None))
    if opts.base_margin is not None and opts.base_margin not in MARGINS:
        raise ValueError(f"unknown base margin {opts.base_margin!r}")
    shipments = source.shipments()
    if shipments.empty:
        raise ValueError("no shipment history to train on")
    attrs = shipment_attributes(shipments)
    recent = recent_performance(shipments, attrs)
    label_s = attrs["label_s"].to_numpy()
    first = pd.Timestamp(np.nanmin(label_s), unit="s", tz="UTC")
    last = pd.Timestamp(np.nanmax(label_s), unit="s", tz="UTC")
    cut = pd.Timestamp(np.nanquantile(label_s, 0.8), unit="s", tz="UTC")
    del attrs, shipments
    recent_future = client.scatter(recent, broadcast=True)
    del recent
    window_from = last.timestamp() - (WINDOW_DAYS + _LOOKBACK_DAYS) * _DAY_S

    report_progress("building snapshots on the cluster", 0.05)
    snapshots = []
    for chunk, events in source.partitions():
        parts = client.scatter([chunk, events])
        snapshots.append(client.submit(_partition_snapshots, *parts, recent_future,
                                       last.timestamp(), opts, window_from, pure=False))
        del chunk, events, parts
    if not snapshots:
        raise ValueError("no shipment history to train on")
    summaries = client.gather([client.submit(_summary, s, opts.half_life_days,
                                             last.timestamp()) for s in snapshots])
    n_rows = int(sum(s["rows"] for s in summaries))
    if n_rows == 0:
        raise ValueError("no delivered shipment old enough to train on")
    names = [f for f in FEATURES if f in set(opts.features)]
    categories: dict[str, list[str]] = {}
    for c in CATEGORICAL:
        values = set().union(*(s["categories"].get(c, []) for s in summaries))
        if values:
            categories[c] = sorted(values)
    stub = EtaModel(booster=xgb.Booster(), feature_names=names, categories=categories)
    if opts.base_margin is not None:
        stub.metadata["base_margin"] = opts.base_margin
    if opts.correction:
        stub.metadata["correction"] = CORRECTION
    mean_weight = (sum(s["weight_sum"] for s in summaries) / n_rows
                   if opts.half_life_days is not None else None)

    report_progress("encoding on the cluster", 0.1)
    pieces: dict[str, list[Any]] = {"data": [], "label": [], "weight": [], "base_margin": []}
    for snap, summary in zip(snapshots, summaries, strict=True):
        n = summary["rows"]
        if n == 0:
            continue
        encoded = client.submit(_encode, snap, names, categories, opts, last.timestamp(),
                                mean_weight, pure=False)
        for key in pieces:
            if key == "weight" and mean_weight is None:
                continue
            if key == "base_margin" and opts.base_margin is None:
                continue
            shape: tuple[int, ...] = {"data": (n, len(names)), "label": (n,), "weight": (n,),
                                      "base_margin": (n, 3)}[key]
            item = client.submit(_item, encoded, key, pure=False)
            pieces[key].append(da.from_delayed(item, shape=shape,
                                               dtype=np.float32 if key == "data" else float))
    windows = client.gather([client.submit(_window, s) for s in snapshots])
    del snapshots
    arrays = {k: da.concatenate(v) for k, v in pieces.items() if v}
    dtrain = dxgb.DaskQuantileDMatrix(
        client, arrays["data"], arrays["label"], weight=arrays.get("weight"),
        base_margin=arrays.get("base_margin"), feature_names=names,
        feature_types=feature_types(names), enable_categorical=True,
        max_bin=merged.get("max_bin", 256))
    report_progress("boosting on the cluster", 0.2)
    fit_params = dict(merged)
    fit_params["quantile_alpha"] = np.asarray(fit_params["quantile_alpha"], dtype=float)
    output = dxgb.train(client, fit_params, dtrain, num_boost_round=rounds)
    del dtrain, arrays, pieces
    model = replace(stub, booster=output["booster"], metadata=dict(stub.metadata))

    report_progress("calibrating", 0.9)
    window_shipments = pd.concat([w[0] for w in windows], ignore_index=True)
    window_events = pd.concat([w[1] for w in windows], ignore_index=True)
    del windows
    recalibrate(model, window_shipments, window_events, last.floor("us").to_pydatetime())
    # The live drift check's reference (predictor.drift): the training set's most recent
    # weeks, the part of it held here (the rest stays on the cluster).
    window_attrs = shipment_attributes(window_shipments)
    X_window, _, _ = training_snapshots(
        window_shipments, window_events,
        recent=recent_performance(window_shipments, window_attrs), censor_at=last.timestamp())
    drift_reference = reference_histograms(X_window)
    del X_window, window_attrs
    stamp = pd.Timestamp(trained_at) if trained_at is not None else last
    digest = hashlib.sha256(model.booster.save_raw("ubj")).hexdigest()[:8]
    model.metadata = model.metadata | {
        "version": f"eta-{stamp:%Y%m%dT%H%M%S}-{digest}",
        "trained_at": stamp.isoformat(),
        "data_range": {"from": first.isoformat(), "to": last.isoformat(),
                       "cutoff": cut.isoformat(), "trained_through": last.isoformat()},
        "rows": {"refit": n_rows, "partitions": len(summaries)},
        "fit_options": opts.describe() | {"refit": True, "distributed": "xgboost.dask"},
        "params": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                   for k, v in merged.items()} | {"num_boost_round": rounds},
        "metrics": {},
        "categorical": list(CATEGORICAL),
        "drift_reference": drift_reference,
    }
    model.metadata.setdefault("calibration", None)
    report_progress("done", 1.0)
    report = {"model": {k: model.metadata[k] for k in ("version", "trained_at", "data_range",
                                                       "rows", "params", "calibration",
                                                       "fit_options")},
              "conformal": model.conformal, "evaluation": {"cutoff": cut.isoformat()}}
    return model, report


# Tasks run on the workers: plain functions of their inputs (no client, no globals).

def _partition_snapshots(shipments: pd.DataFrame, events: pd.DataFrame,
                         recent: RecentPerformance, last_s: float, opts: FitOptions,
                         window_from: float) -> dict[str, Any]:
    """One partition's training snapshots (the rows a refit at ``last_s`` learns from)
    and the part of it the calibration window needs."""
    attrs = shipment_attributes(shipments)
    delivered = attrs["delivered_s"].to_numpy()
    in_window = ~(delivered < window_from) & (attrs["label_s"].to_numpy() < last_s)
    window_ship = shipments.iloc[np.flatnonzero(in_window)]
    numbers = set(window_ship["tracking_number"].astype(str))
    window_events = events.iloc[np.flatnonzero(
        events["tracking_number"].astype(str).isin(numbers).to_numpy())]
    X, y, meta = training_snapshots(shipments, events, recent=recent, attributes=attrs)
    index = pd.Index(attrs["shipment_id"])
    snap_label = attrs["label_s"].to_numpy()[index.get_indexer(meta["shipment_id"])]
    rows = np.flatnonzero(opts.old_enough(snap_label, last_s))
    return {"X": X, "y": y, "rows": rows, "label_s": snap_label[rows],
            "window": (window_ship, window_events)}


def _summary(snap: Mapping[str, Any], half_life_days: float | None, last_s: float
             ) -> dict[str, Any]:
    rows = snap["rows"]
    weight_sum = 0.0
    if half_life_days is not None:
        weight_sum = float(_raw_weights(snap["label_s"], last_s, half_life_days).sum())
    return {"rows": int(len(rows)), "weight_sum": weight_sum,
            "categories": present_categories(snap["X"], rows)}


def _raw_weights(label_s: np.ndarray, at_s: float, half_life_days: float) -> np.ndarray:
    """:func:`predictor.fitting.recency_weights` before its normalisation (the mean is
    taken over every partition)."""
    age_days = np.maximum(at_s - np.asarray(label_s, dtype=float), 0.0) / _DAY_S
    weights: np.ndarray = np.exp(-np.log(2.0) * age_days / float(half_life_days))
    return weights


def _encode(snap: Mapping[str, Any], names: list[str], categories: dict[str, list[str]],
            opts: FitOptions, last_s: float, mean_weight: float | None
            ) -> dict[str, np.ndarray | None]:
    X, rows = snap["X"], snap["rows"]
    stub = EtaModel(booster=xgb.Booster(), feature_names=names, categories=categories)
    out: dict[str, np.ndarray | None] = {
        "data": encode_rows(stub, X, rows), "label": np.asarray(snap["y"])[rows],
        "weight": None, "base_margin": None}
    if mean_weight is not None and opts.half_life_days is not None:
        out["weight"] = _raw_weights(snap["label_s"], last_s, opts.half_life_days) / mean_weight
    if opts.base_margin is not None:
        out["base_margin"] = model_margin(
            opts.base_margin, {c: X[c].to_numpy()[rows] for c in MARGIN_COLUMNS[opts.base_margin]})
    return out


def _item(encoded: Mapping[str, np.ndarray | None], key: str) -> np.ndarray | None:
    return encoded[key]


def _window(snap: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    window: tuple[pd.DataFrame, pd.DataFrame] = snap["window"]
    return window
