"""A small ETA model for tests that need a champion (trained once per session)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from predictor.model import EtaModel
from predictor.simulator import simulate
from predictor.train import train_model
from service.store import eta_models

TRAINED_AT = datetime(2026, 10, 20, 18, 0, tzinfo=UTC)


def small_model() -> EtaModel:
    """Seconds to train: a month of a small simulated shop, few rounds."""
    history = simulate(800, 30, TRAINED_AT - timedelta(days=31), seed=3)
    model, _ = train_model(history.shipments, history.events, num_boost_round=20,
                           trained_at=TRAINED_AT)
    return model


async def install_champion(conn: asyncpg.Connection, model: EtaModel, now: datetime) -> str:
    """Register `model` and make it the champion, as `parcelcast train` would."""
    await eta_models.register(conn, model.version, model.to_bytes(), model.feature_names,
                              {}, {}, None, None, now)
    await eta_models.promote(conn, model.version, "test", now)
    return model.version
