"""`parcelcast train --dask-scheduler ADDRESS`: the history in the database trained on a
Dask cluster (a LocalCluster here), registered and promoted like any other model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from predictor.model import EtaModel
from service.store.embedded import free_port
from tests.servers import with_database
from tests.test_cli import _env, run

pytest.importorskip("distributed")
pytest.importorskip("xgboost.dask")
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


async def test_train_on_a_dask_cluster_registers_a_servable_model(
        postgres_admin: str, redis_server_url: str, scheduler: str) -> None:
    name = f"parcelcast_dask_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_admin)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(postgres_admin, name)
    env = _env(DATABASE_URL=url, REDIS_URL=redis_server_url)
    try:
        assert run("migrate", env=env).returncode == 0
        loaded = run("simulate", "--shipments", "1500", "--days", "40", "--start",
                     "2026-06-01", "--load", env=env, timeout=300)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        nowhere = run("train", "--dask-scheduler", f"tcp://127.0.0.1:{free_port()}",
                      "--until", "2026-07-15", env=env, timeout=300)
        assert nowhere.returncode == 1 and "cannot reach the Dask scheduler" in nowhere.stderr
        assert "Traceback" not in nowhere.stderr
        trained = run("train", "--dask-scheduler", scheduler, "--rounds", "20",
                      "--until", "2026-07-15", env=env, timeout=900)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert "promoted (first model)" in trained.stdout
        assert "no out-of-sample evaluation" in trained.stdout
        version = trained.stdout.strip().splitlines()[-1].split(":")[0]
        assert f"{version}\tchampion" in run("models", "list", env=env).stdout
        conn = await asyncpg.connect(url)
        try:
            artefact = await conn.fetchval("SELECT artefact FROM eta_models WHERE version = $1",
                                           version)
        finally:
            await conn.close()
        model = EtaModel.from_bytes(artefact)
        assert model.metadata["fit_options"]["distributed"] == "xgboost.dask"
        assert model.booster.num_boosted_rounds() == 20
        assert model.metadata["rows"]["partitions"] >= 1
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
