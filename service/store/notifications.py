"""Notifications: scheduling (at most once per moment), the send lifecycle, opt-outs."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from service.store import work

SEND_NOTIFICATION = work.SEND_NOTIFICATION


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One message to one customer about one moment of one shipment, and how sending went."""

    id: int
    shipment_id: str
    order_id: str
    moment: str
    moment_key: str
    channel: str
    recipient: str
    locale: str
    state: str
    due_at: datetime
    attempts: int
    sending_since: datetime | None
    last_error: str | None
    provider_id: str | None
    provider_status: str | None
    subject: str | None
    body: str | None
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    # An attempt that began then got no answer (it may have reached the provider): ask first.
    uncertain_since: datetime | None


COLUMNS = ", ".join(Notification.__struct_fields__)


class ClaimedSend(msgspec.Struct, frozen=True, kw_only=True):
    """A notification taken for sending, with everything its message needs (one statement)."""

    notification: Notification
    # A previous attempt may have reached the provider (its sender vanished before recording,
    # or got no answer): ask the provider about messages since `ask_since` before sending.
    interrupted: bool
    ask_since: datetime | None
    has_order: bool
    customer_name: str | None
    email_consent: bool | None
    sms_consent: bool | None
    items: list[dict[str, Any]] | None
    order_timezone: str | None
    has_shipment: bool
    carrier: str | None
    tracking_number: str | None
    status: str | None
    eta_p10: datetime | None
    eta_p90: datetime | None
    promised_delivery_date: date | None
    destination_postal_code: str | None
    destination_country: str | None
    opted_out: bool
    muted: bool  # an agent muted the order (service.store.support_actions)
    last_description: str | None
    last_location: dict[str, str] | None
    last_occurred_at: datetime | None
    # The window the customer was last told in a message (else the first one shown).
    previous_eta_p10: datetime | None
    previous_eta_p90: datetime | None


@dataclass(frozen=True)
class NewNotification:
    shipment_id: str
    order_id: str
    moment: str
    moment_key: str
    channel: str
    recipient: str
    locale: str
    due_at: datetime


