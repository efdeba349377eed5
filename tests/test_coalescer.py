"""Merged ingest statements share speed, not fate: when one request's rows make the merged
statement fail, every request is stored on its own, and only that one gets an error."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import msgspec

from service.clock import ManualClock
from service.errors import ProblemError
from service.store.events import EventRow, IngestResult
from service.tracking.coalescer import IngestCoalescer
from service.tracking.ingest import parse_event, to_row
from tests.builders import event


def _row(index: int, **changes: object) -> EventRow:
    raw = json.dumps(event("in_transit", f"2026-11-03T{index % 24:02d}:{index % 60:02d}:00Z",
                           tracking_number=f"1ZC{index:04d}")).encode()
    parsed, errors = parse_event(raw)
    assert parsed is not None, errors
    return msgspec.structs.replace(to_row(parsed, raw), **changes)


async def test_one_bad_request_in_a_merged_flush_fails_alone(
        pool: asyncpg.Pool, clock: ManualClock) -> None:
    # One flush at a time: everything submitted while the first runs is merged into one.
    coalescer = IngestCoalescer(pool, clock, max_inflight=1)
    good = [[_row(i)] for i in range(40)]
    # Past the edge's checks (they refuse NUL nowadays), PostgreSQL still cannot store it.
    bad = [_row(99, description="scan\x00text")]
    submissions = [*good[:20], bad, *good[20:]]
    answers = await asyncio.gather(*(coalescer.ingest(rows) for rows in submissions),
                                   return_exceptions=True)
    refused = answers[20]
    assert isinstance(refused, ProblemError) and refused.status == 422
    assert refused.errors[0].field == "events" and refused.errors[0].code == "unstorable"
    assert all(isinstance(a, IngestResult) and len(a.accepted_keys) == 1
               for i, a in enumerate(answers) if i != 20)
    assert coalescer.fallbacks >= 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 40


async def test_a_key_two_requests_sent_is_new_for_the_first_after_a_fallback(
        pool: asyncpg.Pool, clock: ManualClock) -> None:
    coalescer = IngestCoalescer(pool, clock, max_inflight=1)
    row = _row(1)
    bad = [_row(2, description="\x00")]
    answers = await asyncio.gather(
        coalescer.ingest([_row(0)]), coalescer.ingest([row]), coalescer.ingest(bad),
        coalescer.ingest([row]), return_exceptions=True)
    first, second = answers[1], answers[3]
    assert isinstance(first, IngestResult) and isinstance(second, IngestResult)
    assert first.accepted_keys == {row.dedupe_key} and second.accepted_keys == set()
    assert isinstance(answers[2], ProblemError)


async def test_an_outage_is_not_retried_request_by_request(
        pool: asyncpg.Pool, clock: ManualClock) -> None:
    await pool.close()  # as unusable as a database that went away
    coalescer = IngestCoalescer(pool, clock, max_inflight=1)
    answers = await asyncio.gather(*(coalescer.ingest([_row(i)]) for i in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(a, asyncpg.InterfaceError) for a in answers)
    assert coalescer.fallbacks == 0

