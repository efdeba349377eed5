"""The simulator's oracle: the best forecast a model of the simulated world could make.

Definition (honest about what it knows and what it does not):

* It **knows** each shipment's latent parameters from the simulator: the true pickup
  time (``oracle_handover_at``, even before it happens), the latent median transit in
  business days including the lane, carrier×state, peak-season and storm multipliers
  (``oracle_transit_bdays``), the noise ``oracle_sigma``, the service minimum and the
  delivery-hour distribution.
* It does **not know** the noise draw, nor whether an exception or a failed delivery
  attempt will happen (~7 % of parcels), and it does not read scans: its only update
  over time is conditioning on "not delivered yet" at the as-of instant.

Its forecast distribution is a grid of equally likely outcomes: 40 quantiles of the
log-normal transit (rounded to business days exactly as the simulator does, Sundays
and holidays skipped) × 5 quantiles of the delivery hour. Conditioning on the as-of
time drops the outcomes already in the past; p10/p50/p90 are read off what remains.
A model can beat it only where scans carry information the oracle ignores (an
exception scan, an out-for-delivery scan on the day); everywhere else it is a floor.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd

from predictor.calendar import busday_calendar, local_to_utc, utc_to_local
from predictor.lanes import zip_timezone

N_TRANSIT = 40
N_HOUR = 5
_HOUR_NS = 3600e9
# Fallback when every outcome is already in the past (the parcel is later than anything
# the model of the world expected): next delivery window, roughly.
_OVERDUE_HOURS = (2.0, 12.0, 30.0)


def oracle_grid(shipments: pd.DataFrame) -> np.ndarray:
    """Per shipment, the sorted equally-likely delivery instants (ns since epoch, float).

    Rows without a pickup (never shipped) come back as NaN.
    """
    n = len(shipments)
    z_t = _normal_quantiles(N_TRANSIT)
    z_h = _normal_quantiles(N_HOUR)
    handover = shipments["oracle_handover_at"].dt.tz_localize(None).to_numpy("datetime64[ns]")
    o_tz = np.array([zip_timezone(z) for z in shipments["origin_postal_code"].astype(str)],
                    dtype=object)
    d_tz = np.array([zip_timezone(z, c) for z, c in zip(
        shipments["destination_postal_code"].astype(str),
        shipments["destination_country"].astype(str), strict=True)], dtype=object)
    valid = ~np.isnat(handover)
    safe = np.where(valid, handover, np.datetime64("2000-01-03", "ns"))
    pickup_day = utc_to_local(safe, o_tz).astype("datetime64[D]")
    mu = shipments["oracle_transit_bdays"].to_numpy(float)
    sigma = shipments["oracle_sigma"].to_numpy(float)
    min_days = shipments["oracle_min_bdays"].to_numpy(float)
    transit = mu[:, None] * np.exp(sigma[:, None] * z_t[None, :])
    bdays = np.maximum(min_days[:, None], np.round(transit)).astype(np.int64)
    days = np.busday_offset(np.repeat(pickup_day[:, None], N_TRANSIT, axis=1), bdays,
                            roll="forward", busdaycal=busday_calendar("US"))
    hour = np.clip(shipments["oracle_delivery_hour"].to_numpy(float)[:, None]
                   + shipments["oracle_delivery_hour_sd"].to_numpy(float)[:, None]
                   * z_h[None, :], 8.0, 20.5)
    local = (days[:, :, None].astype("datetime64[ns]")
             + (hour[:, None, :] * _HOUR_NS).astype("timedelta64[ns]")).reshape(n, -1)
    zones = np.repeat(d_tz, N_TRANSIT * N_HOUR)
    utc = local_to_utc(local.ravel(), zones).reshape(n, -1).astype(np.int64).astype(float)
    utc.sort(axis=1)
    utc[~valid] = np.nan
    return utc


def oracle_quantiles(grid: np.ndarray, rows: np.ndarray, as_of: np.ndarray,
                     levels: tuple[float, ...] = (0.1, 0.5, 0.9)) -> np.ndarray:
    """Hours remaining (n, len(levels)) for grid ``rows`` conditioned on not delivered by
    ``as_of`` (datetime64[ns] per row). Rows are answered in chunks: each reads its
    shipment's whole grid row, which for a million snapshots would be gigabytes."""
    out = np.empty((len(rows), len(levels)))
    t_all = as_of.astype("datetime64[ns]").astype(np.int64).astype(float)
    k = grid.shape[1]
    for lo in range(0, len(rows), _ROWS_PER_CHUNK):
        g = grid[rows[lo:lo + _ROWS_PER_CHUNK]]
        t = t_all[lo:lo + _ROWS_PER_CHUNK]
        part = out[lo:lo + _ROWS_PER_CHUNK]
        remaining = (g > t[:, None]).sum(axis=1)
        for j, q in enumerate(levels):
            idx = np.clip(k - remaining + np.floor(q * remaining).astype(np.int64), 0, k - 1)
            part[:, j] = (g[np.arange(len(g)), idx] - t) / _HOUR_NS
            part[remaining == 0, j] = _OVERDUE_HOURS[min(j, 2)]
        part[np.isnan(g[:, 0])] = np.nan
    return out


_ROWS_PER_CHUNK = 50_000


def _normal_quantiles(k: int) -> np.ndarray:
    """Standard-normal quantiles at the mid-points (i + 0.5) / k."""
    nd = NormalDist()
    return np.array([nd.inv_cdf((i + 0.5) / k) for i in range(k)])