async def rules(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Enabled moments and their channels."""
    rows = await conn.fetch("SELECT moment, channels FROM notification_rules WHERE enabled")
    return {r["moment"]: list(r["channels"]) for r in rows}


async def set_rule(conn: asyncpg.Connection, moment: str, enabled: bool,
                   channels: Sequence[str]) -> None:
    await conn.execute(
        """INSERT INTO notification_rules (moment, enabled, channels) VALUES ($1, $2, $3)
           ON CONFLICT (moment) DO UPDATE SET enabled = $2, channels = $3""",
        moment, enabled, list(channels))


async def schedule(conn: asyncpg.Connection, items: Sequence[NewNotification], now: datetime
                   ) -> list[int]:
    """Create the notifications that do not exist yet and queue their sends; their ids."""
    if not items:
        return []
    rows = await conn.fetch(
        """INSERT INTO notifications (shipment_id, order_id, moment, moment_key, channel,
                                      recipient, locale, due_at, created_at, updated_at)
           SELECT *, $9::timestamptz, $9::timestamptz FROM unnest(
               $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
               $7::text[], $8::timestamptz[])
           ON CONFLICT (shipment_id, moment, moment_key, channel) DO NOTHING
           RETURNING id, due_at""",
        [i.shipment_id for i in items], [i.order_id for i in items], [i.moment for i in items],
        [i.moment_key for i in items], [i.channel for i in items],
        [i.recipient for i in items], [i.locale for i in items], [i.due_at for i in items], now,
    )
    for row in rows:
        await work.add(conn, SEND_NOTIFICATION, [str(row["id"])], now, run_after=row["due_at"])
    return [r["id"] for r in rows]


async def supersede(conn: asyncpg.Connection, shipment_id: str, moments: Sequence[str],
                    current: Sequence[tuple[str, str]], now: datetime) -> int:
    """Mark still-waiting notifications of these moments as replaced by newer news: every
    one but those of the `current` (moment, key) pairs, what the shipment's state calls for
    now (a waiting "out for delivery" stays when an ETA revision is planned after it)."""
    result: str = await conn.execute(
        """UPDATE notifications SET state = 'superseded', updated_at = $5
           WHERE shipment_id = $1 AND state = 'scheduled' AND moment = ANY($2::text[])
             AND (moment, moment_key) NOT IN (
                 SELECT * FROM unnest($3::text[], $4::text[]))""",
        shipment_id, list(moments), [m for m, _ in current], [k for _, k in current], now)
    return int(result.split()[-1])


# One statement: claim, and everything the message needs (order, shipment, opt-out, the
# latest scan, the window told before). A send costs this and one statement to record it.
CLAIM_FOR_SEND = f"""
WITH claimed AS (
    UPDATE notifications n SET
        state = 'sending', attempts = n.attempts + 1, updated_at = $2,
        sending_since = clock_timestamp()
    FROM (SELECT id, state AS previous, sending_since AS previous_since, uncertain_since
          FROM notifications WHERE id = ANY($1::bigint[])
          ORDER BY id FOR UPDATE) AS b  -- locked in id order: two claims never deadlock
    WHERE n.id = b.id AND n.due_at <= $2 AND (
          n.state = 'scheduled'
       OR (n.state = 'sending' AND n.sending_since < clock_timestamp() - $3::interval))
    -- An earlier attempt may have reached the provider (its worker died mid-send, or it got
    -- no answer): ask_since is when the earliest such attempt began.
    RETURNING {", ".join(f"n.{c}" for c in Notification.__struct_fields__)},
              (b.previous = 'sending' OR b.uncertain_since IS NOT NULL) AS interrupted,
              least(b.uncertain_since, CASE WHEN b.previous = 'sending'
                                            THEN b.previous_since END) AS ask_since
)
SELECT c.*,
       o.order_id IS NOT NULL AS has_order, o.customer_name, o.email_consent, o.sms_consent,
       o.items, o.timezone AS order_timezone,
       s.shipment_id IS NOT NULL AS has_shipment, s.carrier, s.tracking_number, s.status,
       s.eta_p10, s.eta_p90, s.promised_delivery_date, s.destination_postal_code,
       s.destination_country,
       EXISTS (SELECT 1 FROM opt_outs x WHERE x.channel = c.channel
                                          AND x.address = c.recipient) AS opted_out,
       EXISTS (SELECT 1 FROM order_mutes m WHERE m.order_id = c.order_id) AS muted,
       e.description AS last_description, e.location AS last_location,
       e.occurred_at AS last_occurred_at,
       p.eta_p10 AS previous_eta_p10, p.eta_p90 AS previous_eta_p90
FROM claimed c
LEFT JOIN orders o ON o.order_id = c.order_id
LEFT JOIN shipments s ON s.shipment_id = c.shipment_id
LEFT JOIN LATERAL (
    SELECT description, location, occurred_at FROM tracking_events t
    WHERE t.carrier = s.carrier AND t.tracking_number = s.tracking_number
      AND t.status <> 'unknown'
    ORDER BY occurred_at DESC, id DESC LIMIT 1) e ON true
LEFT JOIN LATERAL (
    SELECT x.eta_p10, x.eta_p90 FROM shipment_etas x
    WHERE x.shipment_id = c.shipment_id AND NOT x.shadow
      AND x.predicted_at <= coalesce(
          (SELECT max(m.sent_at) FROM notifications m
           WHERE m.shipment_id = c.shipment_id AND m.state = 'sent'),
          (SELECT min(f.predicted_at) FROM shipment_etas f
           WHERE f.shipment_id = c.shipment_id AND NOT f.shadow))
    ORDER BY x.predicted_at DESC, x.id DESC LIMIT 1) p ON true
"""


async def claim_for_send(conn: asyncpg.Connection, notification_id: int, now: datetime,
                         lease: timedelta) -> ClaimedSend | None:
    """Take a due notification for sending (or one whose sender vanished: `sending` for longer
    than `lease`, real time) together with its order, shipment, opt-out and latest scan;
    `interrupted` and `ask_since` say whether (and since when) to ask the provider first."""
    return (await claim_many_for_send(conn, [notification_id], now, lease)).get(notification_id)


async def claim_many_for_send(conn: asyncpg.Connection, notification_ids: Sequence[int],
                              now: datetime, lease: timedelta) -> dict[int, ClaimedSend]:
    """:func:`claim_for_send` for several notifications in one statement: the ones taken,
    by id (a notification not due, or held by a live sender, is absent)."""
    claimed: dict[int, ClaimedSend] = {}
    for row in await conn.fetch(CLAIM_FOR_SEND, list(notification_ids), now, lease):
        fields = dict(row)
        notification = Notification(**{k: fields.pop(k) for k in Notification.__struct_fields__})
        claimed[notification.id] = ClaimedSend(notification=notification, **fields)
    return claimed


@dataclass(frozen=True)
class SentRecord:
    """A send the provider accepted, to be recorded (with its work item retired)."""

    notification_id: int
    work_item_id: int
    provider_id: str
    subject: str | None
    body: str
    sent_at: datetime


async def record_sent(conn: asyncpg.Connection, records: Sequence[SentRecord]) -> None:
    """Sent, and their work items retired: one statement, so all or none. Rows are taken in
    id order (two such statements, or a lease renewal, never wait on each other in a cycle)."""
    rows = sorted(records, key=lambda r: r.notification_id)
    await conn.execute(
        """WITH r AS (
               SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                                    $5::timestamptz[])
                   AS r(id, provider_id, subject, body, sent_at)),
           done AS (DELETE FROM work_items WHERE id = ANY($6::bigint[]))
           UPDATE notifications n SET state = 'sent', provider_id = r.provider_id,
                  subject = r.subject, body = r.body, sent_at = r.sent_at,
                  updated_at = r.sent_at, sending_since = NULL, last_error = NULL,
                  uncertain_since = NULL
           FROM r WHERE n.id = r.id""",
        [r.notification_id for r in rows], [r.provider_id for r in rows],
        [r.subject for r in rows], [r.body for r in rows], [r.sent_at for r in rows],
        sorted(r.work_item_id for r in rows))


@dataclass(frozen=True)
class SmsWords:
    """The words of an SMS about to be handed to the provider."""

    notification_id: int
    body: str


async def note_words(conn: asyncpg.Connection, rows: Sequence[SmsWords]) -> None:
    """Remember the words of SMS about to go out, before they go: a send whose worker dies
    before recording it is taken over by another, which asks the provider for these words
    and, if they never arrived, sends these (not a fresh rendering, which may differ once
    the ETA has moved: the provider's list is matched on the words, and the customer never
    gets two versions). Only rows still being sent are touched."""
    ordered = sorted(rows, key=lambda r: r.notification_id)
    await conn.execute(
        """UPDATE notifications n SET body = w.body
           FROM unnest($1::bigint[], $2::text[]) AS w(id, body)
           WHERE n.id = w.id AND n.state = 'sending'""",
        [r.notification_id for r in ordered], [r.body for r in ordered])


async def get(conn: asyncpg.Connection, notification_id: int) -> Notification | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM notifications WHERE id = $1",
                              notification_id)
    return Notification(**row) if row else None


async def mark(conn: asyncpg.Connection, notification_id: int, state: str, error: str | None,
               now: datetime, *, uncertain_since: datetime | None = None,
               uncertain_body: str | None = None) -> None:
    """End a notification as failed, dead or suppressed (`uncertain_since` and
    `uncertain_body` as in reschedule: a retry by hand asks the provider first)."""
    await conn.execute(
        """UPDATE notifications SET state = $2, last_error = $3, updated_at = $4,
                  sending_since = NULL, uncertain_since = least(uncertain_since, $5),
                  body = coalesce($6, body)
           WHERE id = $1""",
        notification_id, state, error, now, uncertain_since, uncertain_body)


async def reschedule(conn: asyncpg.Connection, notification_id: int, due_at: datetime,
                     error: str, now: datetime, *, uncertain_since: datetime | None = None,
                     uncertain_body: str | None = None, attempted: bool = True) -> None:
    """Back to waiting after a transient failure, with a new send queued for `due_at`.

    `uncertain_since`: an attempt begun then may have reached the provider, so the next
    attempts ask first (the earliest such time is kept until the message is recorded sent);
    `uncertain_body`: the words that attempt sent, which the next ones send again (the
    provider's list is matched on them). `attempted=False`: this claim only waited (it sent
    nothing), so it is not counted.
    """
    await conn.execute(
        """UPDATE notifications SET state = 'scheduled', due_at = $2, last_error = $3,
                  updated_at = $4, sending_since = NULL,
                  uncertain_since = least(uncertain_since, $5), body = coalesce($7, body),
                  attempts = attempts - CASE WHEN $6 THEN 0 ELSE 1 END
           WHERE id = $1""",
        notification_id, due_at, error, now, uncertain_since, attempted, uncertain_body)
    await work.add(conn, SEND_NOTIFICATION, [str(notification_id)], now, run_after=due_at)


async def list_failed(conn: asyncpg.Connection, limit: int = 100) -> list[Notification]:
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM notifications WHERE state IN ('dead', 'failed')
            ORDER BY updated_at DESC LIMIT $1""", limit)
    return [Notification(**r) for r in rows]


