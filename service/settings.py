"""Settings from the environment, validated once at start-up."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AnyUrl, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.clock import Clock, ScaledClock, SystemClock

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """A missing or malformed setting; the message is one line naming it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    # Unset means "start the embedded server in the data folder".
    database_url: str | None = None
    redis_url: str | None = None
    parcelcast_data_dir: Path = Path(".parcelcast")
    public_base_url: AnyUrl = AnyUrl("http://127.0.0.1:8080")
    # Signs unsubscribe links and other tokens; the default is for laptops only.
    parcelcast_secret_key: Annotated[str, Field(min_length=16)] = "dev-only-insecure-secret-key"
    # Earlier secret keys, comma-separated: links they signed still verify (key rotation).
    parcelcast_previous_secret_keys: str = ""
    # Links signed before they carried an issue time: accepted until then (unset: always).
    parcelcast_untimed_links_until: datetime | None = None
    # A tracking link works until the parcel is delivered and this many days after.
    tracking_link_days_after_delivery: Annotated[float, Field(ge=0)] = 90.0
    # When set, GET /metrics needs `Authorization: Bearer <token>`.
    metrics_token: Annotated[str, Field(min_length=16)] | None = None
    # When set ("host:port"), `parcelcast serve` also listens there and answers /metrics
    # only there (404 on its public address).
    metrics_bind: str | None = None
    parcelcast_queue_name: str = "parcelcast:queue"
    # Seconds an enqueued work item may stay unfinished before the relay hands it over again.
    parcelcast_stale_after_s: Annotated[float, Field(gt=0)] = 60.0
    parcelcast_relay: bool = True
    # PostgreSQL connections each process may hold at most (docs/operations.md, "Past one
    # machine"): an API process, and a worker (its 8 concurrent jobs and its loops).
    database_pool_size: Annotated[int, Field(ge=2, le=1000)] = 10
    worker_database_pool_size: Annotated[int, Field(ge=12, le=1000)] = 20
    parcelcast_max_body_bytes: Annotated[int, Field(gt=0)] = 1024 * 1024
    parcelcast_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Simulated clock, shared by every process of a replay: all three or none.
    parcelcast_clock_start: datetime | None = None
    parcelcast_clock_anchor: float | None = None
    parcelcast_clock_speed: Annotated[float, Field(gt=0)] = 1.0
    # From this simulated instant on the clock runs at real speed (the demo's --keep-running).
    parcelcast_clock_realtime_from: datetime | None = None

    # Notifications. The default transports write to the outbox folder: nothing is sent
    # by accident from a fresh install.
    shop_name: str = "Parcelcast Demo Shop"
    # Branding of the customer's pages: a logo (an https URL) and the shop's colour; text
    # colours are derived from it so everything keeps a 4.5:1 contrast.
    shop_logo_url: AnyUrl | None = None
    shop_brand_color: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")] = "#0b6e4f"
    # Order lookup page: attempts per client address (and per order number) per window.
    lookup_attempts: Annotated[int, Field(ge=1)] = 10
    lookup_window_s: Annotated[int, Field(ge=1)] = 900
    # The support page behind a reverse proxy that authenticates agents: the header it sets
    # to the agent's name (unset: agents sign in with an API key), and the scopes it grants.
    # Only set this when the proxy strips the header from every incoming request.
    support_auth_header: str | None = None
    support_auth_scopes: list[str] = ["shipments:read", "support:write"]
    # Where the shop is: the zone of a customer whose order and address say nothing better,
    # and the public holidays of a destination whose own we do not know.
    shop_timezone: str = "UTC"
    shop_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"
    # Calendar days a carrier holds a parcel at a pickup point before returning it ("collect
    # by" in the available-for-pickup message); carriers not listed: no date is promised.
    # Defaults err short (a customer told to hurry loses nothing): UPS Access Points hold 7
    # days and USPS 15; FedEx and DHL vary by location, so 5.
    pickup_hold_days: dict[str, Annotated[int, Field(ge=1, le=60)]] = {
        "ups": 7, "usps": 15, "fedex": 5, "dhl": 5}
    email_transport: Literal["outbox", "smtp"] = "outbox"
    sms_transport: Literal["outbox", "twilio"] = "outbox"
    email_from: str = "Parcelcast Demo Shop <orders@shop.example>"
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(gt=0, lt=65536)] = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = "dev-only-twilio-token"
    twilio_from_number: str = "+15005550006"
    # Point the official SDK at a Twilio-compatible server (the local stand-in in tests).
    twilio_base_url: AnyUrl | None = None
    # Seconds to wait for Twilio's answer; past it the send may or may not have reached
    # Twilio, and the next attempt asks Twilio before sending again.
    twilio_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    email_per_second: Annotated[float, Field(gt=0)] = 50.0
    sms_per_second: Annotated[float, Field(gt=0)] = 20.0
    quiet_hours_start: Annotated[int, Field(ge=0, le=23)] = 21
    quiet_hours_end: Annotated[int, Field(ge=0, le=23)] = 8
    # How far (days) the ETA must move past the promise before we announce a delay, and
    # which quantile of the window is compared (p50: likely late; p10: surely late).
    delay_margin_days: Annotated[int, Field(ge=0)] = 0
    delay_quantile: Literal["p10", "p50", "p90"] = "p50"
    stalled_label_business_days: Annotated[int, Field(ge=1)] = 2
    stalled_transit_business_hours: Annotated[int, Field(ge=1)] = 48
    # Per carrier or carrier:service_level, e.g. {"usps:economy": 72, "dhl": 36}.
    stalled_transit_hours_by_service: dict[str, Annotated[int, Field(ge=1)]] = {}
    send_max_attempts: Annotated[int, Field(ge=1)] = 8
    # Real seconds a claimed send may stay unrecorded before another worker reconciles it.
    send_lease_s: Annotated[float, Field(gt=0)] = 30.0
    sweep_interval_s: Annotated[float, Field(gt=0)] = 60.0
    # Tracking events' monthly partitions (`parcelcast maintenance`, also run by every
    # worker's "maintenance" loop each MAINTENANCE_INTERVAL_S real seconds): partitions for
    # this month and the EVENT_PARTITIONS_AHEAD next ones; with EVENT_RETENTION_MONTHS = N
    # (0: keep every event), a month's events are dropped with their dedupe keys once N
    # whole months have passed since it ended (docs/operations.md).
    event_retention_months: Annotated[int, Field(ge=0, le=1200)] = 0
    event_partitions_ahead: Annotated[int, Field(ge=1, le=120)] = 3
    maintenance_interval_s: Annotated[float, Field(gt=0)] = 600.0
    # Clock hours between recalibrations of the champion's window (0: never, by hand only).
    recalibrate_every_hours: Annotated[float, Field(ge=0)] = 24.0
    # Live accuracy and drift (workers.monitoring; docs/operations.md): the worker's gauges
    # are refreshed every ACCURACY_POLL_S real seconds over the last ACCURACY_WINDOW_DAYS of
    # deliveries, for the ACCURACY_SEGMENTS most scored carrier/service pairs (the rest are
    # 'other'). A drift check runs every DRIFT_CHECK_EVERY_HOURS clock hours (0: never):
    # a feature alarms past DRIFT_PSI_THRESHOLD, the residuals when live MAE exceeds
    # DRIFT_MAE_RATIO x the model's validation MAE or live coverage falls more than
    # DRIFT_COVERAGE_DROP below its validation coverage (with DRIFT_MIN_SCORED scores).
    accuracy_poll_s: Annotated[float, Field(gt=0)] = 60.0
    accuracy_window_days: Annotated[float, Field(gt=0)] = 7.0
    accuracy_segments: Annotated[int, Field(ge=1, le=200)] = 20
    drift_check_every_hours: Annotated[float, Field(ge=0)] = 24.0
    drift_psi_threshold: Annotated[float, Field(gt=0)] = 0.25
    drift_mae_ratio: Annotated[float, Field(gt=0)] = 1.5
    drift_coverage_drop: Annotated[float, Field(ge=0, le=1)] = 0.15
    drift_min_scored: Annotated[int, Field(ge=1)] = 50
    # Scheduled retraining (service.eta.lifecycle): "never" (default), or "7d", "30d",
    # "12h"... of clock time since the newest model. The new model runs in shadow until it
    # beats the champion on the parcels delivered in the last PROMOTION_WINDOW_DAYS.
    retrain_every: str = "never"
    promotion_window_days: Annotated[float, Field(gt=0)] = 14.0
    # Both models scored on at least this many delivered parcels before a verdict.
    promotion_min_parcels: Annotated[int, Field(ge=1)] = 200
    # The challenger's p50 MAE must be at least this much lower (relative).
    promotion_min_gain: Annotated[float, Field(ge=0, lt=1)] = 0.02
    # The champion's live p50 MAE past this multiple of its validation MAE: roll back.
    rollback_ratio: Annotated[float, Field(gt=1)] = 1.5
    # A worker's health and metrics endpoint (GET /healthz, /metrics): off unless a port is
    # set; `parcelcast worker --health` asks it. A loop down longer than
    # WORKER_DOWN_AFTER_S makes the worker unhealthy.
    worker_health_host: str = "127.0.0.1"
    worker_health_port: Annotated[int, Field(ge=1, lt=65536)] | None = None
    worker_down_after_s: Annotated[float, Field(gt=0)] = 30.0
    # A diagnostic: every this many seconds a worker logs where the memory it holds grew most
    # (service.memory.watch_allocations_forever); unset: off.
    parcelcast_memory_diagnostic_s: Annotated[float, Field(gt=0)] | None = None
    # Feed data quality (`parcelcast data-quality`, /metrics): a rate above its threshold is a
    # warning, once a source/carrier has at least DATA_QUALITY_MIN_EVENTS events in the window.
    data_quality_unknown_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    data_quality_rejected_rate: Annotated[float, Field(ge=0, le=1)] = 0.02
    data_quality_late_rate: Annotated[float, Field(ge=0, le=1)] = 0.10
    data_quality_after_delivery_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    # Scan times placed only by the shipment's origin or assumed UTC (no usable location).
    data_quality_guessed_time_rate: Annotated[float, Field(ge=0, le=1)] = 0.10
    data_quality_min_events: Annotated[int, Field(ge=1)] = 20
    # An unfinished shipment without a scan for this many days counts as a stale tracker.
    data_quality_stale_days: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("retrain_every")
    @classmethod
    def _every(cls, value: str) -> str:
        text = value.strip().lower()
        if text in ("", "never", "off", "0"):
            return "never"
        try:
            amount = float(text[:-1])
        except ValueError:
            amount = -1.0
        if text[-1:] not in ("d", "h") or amount <= 0:
            raise ValueError("must be never or a duration like 7d, 30d or 12h")
        return text

    def retrain_interval(self) -> timedelta | None:
        """RETRAIN_EVERY as a duration (None: never)."""
        if self.retrain_every == "never":
            return None
        amount = float(self.retrain_every[:-1])
        return timedelta(days=amount) if self.retrain_every.endswith("d") else timedelta(
            hours=amount)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql://")
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("shop_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, KeyError):
            raise ValueError(f"unknown IANA timezone {value!r}, e.g. 'America/Chicago'") from None
        return value

    @field_validator("parcelcast_previous_secret_keys")
    @classmethod
    def _previous_keys(cls, value: str) -> str:
        if any(len(key) < 16 for key in _split_keys(value)):
            raise ValueError("each key must have at least 16 characters")
        return value

    @field_validator("metrics_bind")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be host:port, e.g. 127.0.0.1:9100")
        return value or None

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where /metrics is served when it has an address of its own."""
        if self.metrics_bind is None:
            return None
        host, _, port = self.metrics_bind.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("parcelcast_clock_start", "parcelcast_untimed_links_until",
                     "parcelcast_clock_realtime_from")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a timezone offset, e.g. 2026-11-02T00:00:00Z")
        return value

    @property
    def link_secrets(self) -> tuple[str, ...]:
        """The keys a signed link may be signed with: the current one first."""
        return (self.parcelcast_secret_key, *_split_keys(self.parcelcast_previous_secret_keys))

    @property
    def data_dir(self) -> Path:
        return self.parcelcast_data_dir.resolve()

    def clock(self) -> Clock:
        if self.parcelcast_clock_start is None:
            return SystemClock()
        anchor = self.parcelcast_clock_anchor if self.parcelcast_clock_anchor else time.time()
        return ScaledClock(self.parcelcast_clock_start, anchor, self.parcelcast_clock_speed,
                           self.parcelcast_clock_realtime_from)


def _split_keys(value: str) -> list[str]:
    return [key.strip() for key in value.split(",") if key.strip()]


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise SettingsError with one line naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"setting {name} is invalid: {first['msg']}") from None
