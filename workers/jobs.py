"""The job registry: which arq job does each kind of work item, and how many per job.

The relay enqueues by this table and the worker registers its functions from it, so a job
name cannot drift between the two. Every job is idempotent: the relay may hand the same
work over twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from service.store.work import WorkKind
from workers.refresh import refresh_shipments
from workers.sending.send import send_notifications

BatchJob = Callable[[dict[str, Any], list[tuple[int, str]]], Awaitable[Any]]


@dataclass(frozen=True)
class Job:
    function: BatchJob
    # Items per job: big enough to amortise a model call or a job's overhead, small enough
    # to spread over workers.
    batch_size: int

    @property
    def name(self) -> str:
        return self.function.__name__


JOBS: dict[WorkKind, Job] = {
    WorkKind.REFRESH_SHIPMENT: Job(refresh_shipments, 50),
    WorkKind.SEND_NOTIFICATION: Job(send_notifications, 25),
}
FUNCTIONS = [job.function for job in JOBS.values()]