async def retry(conn: asyncpg.Connection, notification_id: int, now: datetime) -> bool:
    """Re-queue a dead or failed notification; False if there is no such one."""
    found = await conn.fetchval(
        """UPDATE notifications SET state = 'scheduled', due_at = $2, attempts = 0,
                  updated_at = $2 WHERE id = $1 AND state IN ('dead', 'failed') RETURNING id""",
        notification_id, now)
    if found is None:
        return False
    await work.add(conn, SEND_NOTIFICATION, [str(notification_id)], now)
    return True


async def record_provider_status(conn: asyncpg.Connection, provider_id: str, status: str,
                                 now: datetime) -> bool:
    result: str = await conn.execute(
        "UPDATE notifications SET provider_status = $2, updated_at = $3 WHERE provider_id = $1",
        provider_id, status, now)
    return result.endswith(" 1")


async def opt_out(conn: asyncpg.Connection, channel: str, address: str, source: str,
                  now: datetime) -> None:
    """Stop a channel for an address, and drop whatever was still waiting for it."""
    await conn.execute(
        """INSERT INTO opt_outs (channel, address, source, created_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (channel, address) DO NOTHING""", channel, address, source, now)
    await conn.execute(
        """UPDATE notifications SET state = 'suppressed', last_error = 'opted out',
                  updated_at = $3
           WHERE channel = $1 AND recipient = $2 AND state = 'scheduled'""",
        channel, address, now)


