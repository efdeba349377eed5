"""What every job gets: one typed object per worker process, kept in arq's ctx dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from service.clock import Clock
from service.eta.runtime import EtaRuntime
from service.settings import Settings
from workers.metrics import WorkerMetrics
from workers.render import Renderer
from workers.sending.recording import SentRecorder, WordsNoter
from workers.sending.transports import Transports

KEY = "parcelcast"


@dataclass(frozen=True)
class WorkerContext:
    pool: asyncpg.Pool
    clock: Clock
    settings: Settings
    renderer: Renderer
    transports: Transports
    eta: EtaRuntime | None
    metrics: WorkerMetrics | None = None
    # Accepted sends, recorded together when they finish together (workers.sending.recording).
    recorder: SentRecorder = field(default_factory=SentRecorder)
    # The words of SMS about to go out, noted together (a send taken over asks for them).
    words: WordsNoter = field(default_factory=WordsNoter)

    def as_arq_ctx(self) -> dict[str, Any]:
        """The ctx dict arq passes to each job (arq adds its own keys beside ours)."""
        return {KEY: self}


def worker_context(ctx: dict[str, Any]) -> WorkerContext:
    """Our context from the dict arq hands a job."""
    found = ctx[KEY]
    if not isinstance(found, WorkerContext):
        raise TypeError("the arq ctx does not carry a WorkerContext")
    return found
