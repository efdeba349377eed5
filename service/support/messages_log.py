"""Every message of a shipment as an agent reads it: sent, waiting for morning, skipped and
why, retrying, failed, dead."""

from __future__ import annotations

from datetime import UTC, datetime

from service.store.notifications import RESEND_KEY_PREFIX, Notification


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def state_and_why(n: Notification, now: datetime) -> tuple[str, str | None]:
    """The state an agent sees (one of STATES) and why, in words."""
    if n.state == "sent":
        return "sent", None
    if n.state == "scheduled":
        if n.attempts > 0:
            return "retrying", f"attempt {n.attempts} failed: {n.last_error or 'unknown error'}"
        if n.channel == "sms" and n.due_at > n.created_at and n.due_at > now:
            return "waiting_for_morning", (
                f"SMS quiet hours in the customer's zone: goes out at {_utc(n.due_at)}")
        return "scheduled", None if n.due_at <= now else f"due at {_utc(n.due_at)}"
    if n.state == "sending":
        return "sending", None
    if n.state == "suppressed":
        return "skipped", n.last_error or "not sent"
    if n.state == "superseded":
        return "skipped", "replaced by newer news before it went out"
    return n.state, n.last_error  # failed, dead


STATES = ("sent", "waiting_for_morning", "scheduled", "retrying", "sending", "skipped",
          "failed", "dead")


def resend_of(n: Notification) -> int | None:
    if not n.moment_key.startswith(RESEND_KEY_PREFIX):
        return None
    original = n.moment_key[len(RESEND_KEY_PREFIX):].split(":", 1)[0]
    return int(original) if original.isdigit() else None