async def opted_out(conn: asyncpg.Connection, channel: str, address: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM opt_outs WHERE channel = $1 AND address = $2)",
        channel, address)
    return found


async def opt_in(conn: asyncpg.Connection, channel: str, address: str) -> None:
    await conn.execute("DELETE FROM opt_outs WHERE channel = $1 AND address = $2",
                       channel, address)




# A copy an agent asked for: same shipment, moment and channel, its own key (so "at most once
# per moment" still holds for everything the planner schedules).
RESEND_KEY_PREFIX = "resend:"


def is_resend(notification: Notification) -> bool:
    return notification.moment_key.startswith(RESEND_KEY_PREFIX)


async def for_shipment(conn: asyncpg.Connection, shipment_id: str) -> list[Notification]:
    """Every notification of a shipment, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM notifications WHERE shipment_id = $1
            ORDER BY created_at, id""", shipment_id)
    return [Notification(**r) for r in rows]


async def resend(conn: asyncpg.Connection, original: Notification, recipient: str,
                 locale: str, now: datetime) -> int:
    """Schedule a new copy of `original` to `recipient`, due now, and queue its send."""
    new_id: int = await conn.fetchval(
        """INSERT INTO notifications (shipment_id, order_id, moment, moment_key, channel,
                                      recipient, locale, due_at, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8)
           RETURNING id""",
        original.shipment_id, original.order_id, original.moment,
        f"{RESEND_KEY_PREFIX}{original.id}:{secrets.token_hex(4)}", original.channel,
        recipient, locale, now)
    await work.add(conn, SEND_NOTIFICATION, [str(new_id)], now)
    return new_id


async def suppress_waiting(conn: asyncpg.Connection, reason: str, now: datetime, *,
                           order_id: str | None = None, shipment_id: str | None = None) -> int:
    """Drop the still-waiting notifications of an order (muted) or a shipment (lost)."""
    column, value = ("order_id", order_id) if order_id is not None else (
        "shipment_id", shipment_id)
    result: str = await conn.execute(
        f"""UPDATE notifications SET state = 'suppressed', last_error = $2, updated_at = $3
            WHERE {column} = $1 AND state = 'scheduled'""", value, reason, now)
    return int(result.split()[-1])
