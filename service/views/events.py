"""POST /v1/tracking-events: one event, or a batch of up to 1,000."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.db import events as events_db
from service.errors import FieldError, validation_failed
from service.ingest import BatchOutcome, count_new, to_row
from service.keys import clock_key, metrics_key, pool_key
from service.models import MAX_BATCH, TrackingEventIn
from service.responses import json_response
from service.validation import read_json, validate, validate_items


def _items(body: Any) -> tuple[list[Any], str]:
    """Accept {"events": [...]}, a bare list, or a single event object."""
    if isinstance(body, list):
        return body, "events"
    if isinstance(body, dict) and "events" in body:
        if not isinstance(body["events"], list):
            raise validation_failed([FieldError("events", "must be a list of events", "type")])
        return body["events"], "events"
    if isinstance(body, dict):
        return [body], "event"
    raise validation_failed([FieldError("body", "must be an event object or a list", "type")])


async def post_tracking_events(request: web.Request) -> web.Response:
    items, prefix = _items(await read_json(request))
    if not items:
        raise validation_failed([FieldError("events", "must hold at least one event", "too_short")])
    if len(items) > MAX_BATCH:
        raise validation_failed([FieldError(
            "events", f"at most {MAX_BATCH} events per request, got {len(items)}", "too_long"
        )])
    if prefix == "event":
        # A single event that is wrong is a plain 422, not a 202 with zero accepted.
        good, bad = [(0, validate(TrackingEventIn, items[0]))], []
    else:
        good, bad = validate_items(TrackingEventIn, items, prefix)
    rows = [to_row(event, items[index]) for index, event in good]
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as conn:
        result = await events_db.ingest(conn, rows, now)
    accepted, duplicates = count_new(rows, result.accepted_keys)
    outcome = BatchOutcome(accepted, duplicates, bad)
    metrics = request.app[metrics_key]
    metrics.events.labels("accepted").inc(accepted)
    metrics.events.labels("duplicate").inc(duplicates)
    metrics.events.labels("rejected").inc(len(bad))
    for row in rows:
        if row.status == "unknown" and row.dedupe_key in result.accepted_keys:
            metrics.unknown_status.labels(row.carrier).inc()
    return json_response(outcome.as_dict(), 202)
