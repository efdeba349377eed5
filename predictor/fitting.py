"""Fitting the booster: the one code path behind :func:`predictor.train.train_model` and
every retrain of the walk-forward backtest (:mod:`predictor.backtest`).

What a fit is given is a snapshot table (:func:`predictor.features.training_snapshots`)
and the rows to learn from; what it may add is decided here and recorded in the model's
metadata, so serving (and recalibration) apply exactly what training assumed:

* ``base_margin``: start the trees from the Little's-law backlog estimate
  (:data:`predictor.model.MARGINS`) instead of a constant;
* ``half_life_days``: recency weighting, a training row's weight halves every
  ``half_life_days`` of age (age = fit instant − the parcel's label time);
* ``correction``: the calibration also corrects per segment
  (:mod:`predictor.correction`); recorded as ``metadata["correction"]``;
* ``min_label_age_days``: leave out parcels labelled in the last N days before the fit
  instant. Of those, only the fast ones are delivered yet: learning from them pulls the
  quantiles down, and the calibration cohort (the snapshots of the last weeks) would be
  made of parcels the booster was fitted on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from predictor.calibration import CORRECTION
from predictor.features import CATEGORICAL, FEATURES
from predictor.model import (
    MARGIN_COLUMNS,
    MARGINS,
    EtaModel,
    category_codes,
    feature_types,
    model_margin,
)
from predictor.spill import SpilledTable, take_rows

Progress = Callable[[str, float], None]
ENCODE_CHUNK = 250_000
_DAY_S = 86_400.0


@dataclass(frozen=True)
class FitOptions:
    """The modelling choices a fit makes beyond XGBoost's own parameters (defaults: what
    the walk-forward backtest chose, see docs/model-card.md)."""

    base_margin: str | None = None  # one of predictor.model.MARGINS, or None
    half_life_days: float | None = None
    correction: bool = True
    features: Sequence[str] = FEATURES
    min_label_age_days: float = 14.0

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary (for metadata and reports)."""
        return {"base_margin": self.base_margin, "half_life_days": self.half_life_days,
                "correction": self.correction, "features": list(self.features),
                "min_label_age_days": self.min_label_age_days}

    def old_enough(self, label_s: np.ndarray, at_s: float) -> np.ndarray:
        """Which rows (by their parcel's label instant) a fit at ``at_s`` may learn from."""
        return np.asarray(label_s, dtype=float) < at_s - self.min_label_age_days * _DAY_S


def recency_weights(label_s: np.ndarray, at_s: float, half_life_days: float | None
                    ) -> np.ndarray | None:
    """Row weights halving every ``half_life_days`` of age at ``at_s`` (None: unweighted),
    normalised to mean 1 so ``min_child_weight`` keeps its meaning."""
    if half_life_days is None:
        return None
    age_days = np.maximum(at_s - np.asarray(label_s, dtype=float), 0.0) / _DAY_S
    w = np.exp(-np.log(2.0) * age_days / float(half_life_days))
    weights: np.ndarray = w / w.mean() if len(w) else w
    return weights


@dataclass
class PreparedFit:
    """A fit's training matrix, built (:func:`prepare_fit`) but not yet boosted
    (:func:`train_prepared`): the snapshot table it was read from can be freed in between,
    so the table and the booster's training state are never held at once."""

    model: EtaModel  # uncalibrated, no trees yet: names, categories, fit metadata
    matrix: xgb.DMatrix


def fit_booster(X: pd.DataFrame, y: np.ndarray, rows: np.ndarray, *,
                params: Mapping[str, Any], rounds: int, options: FitOptions = FitOptions(),
                weights: np.ndarray | None = None, progress: Progress | None = None
                ) -> EtaModel:
    """An :class:`EtaModel` (uncalibrated: empty conformal offsets) fitted on ``X.iloc[rows]``.

    ``params``: XGBoost parameters (``quantile_alpha`` included); ``weights``: one per row
    of ``rows``. :func:`prepare_fit` then :func:`train_prepared`."""
    prepared = prepare_fit(X, y, rows, params=params, options=options, weights=weights)
    return train_prepared(prepared, params=params, rounds=rounds, progress=progress)


def prepare_fit(X: pd.DataFrame | SpilledTable, y: np.ndarray, rows: np.ndarray, *,
                params: Mapping[str, Any], options: FitOptions = FitOptions(),
                weights: np.ndarray | None = None) -> PreparedFit:
    """The model's encodings and the training matrix of ``X.iloc[rows]``; nothing in the
    result refers to ``X`` or ``y``. The float32 matrix is filled chunk by chunk without
    copying the rows' table (``X`` may wait on disk: :class:`predictor.spill.SpilledTable`)."""
    names = [f for f in FEATURES if f in set(options.features)]
    model = EtaModel(booster=xgb.Booster(), feature_names=names,
                     categories=present_categories(X, rows))
    if options.base_margin is not None:
        if options.base_margin not in MARGINS:
            raise ValueError(f"unknown base margin {options.base_margin!r}")
        model.metadata["base_margin"] = options.base_margin
    if options.correction:
        model.metadata["correction"] = CORRECTION
    max_bin = params.get("max_bin", 256)
    if len(rows) > ENCODE_CHUNK:
        # Memory: XGBoost reads the rows chunk by chunk (twice: sketch, then bins), so no
        # float32 copy of every training row is ever held beside its binned matrix.
        dtrain: xgb.DMatrix = xgb.QuantileDMatrix(
            RowChunks(model, X, y, rows, weights, options.base_margin, ENCODE_CHUNK),
            enable_categorical=True, max_bin=max_bin)
    else:
        matrix = encode_rows(model, X, rows)
        margin = (None if options.base_margin is None else model_margin(
            options.base_margin,
            {c: v.to_numpy() for c, v in take_rows(
                X, rows, MARGIN_COLUMNS[options.base_margin]).items()}))
        dtrain = xgb.QuantileDMatrix(matrix, label=y[rows], weight=weights,
                                     base_margin=margin, feature_names=names,
                                     feature_types=feature_types(names),
                                     enable_categorical=True, max_bin=max_bin)
        del matrix, margin
    return PreparedFit(model, dtrain)


