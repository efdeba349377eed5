"""Segments whose errors drift on their own, and the per-segment correction of the window.

A multiplier per scan group (:mod:`predictor.calibration`) widens or narrows every window
alike; it cannot fix an error that depends on a feature whose meaning moved. On Olist the
shop started promising short leads for fast routes and long leads for slow ones, so a
booster that learnt "lead → transit" on older months is wrong in opposite directions for
short and long leads while the average error looks fine. The correction here is a second
set of log factors, one per **segment**, fitted on the same cohort of recent ETA snapshots
(Kaplan–Meier, censored in-flight parcels included) on what is left of the errors *after*
the group factors, and shrunk towards zero when a segment has little news.

Segments: ``c:<carrier>|<service>`` where the carrier is known (a carrier's network is
what drifts), else ``l:<bucket>`` of the promised lead in business days (where there is no
carrier, the promise lead stands in for the route), each split by scan group
(``|g0``, ``|g1``, ``|g2``: 0, 1, 2+ scans so far). A segment's error is not the same before
and after the handover: one factor per segment for every stage widened the handover
window of the simulator where it needed narrowing (docs/model-card.md, step 10).
A calibration fitted before the split (keys without ``|g<n>``) still applies to every
group of its segment.

The factors live in the same flat ``{name: float}`` dict as the group factors (keys
``seg|<segment>|log_q10`` etc.), so the service stores and applies them as it already does;
a model whose calibration has none of these keys predicts exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

UNKNOWN = "unknown"
# Promised lead (business days from label to promised date) bucket edges.
LEAD_EDGES = (3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 28, 32, 40)
PREFIX = "seg|"
NAMES = ("log_q10", "log_q50", "log_q90")
# A segment needs this many known deliveries in the cohort to get a factor of its own;
# its factor is shrunk by k / (k + SHRINK_EVENTS) (k: known deliveries).
MIN_SEGMENT_EVENTS = 30
SHRINK_EVENTS = 50.0
# The factor may not move a quantile by more than this in log space (a bad week must not
# turn a 3-day window into a month).
MAX_ABS_FACTOR = 1.0


_GROUP_SUFFIX = re.compile(r"\|g[0-9]$")
_EDGES = np.asarray(LEAD_EDGES, dtype=float)
_LABELS = np.array([f"lt{LEAD_EDGES[0]}"]
                   + [f"{a}-{b}" for a, b in zip(LEAD_EDGES, LEAD_EDGES[1:], strict=False)]
                   + [f"{LEAD_EDGES[-1]}+", "none"], dtype=object)


def lead_bucket(lead_bdays: np.ndarray) -> np.ndarray:
    """Promise-lead bucket labels ('lt3', '3-5', ..., '40+', 'none' without a promise)."""
    lead = np.asarray(lead_bdays, dtype=float)
    idx = np.searchsorted(_EDGES, np.nan_to_num(lead, nan=0.0), side="right")
    return _LABELS[np.where(np.isnan(lead), len(_LABELS) - 1, idx)]


def scan_group(n_scans: np.ndarray) -> np.ndarray:
    """0, 1 or 2 (= 2 or more) carrier scans seen so far."""
    return np.minimum(np.nan_to_num(np.asarray(n_scans, dtype=float)), 2).astype(int)


def route_keys(X: Mapping[str, np.ndarray] | object) -> np.ndarray:
    """A parcel's route as the correction sees it, one per row of a feature table (or one
    array per feature): carrier|service where the carrier is known, else the promise-lead
    bucket (also the backtest's recent-median baselines' segment)."""
    carrier = _text(X["carrier"])  # type: ignore[index]
    service = _text(X["service_level"])  # type: ignore[index]
    bucket = lead_bucket(np.asarray(X["promised_lead_bdays"], dtype=float))  # type: ignore[index]
    return np.array([f"c:{c}|{s}" if c != UNKNOWN else f"l:{b}"
                     for c, s, b in zip(carrier, service, bucket, strict=True)], dtype=object)


def segment_keys(X: Mapping[str, np.ndarray] | object) -> np.ndarray:
    """The correction segment of each row: its :func:`route_keys` and its scan group."""
    group = scan_group(np.asarray(X["n_scans"], dtype=float)).tolist()  # type: ignore[index]
    return np.array([f"{r}|g{g}" for r, g in zip(route_keys(X), group, strict=True)],
                    dtype=object)


def has_correction(conformal: Mapping[str, float]) -> bool:
    """True when a calibration carries per-segment factors."""
    return any(k.startswith(PREFIX) for k in conformal)


def segment_factors(segments: np.ndarray, conformal: Mapping[str, float]) -> np.ndarray:
    """(n, 3) log factors per row's segment (0 for a segment without its own)."""
    out = np.zeros((len(segments), 3))
    if not has_correction(conformal):
        return out
    if len(segments) <= 8:  # a refresh: plain lookups
        for i, seg in enumerate(segments):
            out[i] = _lookup(str(seg), conformal)
        return out
    uniq, inverse = np.unique(np.asarray(segments, dtype=object).astype(str),
                              return_inverse=True)
    table = np.array([_lookup(u, conformal) for u in uniq],
                     dtype=float).reshape(len(uniq), 3)
    return table[inverse.reshape(-1)]


def _lookup(segment: str, conformal: Mapping[str, float]) -> list[float]:
    """A segment's three factors; a calibration fitted before the scan-group split keys
    them without the ``|g<n>`` suffix (0 where neither is there)."""
    if f"{PREFIX}{segment}|{NAMES[1]}" not in conformal and _GROUP_SUFFIX.search(segment):
        segment = _GROUP_SUFFIX.sub("", segment)
    return [conformal.get(f"{PREFIX}{segment}|{n}", 0.0) for n in NAMES]


def fit_segment_factors(residual: np.ndarray, known: np.ndarray, segments: np.ndarray,
                        previous: Mapping[str, float], levels: tuple[float, ...],
                        km_quantiles: Callable[[np.ndarray, np.ndarray, tuple[float, ...],
                                                np.ndarray | None], np.ndarray],
                        weights: np.ndarray | None = None) -> dict[str, float]:
    """Per-segment log factors from the cohort's residual log errors ``residual`` (n, 3),
    right-censored where ``known`` is False (``weights``: the cohort's recency weights, None:
    flat), shrunk towards zero by the segment's news. A
    segment (or a tail of one) with too little news keeps its previous factor, as a scan
    group does."""
    out = {k: float(v) for k, v in previous.items() if k.startswith(PREFIX)}
    seg = np.asarray(segments, dtype=object).astype(str)
    uniq, inverse = np.unique(seg, return_inverse=True)
    inverse = inverse.reshape(-1)
    for i, name in enumerate(uniq):
        mask = inverse == i
        k = int(known[mask].sum())
        if k < MIN_SEGMENT_EVENTS:
            continue
        weight = k / (k + SHRINK_EVENTS)
        for j, level_name in enumerate(NAMES):
            v = km_quantiles(residual[mask, j], known[mask], (levels[j],),
                             None if weights is None else weights[mask])[0]
            if not np.isnan(v):
                out[f"{PREFIX}{name}|{level_name}"] = float(
                    np.clip(v * weight, -MAX_ABS_FACTOR, MAX_ABS_FACTOR))
    return out


def _text(values: object) -> list[str]:
    return [UNKNOWN if v is None or (isinstance(v, float) and v != v) else str(v)
            for v in np.asarray(values, dtype=object)]
