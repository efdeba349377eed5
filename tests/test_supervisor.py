"""The supervisor: a loop that fails is logged, backed off with jitter, recovered and
restarted; restarts are counted; health names a loop down too long. Injected clock and
sleep: nothing here waits for real time."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest
from prometheus_client import generate_latest

from workers.metrics import WorkerMetrics
from workers.supervisor import Beat, Supervisor, backoff


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_backoff_doubles_within_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for failures, step in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2), (7, 5.0), (500, 5.0)):
        delay = backoff(failures, 0.1, 5.0, rng)
        assert step * 0.5 <= delay <= step


async def test_a_failing_loop_is_restarted_recovered_and_counted() -> None:
    time = FakeTime()
    metrics = WorkerMetrics()
    supervisor = Supervisor(metrics.loops, monotonic=time.monotonic, sleep=time.sleep)
    runs: list[int] = []
    recovered: list[str] = []
    working = asyncio.Event()

    async def body(beat: Beat) -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise asyncpg.InterfaceError("connection is closed")
        beat()
        working.set()
        await asyncio.Event().wait()

    async def recover(exc: BaseException) -> None:
        recovered.append(type(exc).__name__)

    supervisor.add("relay.handoff", body, recover=recover)
    supervisor.start()
    await asyncio.wait_for(working.wait(), 5)
    status = supervisor.status()["relay.handoff"]
    assert status.up and status.restarts == 3 and status.failures == 0
    assert recovered == ["InterfaceError"] * 3
    assert len(time.slept) == 3 and time.slept[0] < time.slept[2] <= 0.4
    assert supervisor.health(down_after=1).ok
    text = generate_latest(metrics.registry).decode()
    assert 'parcelcast_worker_loop_restarts_total{loop="relay.handoff"} 3.0' in text
    assert 'parcelcast_worker_loop_up{loop="relay.handoff"} 1.0' in text
    await supervisor.stop()
    assert not supervisor.status()["relay.handoff"].running


async def test_health_names_a_loop_down_longer_than_the_limit() -> None:
    time = FakeTime()
    supervisor = Supervisor(monotonic=time.monotonic, sleep=time.sleep)
    failing = asyncio.Event()

    async def broken(beat: Beat) -> None:
        failing.set()
        raise OSError("connection refused")

    async def fine(beat: Beat) -> None:
        beat()
        await asyncio.Event().wait()

    supervisor.add("sweep", broken)
    supervisor.add("arq", fine)
    supervisor.start()
    await asyncio.wait_for(failing.wait(), 5)
    for _ in range(20):  # let it fail a few times (each backoff moves the fake clock)
        await asyncio.sleep(0)
    health = supervisor.health(down_after=0.05)
    assert not health.ok and health.down == ["sweep"]
    assert health.loops["arq"]["up"] is True
    assert health.loops["sweep"]["last_error"] == "OSError: connection refused"
    assert supervisor.health(down_after=3600).ok
    await supervisor.stop()


async def test_a_loop_that_returns_is_finished_not_restarted() -> None:
    supervisor = Supervisor()
    done = asyncio.Event()

    async def once(beat: Beat) -> None:
        beat()
        done.set()

    supervisor.add("once", once)
    supervisor.start()
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0)
    status = supervisor.status()["once"]
    assert status.restarts == 0 and not status.running
    assert supervisor.health(down_after=0).ok
    await supervisor.stop()


def test_a_loop_name_is_supervised_once() -> None:
    supervisor = Supervisor()

    async def body(beat: Beat) -> None:
        return None

    supervisor.add("arq", body)
    with pytest.raises(ValueError, match="already"):
        supervisor.add("arq", body)
