"""Prometheus metrics of one worker process (served by workers.health)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from workers.supervisor import LoopMetrics


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.loops = LoopMetrics(self.registry)
        self.quarantined = Counter(
            "parcelcast_work_quarantined", "Work items set aside after failing on their own",
            ["kind"], registry=self.registry)
        self.model_actions = Counter(
            "parcelcast_model_lifecycle",
            "Model lifecycle decisions: retrained, promoted, dropped (a shadow that lost), "
            "rolled_back (a champion that degraded live)", ["action"], registry=self.registry)
        self.job_retries = Counter(
            "parcelcast_job_retries", "Jobs put back because a store was unavailable or busy",
            ["job"], registry=self.registry)
