"""Prometheus metrics of one worker process (served by workers.health)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from workers.supervisor import LoopMetrics


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.loops = LoopMetrics(self.registry)
        self.quarantined = Counter(
            "parcelcast_work_quarantined", "Work items set aside after failing on their own",
            ["kind"], registry=self.registry)
        self.job_retries = Counter(
            "parcelcast_job_retries", "Jobs put back because a store was unavailable or busy",
            ["job"], registry=self.registry)
        self.handoffs = Counter(
            "parcelcast_work_handoffs", "Work items handed to arq: first hand-offs, and again "
            "because their job was gone", ["reason"], registry=self.registry)
        self.max_handoffs = Gauge(
            "parcelcast_work_max_handoffs", "The most hand-offs of one work item seen by this "
            "process's relay", registry=self.registry)
        self.still_queued = Counter(
            "parcelcast_work_still_queued", "Long-waiting work items found still queued in "
            "arq (not handed over again)", registry=self.registry)
