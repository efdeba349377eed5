"""One supervisor for every long-running loop of a worker process.

A loop is ``async def body(beat) -> None``: it runs until cancelled and calls ``beat()``
whenever it has shown it works (a hand-off done, a sweep finished, a connection listening).
When it raises, the supervisor logs the exception with its traceback (the first failure of
a streak; later ones of the same streak in one line), counts a restart, lets the loop's
``recover`` hook reconnect, waits (exponential backoff with jitter, capped) and starts the
loop again. A loop is *down* from its first failure (or from its start) until its next beat;
:meth:`Supervisor.health` names the loops that have been down longer than a limit.

Nothing here knows about PostgreSQL or Redis: the loops and their hooks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

Beat = Callable[[], None]
LoopBody = Callable[[Beat], Awaitable[None]]
Recover = Callable[[BaseException], Awaitable[None]]

FIRST_DELAY = 0.1
MAX_DELAY = 5.0


def backoff(failures: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` failures in a row: doubling from `first`, capped at
    `cap`, each drawn from the upper half of its step so that restarts spread out."""
    step = min(cap, first * 2.0 ** min(max(0, failures - 1), 30))
    jitter: float = (rng or _RNG).uniform(0.5, 1.0)
    return step * jitter


_RNG = random.Random()  # noqa: S311 - jitter, not security


@dataclass
class LoopStatus:
    """What the supervisor knows about one loop (times are `monotonic` seconds)."""

    name: str
    since: float  # when it came up, or went down (a loop is down until its first beat)
    up: bool = False
    restarts: int = 0
    failures: int = 0  # in a row, since the last beat
    last_error: str | None = None
    running: bool = True  # False once the loop returned (it finished) or was stopped

    def down_for(self, now: float) -> float:
        return 0.0 if self.up or not self.running else max(0.0, now - self.since)

    def as_dict(self, now: float) -> dict[str, object]:
        return {"up": self.up, "down_for_s": round(self.down_for(now), 3),
                "restarts": self.restarts, "last_error": self.last_error}


@dataclass(frozen=True)
class Health:
    """The loops, and those down longer than the limit asked about."""

    ok: bool
    down: list[str]
    loops: dict[str, dict[str, object]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "down", "down": self.down, "loops": self.loops}


@dataclass
class _Spec:
    name: str
    body: LoopBody
    recover: Recover | None
    max_delay: float


class LoopMetrics:
    """Restarts per loop and whether each is up, in the worker's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "parcelcast_worker_loop_restarts", "Restarts of a supervised background loop",
            ["loop"], registry=registry)
        self.up = Gauge("parcelcast_worker_loop_up", "1 while a supervised loop is up",
                        ["loop"], registry=registry)


class Supervisor:
    def __init__(self, metrics: LoopMetrics | None = None, *, first_delay: float = FIRST_DELAY,
                 max_delay: float = MAX_DELAY, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.metrics = metrics
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng or _RNG
        self._specs: dict[str, _Spec] = {}
        self._status: dict[str, LoopStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def add(self, name: str, body: LoopBody, *, recover: Recover | None = None,
            max_delay: float | None = None) -> None:
        """Register a loop; it starts with :meth:`start`."""
        if name in self._specs:
            raise ValueError(f"a loop named {name!r} is already supervised")
        self._specs[name] = _Spec(name, body, recover, max_delay or self.max_delay)

    def start(self) -> None:
        """Start every registered loop that is not running yet."""
        for name, spec in self._specs.items():
            if name not in self._tasks:
                self._status[name] = LoopStatus(name, self._monotonic())
                self._set_up(name, False)
                self._tasks[name] = asyncio.create_task(self._supervise(spec),
                                                        name=f"loop:{name}")

    async def stop(self, names: Iterable[str] | None = None) -> None:
        """Cancel loops (all of them by default) and wait until they have ended."""
        chosen = list(self._tasks) if names is None else [n for n in names if n in self._tasks]
        tasks = [self._tasks.pop(name) for name in chosen]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name in chosen:
            self._status[name].running = False

    def delay(self, failures: int, max_delay: float | None = None) -> float:
        return backoff(failures, self.first_delay, max_delay or self.max_delay, self._rng)

    def status(self) -> dict[str, LoopStatus]:
        return dict(self._status)

    def health(self, down_after: float) -> Health:
        """Healthy unless a loop has been down for longer than `down_after` seconds."""
        now = self._monotonic()
        down = sorted(s.name for s in self._status.values() if s.down_for(now) > down_after)
        return Health(not down, down, {s.name: s.as_dict(now) for s in self._status.values()})

    def _beat(self, name: str) -> None:
        status = self._status[name]
        if not status.up:
            now = self._monotonic()
            if status.failures:
                log.warning("loop %s: working again after %.1fs", name, now - status.since)
            status.up, status.since, status.failures = True, now, 0
            self._set_up(name, True)

    def _set_up(self, name: str, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.up.labels(name).set(1 if up else 0)

    def _failed(self, spec: _Spec, exc: Exception) -> float:
        status = self._status[spec.name]
        if status.up:
            status.up, status.since = False, self._monotonic()
            self._set_up(spec.name, False)
        status.failures += 1
        status.restarts += 1
        status.last_error = f"{type(exc).__name__}: {exc}"
        if self.metrics is not None:
            self.metrics.restarts.labels(spec.name).inc()
        wait = self.delay(status.failures, spec.max_delay)
        if status.failures == 1:
            log.error("loop %s failed; restarting in %.1fs", spec.name, wait, exc_info=exc)
        else:
            log.warning("loop %s failed again (%d in a row: %s); restarting in %.1fs",
                        spec.name, status.failures, status.last_error, wait)
        return wait

    async def _supervise(self, spec: _Spec) -> None:
        def beat() -> None:
            self._beat(spec.name)

        while True:
            try:
                await spec.body(beat)
            except Exception as exc:  # noqa: BLE001 - the point: nothing ends a loop for good
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # stopping: a cleanup swallowed it
                wait = self._failed(spec, exc)
                if spec.recover is not None:
                    try:
                        await spec.recover(exc)
                    except Exception:  # noqa: BLE001 - a failed recovery is retried next time
                        log.warning("loop %s: recovery failed", spec.name, exc_info=True)
                await self._sleep(wait)
            else:
                log.info("loop %s finished", spec.name)
                self._status[spec.name].running = False
                return
