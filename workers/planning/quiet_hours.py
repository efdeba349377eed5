"""When an SMS may go out: never during the customer's night (deferred, not dropped)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def sms_due_at(now: datetime, timezone: str | None, start_hour: int, end_hour: int) -> datetime:
    """`now`, or the end of quiet hours [start_hour, end_hour) in `timezone` if now is inside them."""
    local = now.astimezone(zone(timezone))
    hour = local.hour
    quiet = (hour >= start_hour or hour < end_hour) if start_hour > end_hour else (
        start_hour <= hour < end_hour)
    if not quiet:
        return now
    wake_day = local.date() if hour < end_hour else local.date() + timedelta(days=1)
    wake = datetime.combine(wake_day, time(end_hour), tzinfo=local.tzinfo)
    return wake.astimezone(now.tzinfo)
