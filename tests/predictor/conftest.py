"""Shared small simulations and a quickly trained model (session-scoped: built once)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from predictor.model import EtaModel
from predictor.simulator import SimulatedHistory, simulate
from predictor.train import train_model

START = datetime(2024, 9, 2, tzinfo=UTC)


@pytest.fixture(scope="session")
def history() -> SimulatedHistory:
    return simulate(4000, 60, START, seed=11)


@pytest.fixture(scope="session")
def trained(history: SimulatedHistory) -> tuple[EtaModel, dict[str, Any]]:
    return train_model(history.shipments, history.events, num_boost_round=60,
                       params={"max_depth": 5, "learning_rate": 0.15, "nthread": 1})
