"""Notifications: scheduling (at most once per moment), the send lifecycle, opt-outs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from service.store import work

SEND_NOTIFICATION = work.SEND_NOTIFICATION


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
                    keep: Sequence[int], now: datetime) -> int:
    """Mark still-waiting notifications of these moments as replaced by newer news."""
    result: str = await conn.execute(
        """UPDATE notifications SET state = 'superseded', updated_at = $4
           WHERE shipment_id = $1 AND state = 'scheduled' AND moment = ANY($2::text[])
             AND NOT id = ANY($3::bigint[])""",
        shipment_id, list(moments), list(keep), now)
    return int(result.split()[-1])


# One statement: claim, and everything the message needs (order, shipment, opt-out, the
# latest scan). A send costs this and one statement to record it.
CLAIM_FOR_SEND = """
WITH claimed AS (
    UPDATE notifications n SET
        state = 'sending', attempts = n.attempts + 1, updated_at = $2,
        sending_since = clock_timestamp()
    FROM (SELECT id, state AS previous, sending_since AS previous_since, uncertain_since
          FROM notifications WHERE id = $1) AS b
    WHERE n.id = b.id AND n.due_at <= $2 AND (
          n.state = 'scheduled'
       OR (n.state = 'sending' AND n.sending_since < clock_timestamp() - $3::interval))
    -- An earlier attempt may have reached the provider (its worker died mid-send, or it got
    -- no answer): ask_since is when the earliest such attempt began.
    RETURNING n.*, (b.previous = 'sending' OR b.uncertain_since IS NOT NULL) AS interrupted,
              least(b.uncertain_since, CASE WHEN b.previous = 'sending'
                                            THEN b.previous_since END) AS ask_since
)
SELECT c.*,
       o.order_id IS NOT NULL AS has_order, o.customer_name, o.email_consent, o.sms_consent,
       o.items, o.timezone,
       s.shipment_id IS NOT NULL AS has_shipment, s.carrier, s.tracking_number, s.status,
       s.eta_p10, s.eta_p90, s.promised_delivery_date, s.destination_postal_code,
       s.destination_country,
       EXISTS (SELECT 1 FROM opt_outs x WHERE x.channel = c.channel
                                          AND x.address = c.recipient) AS opted_out,
       e.description AS last_description, e.location AS last_location,
       e.occurred_at AS last_occurred_at
FROM claimed c
LEFT JOIN orders o ON o.order_id = c.order_id
LEFT JOIN shipments s ON s.shipment_id = c.shipment_id
LEFT JOIN LATERAL (
    SELECT description, location, occurred_at FROM tracking_events t
    WHERE t.carrier = s.carrier AND t.tracking_number = s.tracking_number
      AND t.status <> 'unknown'
    ORDER BY occurred_at DESC, id DESC LIMIT 1) e ON true
"""


async def claim_for_send(conn: asyncpg.Connection, notification_id: int, now: datetime,
                         lease: timedelta) -> dict[str, Any] | None:
    """Take a due notification for sending (or one whose sender vanished: `sending` for longer
    than `lease`, real time) together with its order, shipment, opt-out and latest scan;
    `interrupted` and `ask_since` say whether (and since when) to ask the provider first."""
    row = await conn.fetchrow(CLAIM_FOR_SEND, notification_id, now, lease)
    return dict(row) if row else None


async def record_sent(conn: asyncpg.Connection, notification_id: int, work_item_id: int,
                      provider_id: str, subject: str | None, body: str, now: datetime) -> None:
    """Sent, and its work item retired: one statement, so both or neither."""
    await conn.execute(
        """WITH done AS (DELETE FROM work_items WHERE id = $6)
           UPDATE notifications SET state = 'sent', provider_id = $2, subject = $3, body = $4,
                  sent_at = $5, updated_at = $5, sending_since = NULL, last_error = NULL,
                  uncertain_since = NULL
           WHERE id = $1""",
        notification_id, provider_id, subject, body, now, work_item_id)


async def get(conn: asyncpg.Connection, notification_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM notifications WHERE id = $1", notification_id)
    return dict(row) if row else None


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


async def list_failed(conn: asyncpg.Connection, limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, shipment_id, moment, channel, recipient, state, attempts, last_error,
                  updated_at FROM notifications WHERE state IN ('dead', 'failed')
           ORDER BY updated_at DESC LIMIT $1""", limit)
    return [dict(r) for r in rows]


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


async def opt_in(conn: asyncpg.Connection, channel: str, address: str) -> None:
    await conn.execute("DELETE FROM opt_outs WHERE channel = $1 AND address = $2",
                       channel, address)