def train_prepared(prepared: PreparedFit, *, params: Mapping[str, Any], rounds: int,
                   progress: Progress | None = None) -> EtaModel:
    """Boost ``rounds`` rounds on a :func:`prepare_fit` matrix; the model it prepared,
    with its trees."""
    merged = dict(params)
    merged["quantile_alpha"] = np.asarray(merged["quantile_alpha"], dtype=float)
    callbacks = [_ProgressCallback(progress, rounds)] if progress is not None else None
    model = prepared.model
    model.booster = xgb.train(merged, prepared.matrix, rounds, callbacks=callbacks)
    return model


def present_categories(X: pd.DataFrame | SpilledTable, rows: np.ndarray) -> dict[str, list[str]]:
    """:func:`~predictor.model.category_codes` of ``X.iloc[rows]`` without copying those
    rows."""
    out: dict[str, list[str]] = {}
    for c in CATEGORICAL:
        if c not in X.columns:
            continue
        col = X[c]
        if not isinstance(col.dtype, pd.CategoricalDtype):
            out |= category_codes(take_rows(X, rows, [c]))
            continue
        used = np.unique(col.cat.codes.to_numpy()[rows])
        names = np.append(col.cat.categories.astype(str).to_numpy(dtype=object), "nan")
        out[c] = sorted(map(str, names[used]))
    return out


def encode_rows(model: EtaModel, X: pd.DataFrame | SpilledTable, rows: np.ndarray) -> np.ndarray:
    """``model.encode(X.iloc[rows])``, filled ENCODE_CHUNK rows at a time."""
    out = np.empty((len(rows), len(model.feature_names)), dtype=np.float32)
    for lo in range(0, len(rows), ENCODE_CHUNK):
        out[lo:lo + ENCODE_CHUNK] = model.encode(take_rows(X, rows[lo:lo + ENCODE_CHUNK]))
    return out


class RowChunks(xgb.DataIter):
    """``X.iloc[rows]`` for XGBoost ENCODE_CHUNK rows at a time, encoded as ``model`` does
    (label, weight and base margin alongside): a :class:`xgboost.QuantileDMatrix` built from
    it never needs the whole float32 matrix at once."""

    def __init__(self, model: EtaModel, X: pd.DataFrame | SpilledTable, y: np.ndarray, rows: np.ndarray,
                 weights: np.ndarray | None, margin: str | None,
                 chunk: int = ENCODE_CHUNK) -> None:
        self._model, self._X, self._y, self._rows = model, X, y, rows
        self._weights, self._margin, self._chunk, self._lo = weights, margin, chunk, 0
        super().__init__(release_data=True)

    def next(self, input_data: Callable[..., Any]) -> bool:
        if self._lo >= len(self._rows):
            return False
        lo, hi = self._lo, self._lo + self._chunk
        sel = self._rows[lo:hi]
        part = take_rows(self._X, sel)
        names = self._model.feature_names
        input_data(data=self._model.encode(part), label=self._y[sel],
                   weight=None if self._weights is None else self._weights[lo:hi],
                   base_margin=None if self._margin is None else model_margin(
                       self._margin, {c: part[c].to_numpy() for c in MARGIN_COLUMNS[self._margin]}),
                   feature_names=names, feature_types=feature_types(names))
        self._lo = hi
        return True

    def reset(self) -> None:
        self._lo = 0


def raw_rows(model: EtaModel, X: pd.DataFrame | SpilledTable, rows: np.ndarray | None = None) -> np.ndarray:
    """``model.predict_raw(X.iloc[rows])``, ENCODE_CHUNK rows at a time."""
    idx = np.arange(len(X)) if rows is None else rows
    out = np.empty((len(idx), 3))
    for lo in range(0, len(idx), ENCODE_CHUNK):
        part = take_rows(X, idx[lo:lo + ENCODE_CHUNK])
        out[lo:lo + ENCODE_CHUNK] = model.predict_raw(part)
    return out


class _ProgressCallback(xgb.callback.TrainingCallback):
    """Forwards boosting progress (10 % → 90 % of the whole run) to a callable."""

    def __init__(self, progress: Progress, rounds: int) -> None:
        super().__init__()
        self._progress = progress
        self._rounds = max(rounds, 1)

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        if epoch % 10 == 0 or epoch + 1 == self._rounds:
            self._progress("boosting", 0.1 + 0.8 * (epoch + 1) / self._rounds)
        return False
