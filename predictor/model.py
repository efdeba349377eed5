"""EtaModel: one XGBoost multi-quantile booster plus everything needed to use it.

The artefact carries the booster, the ordered feature names, the integer codes of every
categorical feature, the conformal offsets and the training metadata, serialised
together (:meth:`EtaModel.to_bytes`): a model can never be served with the wrong
encoding. Predictions are hours remaining until delivery at p10 / p50 / p90.

Optionally (``metadata["base_margin"]``) the trees start from a Little's-law estimate
of the carrier network's current transit instead of a constant (:func:`base_margin`).
It is off by default: on the walk-forward backtest over every Olist month it cost
2 % p50 MAE at handover (docs/model-card.md).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import pandas as pd
import xgboost as xgb

from predictor.attributions import TreePaths
from predictor.calibration import apply_factors, is_adaptive, scan_group
from predictor.correction import has_correction, segment_keys
from predictor.features import CATEGORICAL, FEATURES

# A feature table, or one equally long array per feature (the one-row refresh).
Features: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]
QUANTILES = (0.1, 0.5, 0.9)
# Up to this many rows the numpy tree walk predicts faster than an XGBoost call.
WALK_MAX_ROWS = 4
_MAGIC = b"PCETA\x01"
class Reason(NamedTuple):
    """One reason behind a median ETA, as data: the feature it comes from (the reason code),
    the hours it adds to the median (negative: takes off), and the row's values a sentence
    may mention (carrier, service_level, destination_state, latest_status). Wording it is
    the service's job (service.eta.reasons.describe)."""

    feature: str
    hours: float
    context: dict[str, str]


