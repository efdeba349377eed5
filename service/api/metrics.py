"""Prometheus metrics of one service process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "parcelcast_http_requests", "HTTP requests answered",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "parcelcast_http_request_duration_seconds", "Time to answer a request",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.events = Counter(
            "parcelcast_tracking_events", "Tracking events received, by outcome",
            ["outcome"], registry=self.registry,
        )
        self.unknown_status = Counter(
            "parcelcast_unknown_status_events", "Accepted events whose raw status had no mapping",
            ["carrier"], registry=self.registry,
        )
        self.work_depth = Gauge(
            "parcelcast_work_items", "Outbox work items by state", ["state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "parcelcast_arq_queue_depth", "Jobs waiting in the arq queue (-1: Redis unreachable)",
            registry=self.registry,
        )
