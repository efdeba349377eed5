"""The send job: one notification, at most once, surviving provider outages and crashes.

1. Claim (committed): scheduled -> sending, or take over a send whose worker died
   (`sending` older than the lease). Consent and opt-outs are checked here, at send time.
2. Render and hand to the provider, outside any transaction.
3. Record the outcome (committed): sent; or back to scheduled with a backoff on a
   transient failure (dead after `send_max_attempts`); or failed on a permanent one
   (Twilio 21610 also records the opt-out).

A worker killed between 2 and 3 leaves the row `sending`; a provider that did not answer
in time, or dropped the connection after the request went out (`UncertainSendError`), may
have the message too, and the row remembers since when (`uncertain_since`). Either way the
next attempt asks the provider whether the message went out (the outbox can tell; Twilio
can be listed by recipient); SMTP gives no way to know, so e-mail is re-sent with the same
Message-ID: at-least-once within that window, which mail clients collapse by Message-ID.
See tests/test_send_crash.py and tests/drills/.

A send the provider accepted just as the database became unreachable is recorded once it
answers again (kept trying for half the lease, while no other worker can take the send
over), rather than left to be repeated.

A batch of sends runs each on its own: one that fails for any other reason than a store
outage is quarantined alone (workers.isolation), and the others are recorded as usual.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as day_time
from typing import Any
from zoneinfo import ZoneInfo

from service.settings import Settings
from service.store import failed_work
from service.store import notifications as notifications_db
from service.store import work as work_db
from service.store.notifications import ClaimedSend, SentRecord, SmsWords
from service.store.transient import is_outage, is_transient
from workers.context import WorkerContext, worker_context
from workers.isolation import quarantine
from workers.render import Renderer, RenderError
from workers.render.email_message import build_email
from workers.senders.errors import (
    PermanentSendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)
from workers.senders.messages import SmsMessage
from workers.sending.context import render_context, send_zone
from workers.sending.transports import Transports
from workers.supervisor import backoff as backoff_delay

log = logging.getLogger(__name__)

KIND = work_db.WorkKind.SEND_NOTIFICATION
# Seconds of business time before each retry; jittered so a recovered provider is not
# hit by every deferred message at the same instant.
RETRY_SCHEDULE = (5, 30, 120, 600, 1800, 3600, 7200)
# A delay warning in the last hour of the promised day is no warning.
LAST_USEFUL_WARNING = timedelta(hours=1)


def backoff(attempt: int, retry_after: float | None) -> timedelta:
    base = RETRY_SCHEDULE[min(attempt, len(RETRY_SCHEDULE)) - 1]
    jittered = base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
    return timedelta(seconds=max(jittered, retry_after or 0))


async def send_notification(ctx: dict[str, Any], work_item_id: int, notification_id: str,
                            claimed: Claimed | None = None) -> str:
    """Claim, send and record one notification. `claimed`: the claim already made for a
    batch (:func:`send_notifications`), with its time."""
    app = worker_context(ctx)
    settings = app.settings
    nid = int(notification_id)
    if claimed is None:
        now = app.clock.now()
        claimed_at = time.monotonic()
        async with app.pool.acquire() as conn:
            claim = await notifications_db.claim_for_send(
                conn, nid, now, timedelta(seconds=settings.send_lease_s))
    else:
        claim, now, claimed_at = claimed.claims.get(nid), claimed.now, claimed.at
    if claim is None:
        async with app.pool.acquire() as conn:
            return await _not_claimed(conn, work_item_id, nid, notification_id, now)
    reason = _refusal(claim, settings, now)
    if reason is not None:
        async with app.pool.acquire() as conn, conn.transaction():
            await notifications_db.mark(conn, nid, "suppressed", reason, now)
            await work_db.finish(conn, work_item_id)
        return "suppressed"
    transports = app.transports
    body: str | None = None
    try:
        message, subject, body = _compose(app.renderer, settings, claim, now)
        result = None
        if claim.interrupted:
            result = await _already_sent(transports, claim, message)
            if result is None and _too_soon_to_tell(transports, claim):
                raise TooSoonToTell("an earlier attempt may still reach the provider; "
                                    "asking again later")
        if result is None and claim.notification.channel == "sms":
            # Noted before they go: if this worker dies before recording the send, the one
            # that takes it over asks Twilio for these words (and sends these if need be).
            await app.words.write(app.pool, SmsWords(nid, body))
            result = await transports.sms.send(message)
        elif result is None:
            result = await transports.email.send(message)
    except TransientSendError as exc:
        return await _transient(app, work_item_id, claim, exc, body)
    except (PermanentSendError, RenderError) as exc:
        async with app.pool.acquire() as conn, conn.transaction():
            await notifications_db.mark(conn, nid, "failed", str(exc), app.clock.now())
            if isinstance(exc, PermanentSendError) and exc.is_opt_out:
                await notifications_db.opt_out(conn, claim.notification.channel,
                                               claim.notification.recipient, "provider",
                                               app.clock.now())
            await work_db.finish(conn, work_item_id)
        return "failed"
    sent = result

    async def record() -> None:
        await app.recorder.record(app.pool, SentRecord(nid, work_item_id, sent.provider_id,
                                                       subject, body, app.clock.now()))

    await _patiently(app, claimed_at, record)
    return "sent"


async def _patiently(app: WorkerContext, claimed_at: float,
                     write: Callable[[], Awaitable[None]]) -> None:
    """Record what the provider already has. Across a database outage keep trying, while
    the claim's lease surely holds (half of it: no other worker can have taken the send over):
    a send recorded late is better than a send repeated (e-mail cannot be asked about)."""
    patience = app.settings.send_lease_s / 2
    failures = 0
    while True:
        try:
            await write()
            return
        except Exception as exc:
            failures += 1
            wait = backoff_delay(failures, 0.2, 2.0)
            if not is_outage(exc) or time.monotonic() + wait - claimed_at > patience:
                raise
            log.warning("cannot record a send yet (%s); again in %.1fs", exc, wait)
            await app.pool.expire_connections()
            await asyncio.sleep(wait)


async def _not_claimed(conn: Any, work_item_id: int, nid: int, notification_id: str,
                       now: Any) -> str:
    async with conn.transaction():
        current = await notifications_db.get(conn, nid)
        if current is None or current.state != "sending":
            # Retired before anything is queued again: this item may itself still be
            # `pending` (the relay that handed it over died before committing), and a new
            # send queued first would be merged into it, then deleted with it.
            await work_db.finish(conn, work_item_id)
        if current is not None and current.state == "scheduled":
            # Not due yet (a newer schedule moved it): queue it for then.
            await work_db.add(conn, notifications_db.SEND_NOTIFICATION, [notification_id],
                              now, run_after=current.due_at)
        # `sending`: another worker holds a live lease; the relay hands this item over again.
    return "skipped"


async def send_notifications(ctx: dict[str, Any], items: list[tuple[int, str]]) -> list[str]:
    """A batch of sends handed over together: each runs as above, concurrently (each has its
    own claim and record, so one failing does not touch the others). One that fails on its
    own is quarantined; a store outage fails the job, to be run again (sends already
    recorded are skipped then)."""
    app = worker_context(ctx)
    claimed = await _claim_batch(app, items)
    outcomes = await asyncio.gather(*(send_notification(ctx, work_item_id, notification_id,
                                                        claimed)
                                      for work_item_id, notification_id in items),
                                    return_exceptions=True)
    results: list[str] = []
    outage: Exception | None = None
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, str):
            results.append(outcome)
        elif not isinstance(outcome, Exception):
            raise outcome  # cancelled: the job is being stopped
        elif is_transient(outcome):
            outage = outcome
            results.append("retry")
        else:
            await quarantine(app, KIND, item, outcome)
            results.append("quarantined")
    if outage is not None:
        raise outage
    async with app.pool.acquire() as conn:
        await failed_work.resolve(conn, KIND, [notification_id for (_, notification_id), result
                                               in zip(items, results, strict=True)
                                               if result != "quarantined"])
    return results


@dataclass(frozen=True)
class Claimed:
    """A batch's claims (by notification id; a notification not taken is absent), made in
    one statement at `now` (clock time) and `at` (monotonic, for the recording's patience)."""

    claims: dict[int, ClaimedSend]
    now: datetime
    at: float


async def _claim_batch(app: WorkerContext, items: list[tuple[int, str]]) -> Claimed | None:
    """The batch's claims in one statement, or None when that fails for another reason than
    an outage: then each send claims on its own, so one notification that cannot be claimed
    is quarantined alone."""
    now = app.clock.now()
    at = time.monotonic()
    ids = [int(notification_id) for _, notification_id in items]
    try:
        async with app.pool.acquire() as conn:
            claims = await notifications_db.claim_many_for_send(
                conn, ids, now, timedelta(seconds=app.settings.send_lease_s))
    except Exception as exc:
        if is_transient(exc):
            raise  # the job is run again
        log.warning("claiming %d sends together failed (%s); claiming one by one",
                    len(ids), exc)
        return None
    return Claimed(claims, now, at)


def _refusal(claim: ClaimedSend, settings: Settings, now: datetime) -> str | None:
    """Why this message must not go out now (checked at send time, not only when planned)."""
    n = claim.notification
    if n.moment == "predicted_delay" and claim.promised_delivery_date is not None:
        # Deferred past the promise (quiet hours, an outage): "missed promise" says it now.
        zone = ZoneInfo(send_zone(claim, settings))
        end = datetime.combine(claim.promised_delivery_date + timedelta(days=1), day_time(0),
                               tzinfo=zone)
        if now >= end - LAST_USEFUL_WARNING:
            return "too late: the promised date has passed"
    if not claim.has_order:
        return "no order"
    if not claim.has_shipment:
        return "no shipment"
    if not (claim.sms_consent if n.channel == "sms" else claim.email_consent):
        return "no consent"
    if claim.opted_out:
        return "opted out"
    if claim.muted and not notifications_db.is_resend(n):
        return "muted by support"
    return None


def _compose(renderer: Renderer, settings: Settings, claim: ClaimedSend, now: datetime
             ) -> tuple[Any, str | None, str]:
    context = render_context(settings, claim)
    row = claim.notification
    notification_id = f"n{row.id}"
    if row.channel == "sms":
        callback = f"{str(settings.public_base_url).rstrip('/')}/v1/webhooks/twilio/status"
        if claim.interrupted and row.body:
            # The words of an attempt that may have arrived (noted before it went out, or
            # when it got no answer), not a fresh rendering (the ETA may have moved since):
            # the provider's list is matched on them, and the customer never gets two
            # versions.
            text = row.body
        else:
            text = renderer.render_sms(row.moment, row.locale, context).body
        return SmsMessage(notification_id, row.recipient, text, callback), None, text
    email = renderer.render_email(row.moment, row.locale, context)
    domain = settings.public_base_url.host or "parcelcast.local"
    message = build_email(
        email, notification_id=notification_id, from_addr=settings.email_from,
        to_addr=row.recipient, unsubscribe_url=context.unsubscribe_url, now=now,
        message_id_domain=domain,
    )
    return message, email.subject, email.text


class TooSoonToTell(TransientSendError):
    """The provider does not have the message yet, but may still get it: wait (not counted
    as an attempt: nothing was sent)."""


def _too_soon_to_tell(transports: Transports, claim: ClaimedSend) -> bool:
    """Whether the earlier attempt is too recent for the provider's "not found" to mean it
    never arrived (both times are the database's clock)."""
    row = claim.notification
    sender = transports.sms if row.channel == "sms" else transports.email
    settle = float(getattr(sender, "settle_s", 0.0))
    if not settle or row.sending_since is None or claim.ask_since is None:
        return False
    return (row.sending_since - claim.ask_since).total_seconds() < settle


async def _already_sent(transports: Transports, claim: ClaimedSend, message: Any
                        ) -> SendResult | None:
    """Ask the provider whether an interrupted send went out (when it can tell)."""
    row = claim.notification
    sender = transports.sms if row.channel == "sms" else transports.email
    lookup = getattr(sender, "lookup", None)
    if lookup is None:
        return None
    found: SendResult | None = await lookup(message, claim.ask_since)
    return found


async def _transient(app: WorkerContext, work_item_id: int, claim: ClaimedSend,
                     exc: TransientSendError, body: str | None) -> str:
    settings = app.settings
    now = app.clock.now()
    error = str(exc)
    row = claim.notification
    # Until a send is recorded, every attempt that may have reached the provider (an
    # earlier interrupted one, or this one) makes the next attempts ask first.
    maybe_sent = [since for since in (
        claim.ask_since, row.sending_since if isinstance(exc, UncertainSendError) else None)
        if since is not None]
    uncertain_since = min(maybe_sent) if maybe_sent else None
    uncertain_body = body if isinstance(exc, UncertainSendError) else None
    attempted = not isinstance(exc, TooSoonToTell)
    async with app.pool.acquire() as conn, conn.transaction():
        if attempted and row.attempts >= settings.send_max_attempts:
            await notifications_db.mark(conn, row.id, "dead", error, now,
                                        uncertain_since=uncertain_since,
                                        uncertain_body=uncertain_body)
            outcome = "dead"
        else:
            due = now + backoff(row.attempts, exc.retry_after)
            await notifications_db.reschedule(conn, row.id, due, error, now,
                                              uncertain_since=uncertain_since,
                                              uncertain_body=uncertain_body,
                                              attempted=attempted)
            outcome = "retrying"
        await work_db.finish(conn, work_item_id)
    log.info("notification %s: %s (%s)", row.id, outcome, error)
    return outcome
