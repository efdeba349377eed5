"""The model registry: trained ETA models with their metrics, and which one is champion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec


class ModelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A registered model: its artefact (booster + preprocessing), metrics and status."""

    version: str
    artefact: bytes
    feature_names: list[str]
    params: dict[str, Any]
    metrics: dict[str, Any]
    data_from: datetime | None
    data_to: datetime | None
    status: str
    created_at: datetime
    promoted_at: datetime | None
    # Out-of-sample p50 MAE at training (what its live accuracy is held against).
    validation_mae_hours: float | None = None


class ModelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A registered model without its artefact (listings)."""

    version: str
    status: str
    metrics: dict[str, Any]
    data_from: datetime | None
    data_to: datetime | None
    created_at: datetime
    promoted_at: datetime | None


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """A model's p10-p90 calibration as of an instant (the newest is in force)."""

    id: int
    as_of: datetime
    factors: dict[str, float]
    info: dict[str, Any]


class CalibratedAsOf(msgspec.Struct, frozen=True, kw_only=True):
    """The instant a model's calibration in force was computed for."""

    as_of: datetime


COLUMNS = ", ".join(ModelRecord.__struct_fields__)
SUMMARY_COLUMNS = ", ".join(ModelSummary.__struct_fields__)


async def register(conn: asyncpg.Connection, version: str, artefact: bytes,
                   feature_names: Sequence[str], params: dict[str, Any],
                   metrics: dict[str, Any], data_from: datetime | None,
                   data_to: datetime | None, now: datetime, *,
                   validation_mae_hours: float | None = None) -> None:
    await conn.execute(
        """INSERT INTO eta_models (version, artefact, feature_names, params, metrics, data_from,
                                   data_to, created_at, validation_mae_hours)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        version, artefact, list(feature_names), params, metrics, data_from, data_to, now,
        validation_mae_hours)


async def champion(conn: asyncpg.Connection) -> ModelRecord | None:
    """The champion's row, artefact included."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM eta_models WHERE status = 'champion'")
    return ModelRecord(**row) if row else None


async def champion_version(conn: asyncpg.Connection) -> str | None:
    version: str | None = await conn.fetchval(
        "SELECT version FROM eta_models WHERE status = 'champion'")
    return version


async def get(conn: asyncpg.Connection, version: str) -> ModelRecord | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM eta_models WHERE version = $1", version)
    return ModelRecord(**row) if row else None


async def promote(conn: asyncpg.Connection, version: str, reason: str, now: datetime, *,
                  previous_becomes: str = "retired") -> bool:
    """Make `version` the champion (the old one retires, or becomes `previous_becomes`:
    'rolled_back'); False if there is no such model."""
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM eta_models WHERE version = $1 FOR UPDATE",
                               version) is None:
            return False
        previous = await conn.fetchval(
            "SELECT version FROM eta_models WHERE status = 'champion' FOR UPDATE")
        if previous == version:
            return True
        await conn.execute(
            "UPDATE eta_models SET status = $1 WHERE status = 'champion'", previous_becomes)
        await conn.execute(
            "UPDATE eta_models SET status = 'champion', promoted_at = $2 WHERE version = $1",
            version, now)
        await conn.execute(
            """INSERT INTO eta_model_promotions (version, previous, reason, promoted_at)
               VALUES ($1, $2, $3, $4)""", version, previous, reason, now)
    return True


async def previous_champion(conn: asyncpg.Connection) -> str | None:
    """The model that was champion before the current one."""
    previous: str | None = await conn.fetchval(
        """SELECT previous FROM eta_model_promotions p
           JOIN eta_models m ON m.version = p.version AND m.status = 'champion'
           ORDER BY p.id DESC LIMIT 1""")
    return previous


async def list_all(conn: asyncpg.Connection) -> list[ModelSummary]:
    rows = await conn.fetch(f"SELECT {SUMMARY_COLUMNS} FROM eta_models ORDER BY created_at")
    return [ModelSummary(**r) for r in rows]


async def store_calibration(conn: asyncpg.Connection, version: str, as_of: datetime,
                            factors: dict[str, float], info: dict[str, Any],
                            now: datetime) -> bool:
    """Record a model's calibration as of an instant; False when that one was stored already."""
    status: str = await conn.execute(
        """INSERT INTO eta_calibrations (model_version, as_of, factors, info, created_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model_version, as_of) DO NOTHING""",
        version, as_of, factors, info, now)
    return status.endswith(" 1")


async def latest_calibration(conn: asyncpg.Connection, version: str) -> Calibration | None:
    """The calibration in force for a model (the newest by as_of), or None."""
    row = await conn.fetchrow(
        """SELECT id, as_of, factors, info FROM eta_calibrations WHERE model_version = $1
           ORDER BY as_of DESC, id DESC LIMIT 1""", version)
    return Calibration(**row) if row else None


async def calibrated_as_of(conn: asyncpg.Connection, version: str) -> CalibratedAsOf | None:
    """As of when the factors in force for `version` were computed: its newest stored
    calibration, else the artefact's own (predictor.train calibrates it as of the last
    label: the report's calibration.as_of, else the end of its data); None for no model."""
    as_of = await conn.fetchval(
        """SELECT coalesce((SELECT max(as_of) FROM eta_calibrations WHERE model_version = $1),
                           (params -> 'calibration' ->> 'as_of')::timestamptz, data_to)
           FROM eta_models WHERE version = $1""", version)
    return CalibratedAsOf(as_of=as_of) if as_of is not None else None


async def shadow(conn: asyncpg.Connection) -> ModelRecord | None:
    """The challenger running in shadow (its ETAs stored, never shown), if any."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM eta_models WHERE status = 'shadow'")
    return ModelRecord(**row) if row else None


async def shadow_version(conn: asyncpg.Connection) -> str | None:
    version: str | None = await conn.fetchval(
        "SELECT version FROM eta_models WHERE status = 'shadow'")
    return version


async def start_shadow(conn: asyncpg.Connection, version: str) -> None:
    """Run `version` in shadow; a challenger already there retires (one at a time)."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE eta_models SET status = 'retired' WHERE status = 'shadow' AND version <> $1",
            version)
        await conn.execute(
            "UPDATE eta_models SET status = 'shadow' WHERE version = $1 AND status = 'candidate'",
            version)


async def end_shadow(conn: asyncpg.Connection, version: str) -> None:
    await conn.execute(
        "UPDATE eta_models SET status = 'retired' WHERE version = $1 AND status = 'shadow'",
        version)


async def newest_created_at(conn: asyncpg.Connection) -> datetime | None:
    """When the newest model was registered (a scheduled retrain is due `every` after)."""
    at: datetime | None = await conn.fetchval("SELECT max(created_at) FROM eta_models")
    return at
