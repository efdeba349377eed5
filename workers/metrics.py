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
        self.model_actions = Counter(
            "parcelcast_model_lifecycle",
            "Model lifecycle decisions: retrained, promoted, dropped (a shadow that lost), "
            "rolled_back (a champion that degraded live)", ["action"], registry=self.registry)
        self.job_retries = Counter(
            "parcelcast_job_retries", "Jobs put back because a store was unavailable or busy",
            ["job"], registry=self.registry)
        # Live accuracy (workers.monitoring): the shown ETAs judged in the last
        # ACCURACY_WINDOW_DAYS (delivered, or still out when the date shown ended: a miss),
        # per carrier and service (the most scored pairs; the rest as 'other').
        segment = ["carrier", "service"]
        self.live_mae = Gauge("parcelcast_eta_live_mae_days",
                              "Mean |delivered - p50| of shown ETAs, days (a parcel still "
                              "out: the time since its p50, a lower bound)", segment,
                              registry=self.registry)
        self.live_coverage = Gauge("parcelcast_eta_live_coverage",
                                   "Share of shown windows the delivery fell inside (still "
                                   "out after the date shown: outside)",
                                   segment, registry=self.registry)
        self.live_on_time = Gauge("parcelcast_eta_live_on_time_shown",
                                  "Share delivered by the end of the date shown", segment,
                                  registry=self.registry)
        self.live_scored = Gauge("parcelcast_eta_live_scored",
                                 "Shown ETAs scored in the window", segment,
                                 registry=self.registry)
        self.live_still_out = Gauge("parcelcast_eta_live_still_out",
                                    "Of those, parcels still out after the date shown "
                                    "(censored misses)", segment, registry=self.registry)
        self.feature_psi = Gauge("parcelcast_eta_feature_psi",
                                 "Population stability of a main feature vs the training set "
                                 "(champion, latest drift check)", ["feature"],
                                 registry=self.registry)
        self.drift_alarm = Gauge("parcelcast_eta_drift_alarm",
                                 "1 while the latest drift check raises this alarm",
                                 ["alarm"], registry=self.registry)
        self.handoffs = Counter(
            "parcelcast_work_handoffs", "Work items handed to arq: first hand-offs, and again "
            "because their job was gone", ["reason"], registry=self.registry)
        self.max_handoffs = Gauge(
            "parcelcast_work_max_handoffs", "The most hand-offs of one work item seen by this "
            "process's relay", registry=self.registry)
        self.still_queued = Counter(
            "parcelcast_work_still_queued", "Long-waiting work items found still queued in "
            "arq (not handed over again)", registry=self.registry)
