"""Capacity chosen by the data: early stopping on a time-ordered validation slice."""

from __future__ import annotations

import numpy as np
import pandas as pd

from predictor.features import FEATURES, NUMERIC
from predictor.fitting import FitOptions, early_stopped_rounds, fit_booster
from predictor.train import DEFAULT_PARAMS

DAY = 86_400.0


def _table(n: int, signal: bool, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A feature table of ``n`` rows labelled over 60 days; hours remaining either a
    smooth function of the distance (``signal``) or noise that no feature explains."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f: rng.uniform(0, 100, n) for f in NUMERIC})
    for f in FEATURES:
        if f not in X.columns:
            X[f] = pd.Categorical(rng.choice(["a", "b"], n))
    y = rng.exponential(48.0, n)
    if signal:
        y = 2.0 * X["distance_km"].to_numpy() + 0.1 * y
    label_s = np.sort(rng.uniform(0, 60 * DAY, n))
    return X, y, label_s


def _params() -> dict[str, object]:
    return {**DEFAULT_PARAMS, "learning_rate": 0.3, "nthread": 1}


def test_early_stopping_keeps_few_rounds_on_noise_and_many_on_signal() -> None:
    options = FitOptions(validation_days=14, patience=10)
    chosen: dict[bool, int | None] = {}
    for signal in (False, True):
        X, y, label_s = _table(8000, signal)
        chosen[signal] = early_stopped_rounds(X, y, np.arange(len(X)), label_s,
                                              params=_params(), rounds=200, options=options)
    # Noise: nothing to learn past the first rounds; signal: far more than that, not all.
    noise, signal_rounds = chosen[False], chosen[True]
    assert noise is not None and noise <= 20
    assert signal_rounds is not None and 40 <= signal_rounds < 200


def test_the_fitted_booster_has_the_chosen_rounds_and_learns_from_every_row() -> None:
    X, y, label_s = _table(8000, signal=True, seed=1)
    rows = np.arange(len(X))
    options = FitOptions(validation_days=14, patience=10)
    model = fit_booster(X, y, rows, params=_params(), rounds=200, options=options,
                        label_s=label_s)
    chosen = early_stopped_rounds(X, y, rows, label_s, params=_params(), rounds=200,
                                  options=options)
    assert model.metadata["rounds"] == chosen == model.booster.num_boosted_rounds()
    # Without the option (or without label times) the fit runs the rounds it is given.
    plain = fit_booster(X, y, rows, params=_params(), rounds=25, options=FitOptions())
    assert plain.booster.num_boosted_rounds() == 25 and "rounds" not in plain.metadata


def test_a_validation_slice_too_small_falls_back_to_the_given_rounds() -> None:
    X, y, label_s = _table(1500, signal=True, seed=2)  # ~350 rows in the last 14 days
    options = FitOptions(validation_days=14)
    assert early_stopped_rounds(X, y, np.arange(len(X)), label_s, params=_params(),
                                rounds=40, options=options) is None
    model = fit_booster(X, y, np.arange(len(X)), params=_params(), rounds=40,
                        options=options, label_s=label_s)
    assert model.booster.num_boosted_rounds() == 40
