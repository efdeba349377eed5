"""Prometheus metrics of one service process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.store.quality import Counted


class FeedQuality(Collector):
    """The feed_quality counters (summed over days) and stale trackers, as last read."""

    def __init__(self) -> None:
        self.counted: list[Counted] = []
        self.stale: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        counters = CounterMetricFamily(
            "parcelcast_feed_quality", "Feed data-quality counters by source, carrier and "
            "measure (see `parcelcast data-quality`)", labels=["source", "carrier", "measure"])
        for c in self.counted:
            counters.add_metric([c.source, c.carrier, c.measure], c.count)
        yield counters
        stale = GaugeMetricFamily(
            "parcelcast_stale_trackers", "Unfinished shipments without a scan for "
            "DATA_QUALITY_STALE_DAYS", labels=["carrier"])
        for carrier, n in self.stale.items():
            stale.add_metric([carrier], n)
        yield stale


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
        self.feed_quality = FeedQuality()
        self.registry.register(self.feed_quality)
        self.queue_depth = Gauge(
            "parcelcast_arq_queue_depth", "Jobs waiting in the arq queue (-1: Redis unreachable)",
            registry=self.registry,
        )
