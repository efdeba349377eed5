"""POST /v1/tracking-events: one event, or a batch of up to 1,000."""

from __future__ import annotations

import msgspec
from aiohttp import web

from service.api.bodies import malformed, read_body
from service.api.keys import clock_key, coalescer_key, metrics_key, pool_key, quality_key
from service.api.principal import principal
from service.api.responses import json_response
from service.errors import FieldError, validation_failed
from service.inputs import MAX_BATCH
from service.integrations import CarrierEstimate
from service.store import events as events_db
from service.store import webhooks as webhooks_db
from service.store.quality import QualityBatch
from service.tracking.ingest import BatchOutcome, count_new, parse_event, split_items, to_row

# Requests with fewer rows than this share statements with concurrent ones.
COALESCE_BELOW = 100


class _Envelope(msgspec.Struct):
    events: list[msgspec.Raw] | None = None


_decode_envelope = msgspec.json.Decoder(_Envelope)


def _items(body: bytes) -> tuple[list[msgspec.Raw] | list[bytes], str]:
    """Accept {"events": [...]}, a bare list, or a single event object, as raw items."""
    try:
        if body.lstrip()[:1] == b"[":
            items = split_items(body)
            if items is None:
                raise validation_failed([FieldError("events", "must be a list", "type")])
            return items, "events"
        envelope = _decode_envelope.decode(body)
    except msgspec.DecodeError as exc:
        raise malformed(exc) from None
    except RecursionError:
        raise malformed("it is nested too deeply") from None
    except msgspec.ValidationError:
        # Valid JSON that is neither an object nor a list, or "events" that is not a list.
        if body.lstrip()[:1] == b"{":
            raise validation_failed([FieldError("events", "must be a list of events", "type")]
                                    ) from None
        raise validation_failed([FieldError("body", "must be an event object or a list", "type")]
                                ) from None
    if envelope.events is not None:
        return envelope.events, "events"
    return [body], ""


async def post_tracking_events(request: web.Request) -> web.Response:
    items, prefix = _items(await read_body(request))
    if not items:
        raise validation_failed([FieldError("events", "must hold at least one event", "too_short")])
    if len(items) > MAX_BATCH:
        raise validation_failed([FieldError(
            "events", f"at most {MAX_BATCH} events per request, got {len(items)}", "too_long"
        )])
    rows = []
    estimates: list[CarrierEstimate] = []
    rejected: list[tuple[int, list[FieldError]]] = []
    for index, raw in enumerate(items):
        event, errors = parse_event(raw, f"{prefix}.{index}" if prefix else "")
        if event is None:
            if not prefix:
                # A single event that is wrong is a plain 422, not a 202 with zero accepted.
                raise validation_failed(errors)
            rejected.append((index, errors))
        else:
            rows.append(to_row(event, raw))
            if event.estimated_delivery is not None:
                estimates.append(CarrierEstimate(
                    event.carrier, event.tracking_number, event.estimated_delivery,
                    "tracking_event", event.occurred_at))
    now = request.app[clock_key].now()
    source = f"api:{principal(request).actor}"
    quality = QualityBatch()
    if estimates:
        # Before the events: the refresh their ingestion queues must see the estimate.
        async with request.app[pool_key].acquire() as conn:
            kept = await webhooks_db.set_estimates(conn, estimates, now)
        for carrier in kept.before_shipment:
            quality.count(now, source, carrier, "estimate_before_shipment")
    if len(rows) < COALESCE_BELOW:
        result = await request.app[coalescer_key].ingest(rows)
    else:
        async with request.app[pool_key].acquire() as conn:
            result = await events_db.ingest(conn, rows, now)
    accepted_keys = result.accepted_keys
    # The counters are written with other requests' about once a second, off this request.
    quality.batch(source, rows, accepted_keys, now, len(rejected), result.after_delivery)
    request.app[quality_key].add(quality)
    accepted, duplicates = count_new(rows, accepted_keys)
    metrics = request.app[metrics_key]
    metrics.events.labels("accepted").inc(accepted)
    metrics.events.labels("duplicate").inc(duplicates)
    metrics.events.labels("rejected").inc(len(rejected))
    for row in rows:
        if row.status == "unknown" and row.dedupe_key in accepted_keys:
            metrics.unknown_status.labels(row.carrier).inc()
    return json_response(BatchOutcome(accepted, duplicates, rejected).as_dict(), 202)
