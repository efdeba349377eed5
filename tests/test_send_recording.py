"""Accepted sends recorded together (workers/sending/recording.py), on a real PostgreSQL: each
ends `sent` with its own provider id and its work item gone; one that cannot be written
fails alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from service.store.notifications import SentRecord
from workers.sending.recording import SentRecorder

NOW = datetime(2026, 11, 3, 20, 0, tzinfo=UTC)


async def _sending(pool: asyncpg.Pool, count: int) -> list[tuple[int, int]]:
    """`count` notifications being sent, each with its work item: (notification, item) ids."""
    async with pool.acquire() as conn, conn.transaction():
        ids = await conn.fetch(
            """INSERT INTO notifications (shipment_id, order_id, moment, channel, recipient,
                   locale, state, due_at, sending_since, created_at, updated_at)
               SELECT 's' || i, 'o' || i, 'shipped', 'sms', '+1415555' || lpad(i::text, 4, '0'),
                      'en', 'sending', $2, $2, $2, $2
               FROM generate_series(1, $1) AS i RETURNING id""", count, NOW)
        items = await conn.fetch(
            """INSERT INTO work_items (kind, subject_id, run_after, created_at)
               SELECT 'send_notification', id::text, $2, $2 FROM unnest($1::bigint[]) id
               RETURNING id""", [r["id"] for r in ids], NOW)
    return [(n["id"], w["id"]) for n, w in zip(ids, items, strict=True)]


def _record(notification_id: int, work_item_id: int, body: str = "Out for delivery") -> SentRecord:
    return SentRecord(notification_id, work_item_id, f"SM{notification_id}", None, body, NOW)


async def test_sends_finishing_together_are_recorded_together(pool: asyncpg.Pool) -> None:
    sending = await _sending(pool, 30)
    recorder = SentRecorder()
    await asyncio.gather(*(recorder.record(pool, _record(n, w)) for n, w in sending))
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, state, provider_id, sent_at, sending_since "
                                "FROM notifications ORDER BY id")
        items_left = await conn.fetchval("SELECT count(*) FROM work_items")
    assert [(r["state"], r["provider_id"], r["sent_at"], r["sending_since"]) for r in rows] == [
        ("sent", f"SM{n}", NOW, None) for n, _ in sending]
    assert items_left == 0
    # Thirty sends that finished in the same instant: far fewer statements than sends.
    assert recorder.writes <= 2


async def test_a_send_that_cannot_be_recorded_fails_alone(pool: asyncpg.Pool) -> None:
    sending = await _sending(pool, 5)
    recorder = SentRecorder()
    bad_id = sending[2][0]
    outcomes = await asyncio.gather(
        *(recorder.record(pool, _record(n, w, body="NUL \x00 byte" if n == bad_id else "ok"))
          for n, w in sending), return_exceptions=True)
    failed = [n for (n, _), outcome in zip(sending, outcomes, strict=True)
              if isinstance(outcome, Exception)]
    assert failed == [bad_id]
    async with pool.acquire() as conn:
        states = dict(await conn.fetch("SELECT id, state FROM notifications"))
        items = {r["subject_id"] for r in await conn.fetch("SELECT subject_id FROM work_items")}
    assert states == {n: ("sending" if n == bad_id else "sent") for n, _ in sending}
    assert items == {str(bad_id)}  # its work item stays: the send is handed over again


async def test_a_record_that_waits_is_written_by_the_next_statement(pool: asyncpg.Pool) -> None:
    """One send finishing while another's write is in flight is not lost or left waiting."""
    first, second = await _sending(pool, 2)
    recorder = SentRecorder()
    task = asyncio.create_task(recorder.record(pool, _record(*first)))
    await asyncio.sleep(0)  # the first write has started
    await recorder.record(pool, _record(*second))
    await task
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE state = 'sent'") == 2


async def test_one_send_alone_is_recorded_at_once(pool: asyncpg.Pool) -> None:
    [(n, w)] = await _sending(pool, 1)
    recorder = SentRecorder()
    await recorder.record(pool, _record(n, w))
    assert recorder.writes == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM notifications WHERE id = $1", n) == "sent"