@dataclass
class EtaModel:
    """A trained ETA model: booster + feature names + encodings + calibration + metadata."""

    booster: xgb.Booster
    feature_names: list[str]
    categories: dict[str, list[str]]
    # Calibration: adaptive log factors (``log_*``, see predictor.calibration), or conformal
    # (CQR) offsets in hours: p10 moves down by ``lower``, p90 up by ``upper``; optional
    # ``lower_<g>``/``upper_<g>`` per scan group g = min(n_scans, 2).
    conformal: dict[str, float] = field(default_factory=lambda: {"lower": 0.0, "upper": 0.0})
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The model's version string (from its metadata)."""
        return str(self.metadata.get("version", "unversioned"))

    def encode(self, X: Features) -> np.ndarray:
        """Feature table (or one array per feature) → float32 matrix in training column
        order (unknown category = NaN)."""
        out = np.empty((_rows(X), len(self.feature_names)), dtype=np.float32)
        for j, name in enumerate(self.feature_names):
            col = X[name]
            if name in self.categories:
                index = self._category_index(name)
                if isinstance(col, np.ndarray):
                    codes = np.array([self._category_code(name, v) for v in col], dtype=np.float64)
                elif isinstance(col.dtype, pd.CategoricalDtype):
                    # Map the (few) categories once, then gather by code.
                    lookup = np.append(index.get_indexer(col.cat.categories.astype(object)), -1)
                    codes = lookup[col.cat.codes.to_numpy()]
                else:
                    codes = index.get_indexer(col.astype(object))
                out[:, j] = np.where(codes < 0, np.nan, codes)  # unseen category = missing
            elif isinstance(col, np.ndarray):
                out[:, j] = col
            else:
                out[:, j] = col.to_numpy(dtype=np.float32, na_value=np.nan)
        return out

    def predict_raw(self, X: Features, encoded: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated booster output (n, 3), via the fast ``inplace_predict`` path
        (``encoded``: :meth:`encode` of ``X`` when the caller already has it)."""
        n = _rows(X)
        if n == 0:
            return np.empty((0, len(QUANTILES)))
        kwargs = {}
        if self.metadata.get("base_margin") in MARGINS:
            kwargs["base_margin"] = model_margin(self.metadata["base_margin"], X)
        raw = self.booster.inplace_predict(self.encode(X) if encoded is None else encoded,
                                           **kwargs)
        return np.asarray(raw, dtype=np.float64).reshape(n, len(QUANTILES))

    def predict(self, X: Features) -> np.ndarray:
        """Hours remaining until delivery, (n, 3) = p10, p50, p90 (calibrated, ordered)."""
        return self.calibrate(self.predict_raw(X), _n_scans(X), self.segments(X))

    def segments(self, X: Features) -> np.ndarray | None:
        """Correction segments of ``X``'s rows (:mod:`predictor.correction`) when the
        calibration in force corrects per segment, else None."""
        if not has_correction(self.conformal):
            return None
        return segment_keys(X)

    def calibrate(self, raw: np.ndarray, n_scans: np.ndarray | None = None,
                  segments: np.ndarray | None = None) -> np.ndarray:
        """Apply the calibration (per scan group when fitted, and per correction segment
        when fitted and ``segments`` are given), sort so quantiles never cross, and clip at
        zero hours.

        Two kinds: the adaptive factors of :mod:`predictor.calibration` (``log_*`` keys:
        multiplicative, refreshed from recent errors), or additive conformal (CQR) offsets
        in hours (``lower``/``upper``; models trained before the adaptive kind)."""
        group = None if n_scans is None else scan_group(n_scans)
        if is_adaptive(self.conformal):
            out = apply_factors(raw, group, self.conformal, segments)
        else:
            out = raw.copy()
            lower = np.full(len(out), self.conformal["lower"])
            upper = np.full(len(out), self.conformal["upper"])
            if group is not None:
                for g in range(3):
                    if f"lower_{g}" in self.conformal:
                        lower[group == g] = self.conformal[f"lower_{g}"]
                        upper[group == g] = self.conformal[f"upper_{g}"]
            out[:, 0] -= lower
            out[:, 2] += upper
        out.sort(axis=1)
        return np.clip(out, 0.0, None)

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict` as a DataFrame: eta_p10_hours, eta_p50_hours, eta_p90_hours."""
        p = self.predict(X)
        return pd.DataFrame({"eta_p10_hours": p[:, 0], "eta_p50_hours": p[:, 1],
                             "eta_p90_hours": p[:, 2]}, index=X.index)

    def contributions(self, X: Features, approx: bool = False,
                      encoded: np.ndarray | None = None) -> np.ndarray:
        """SHAP contributions (hours) of each feature to the p50 output, (n, features).

        ``approx``: Saabas attributions (path deltas) from the numpy tree walk
        (:mod:`predictor.attributions`), what serving shows on every refresh; otherwise
        XGBoost's exact TreeSHAP."""
        matrix = self.encode(X) if encoded is None else encoded
        if approx:
            return self._walk(X, matrix)[1]
        dm = xgb.DMatrix(matrix, feature_names=self.feature_names, nthread=1,
                         feature_types=self._feature_types(), enable_categorical=True)
        if self.metadata.get("base_margin") in MARGINS:
            dm.set_base_margin(model_margin(self.metadata["base_margin"], X))
        contrib = self.booster.predict(dm, pred_contribs=True)
        # Multi-quantile boosters return (n, outputs, features + bias); keep the median.
        return np.asarray(contrib)[:, QUANTILES.index(0.5), :-1]

    def explain(self, X: Features, top: int = 3, approx: bool = False,
                encoded: np.ndarray | None = None) -> list[list[Reason]]:
        """Top reasons per row (:class:`Reason`), largest effect on the median first."""
        return self._reasons(X, self.contributions(X, approx=approx, encoded=encoded), top)

    def predict_explained(self, X: Features, top: int = 3
                          ) -> tuple[np.ndarray, list[list[Reason]]]:
        """:meth:`predict` and approximate :meth:`explain` together, as a refresh needs them:
        a few rows take one numpy walk of the trees for both (no XGBoost call set-up),
        larger batches XGBoost's predictor plus the walk for the reasons."""
        matrix = self.encode(X)
        small = _rows(X) <= WALK_MAX_ROWS
        raw, contrib = self._walk(X, matrix, predict=small)
        if raw is None:
            raw = self.predict_raw(X, matrix)
        return (self.calibrate(raw, _n_scans(X), self.segments(X)),
                self._reasons(X, contrib, top))

    def _walk(self, X: Features, matrix: np.ndarray, predict: bool = False
              ) -> tuple[np.ndarray | None, np.ndarray]:
        """Median attributions, and with ``predict`` the raw (n, 3) predictions, from the
        numpy tree walk."""
        kind = self.metadata.get("base_margin")
        margin = model_margin(kind, X) if predict and kind in MARGINS else None
        return self._paths().walk(matrix, QUANTILES.index(0.5), margin, predict=predict)

    def _reasons(self, X: Features, contrib: np.ndarray, top: int) -> list[list[Reason]]:
        reasons: list[list[Reason]] = []
        # Each described column as text and each row's order, once for the whole batch.
        described = {name: [str(v) for v in np.asarray(X[name])]
                     for name in _DESCRIBED if name in X}
        order = np.argsort(-np.abs(contrib), axis=1)[:, :top]
        # The chosen hours as Python floats in one call (not one numpy scalar per reason).
        hours = np.take_along_axis(contrib, order, axis=1).tolist()
        names = self.feature_names
        for i, (row_order, row_hours) in enumerate(zip(order.tolist(), hours, strict=True)):
            row = {name: values[i] for name, values in described.items()}
            reasons.append([Reason(names[j], round(h, 2), row)
                            for j, h in zip(row_order, row_hours, strict=True)])
        return reasons

    def prob_late(self, X: pd.DataFrame, promised_hours: Sequence[float] | np.ndarray
                  ) -> np.ndarray:
        """Probability that delivery comes later than ``promised_hours`` from as-of.

        Approximation: the delivery-time CDF is piecewise linear through (p10, 0.1),
        (p50, 0.5), (p90, 0.9), with exponential tails beyond p10 and p90 whose rate
        matches the slope of the neighbouring segment (so the CDF is continuous and
        never reaches exactly 0 or 1).
        """
        return late_probability(self.predict(X), np.asarray(promised_hours, dtype=np.float64))

    def to_bytes(self) -> bytes:
        """One artefact: magic, JSON header length, JSON header, booster UBJSON bytes."""
        header = json.dumps({"feature_names": self.feature_names,
                             "categories": self.categories, "conformal": self.conformal,
                             "metadata": self.metadata}, default=str).encode()
        return _MAGIC + struct.pack("<Q", len(header)) + header + bytes(
            self.booster.save_raw("ubj"))

    @classmethod
    def from_bytes(cls, data: bytes) -> EtaModel:
        """Inverse of :meth:`to_bytes` (no pickle: JSON + XGBoost's own format)."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a Parcelcast ETA model artefact")
        offset = len(_MAGIC)
        (length,) = struct.unpack_from("<Q", data, offset)
        header = json.loads(data[offset + 8: offset + 8 + length])
        booster = xgb.Booster()
        booster.load_model(bytearray(data[offset + 8 + length:]))
        return cls(booster=booster, feature_names=list(header["feature_names"]),
                   categories={k: list(v) for k, v in header["categories"].items()},
                   conformal={k: float(v) for k, v in header["conformal"].items()},
                   metadata=dict(header["metadata"]))

    def _paths(self) -> TreePaths:
        """The trees packed for the numpy walk (once per booster)."""
        cache: dict[int, TreePaths] = self.__dict__.setdefault("_paths_cache", {})
        key = id(self.booster)
        if key not in cache:
            cache.clear()
            cache[key] = TreePaths.from_booster(self.booster)
        return cache[key]

    def _category_code(self, name: str, value: object) -> int:
        """One value's code in a categorical feature (-1 when unseen), by dict lookup."""
        cache: dict[str, dict[str, int]] = self.__dict__.setdefault("_code_cache", {})
        if name not in cache:
            cache[name] = {v: i for i, v in enumerate(self.categories[name])}
        return cache[name].get(str(value), -1)

    def _category_index(self, name: str) -> pd.Index:
        """Lookup index for one categorical feature, built once per model."""
        cache: dict[str, pd.Index] = self.__dict__.setdefault("_index_cache", {})
        if name not in cache:
            cache[name] = pd.Index(self.categories[name], dtype=object)
        return cache[name]

    def _feature_types(self) -> list[str]:
        return ["c" if f in self.categories else "q" for f in self.feature_names]


def _n_scans(X: Features) -> np.ndarray | None:
    """The scan counts the calibration groups by (None without that feature)."""
    return np.asarray(X["n_scans"], dtype=np.float64) if "n_scans" in X else None


def _rows(X: Features) -> int:
    return len(X) if isinstance(X, pd.DataFrame) else len(next(iter(X.values())))


# The row values that explanations' sentences mention.
_DESCRIBED = ("carrier", "service_level", "destination_state", "latest_status")
MARGIN_NAME = "littles_law_v1"
MARGINS = (MARGIN_NAME,)
# The feature columns each margin reads.
MARGIN_COLUMNS = {MARGIN_NAME: ("carrier_backlog_days", "carrier_transit_median_14d",
                                "hours_since_handover")}
_FALLBACK_TRANSIT_HOURS = 72.0


def base_margin(X: Features) -> np.ndarray:
    """Starting point the trees correct, (n, 3) hours: Little's-law transit of the
    carrier's network right now (backlog days × 24, else the 14-day median, else 72 h)
    minus the time already in transit, floored at zero.

    Trees cannot extrapolate: when a peak pushes congestion beyond anything in the
    training period, a tree-only model stays flat. Anchoring on the live backlog lets
    the forecast move with it, while the trees learn lane, service and stage effects.
    """
    base = np.asarray(X["carrier_backlog_days"], dtype=np.float64) * 24.0
    base = np.where(np.isnan(base), np.asarray(X["carrier_transit_median_14d"], dtype=np.float64),
                    base)
    base = np.where(np.isnan(base), _FALLBACK_TRANSIT_HOURS, base)
    elapsed = np.nan_to_num(np.asarray(X["hours_since_handover"], dtype=np.float64))
    margin = np.maximum(base - elapsed, 0.0)
    return np.repeat(margin[:, None], len(QUANTILES), axis=1)


def model_margin(kind: str, X: Features) -> np.ndarray:
    """The base margin named ``kind`` (one of :data:`MARGINS`) for ``X``."""
    if kind != MARGIN_NAME:
        raise ValueError(f"unknown base margin {kind!r}")
    return base_margin(X)


def category_codes(X: pd.DataFrame) -> dict[str, list[str]]:
    """Stable category lists (sorted) for the categorical features of a training table."""
    return {c: sorted(map(str, pd.unique(X[c].astype(str)))) for c in CATEGORICAL
            if c in X.columns}


def feature_types(feature_names: Sequence[str]) -> list[str]:
    """XGBoost feature types ('c' categorical, 'q' numeric) for ``feature_names``."""
    return ["c" if f in CATEGORICAL else "q" for f in feature_names]


def default_feature_names() -> list[str]:
    """Feature order used for new models."""
    return list(FEATURES)


def late_probability(quantiles: np.ndarray, promised_hours: np.ndarray) -> np.ndarray:
    """P(delivery > promised_hours) from (p10, p50, p90) rows; see EtaModel.prob_late."""
    p10, p50, p90 = (quantiles[:, k] for k in range(3))
    h = np.broadcast_to(promised_hours, p50.shape).astype(float)
    lo_w = np.maximum(p50 - p10, 1e-6)
    hi_w = np.maximum(p90 - p50, 1e-6)
    cdf = np.where(h < p50, 0.1 + 0.4 * (h - p10) / lo_w, 0.5 + 0.4 * (h - p50) / hi_w)
    below = 0.1 * np.exp(np.minimum(4.0 * (h - p10) / lo_w, 0.0))
    above = 1.0 - 0.1 * np.exp(-np.maximum(4.0 * (h - p90) / hi_w, 0.0))
    cdf = np.where(h < p10, below, np.where(h > p90, above, cdf))
    return np.clip(1.0 - cdf, 0.0, 1.0)
