"""The support API's actions, each in the order's audit log: resend, mute, lost, delivered."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.api.bodies import read_json, validate
from service.api.keys import clock_key, pool_key
from service.api.principal import principal
from service.api.responses import json_response
from service.api.support_present import audit_json
from service.api.views.params import path_id
from service.errors import FieldError, ProblemError, not_found, validation_failed
from service.inputs import MarkDeliveredIn, MarkLostIn, MuteIn, SupportNoteIn
from service.support import actions


def problem(exc: actions.NotFound | actions.Refused) -> ProblemError:
    """A domain refusal as the web says it."""
    if isinstance(exc, actions.NotFound):
        return not_found(exc.what, exc.key)
    return ProblemError(409, "Conflict", str(exc),
                        type_slug="https://parcelcast.dev/problems/support-refused")


async def _run(request: web.Request, action: Any) -> web.Response:
    try:
        async with request.app[pool_key].acquire() as conn:
            outcome = await action(conn, principal(request).actor,
                                   request.app[clock_key].now())
    except (actions.NotFound, actions.Refused) as exc:
        raise problem(exc) from None
    entry, notification_id = outcome if isinstance(outcome, tuple) else (outcome, None)
    body: dict[str, Any] = {"done": audit_json(entry)}
    if notification_id is not None:
        body["notification_id"] = notification_id
    return json_response(body, 201 if notification_id is not None else 200)


async def resend(request: web.Request) -> web.Response:
    raw = path_id(request, "notification_id")
    if not raw.isdigit() or len(raw) > 18:
        raise validation_failed([FieldError("notification_id", "must be a number", "type")])
    body = validate(SupportNoteIn, await read_json(request))
    return await _run(request, lambda conn, actor, now: actions.resend(
        conn, int(raw), actor, body.note, now))


async def mute(request: web.Request) -> web.Response:
    order_id = path_id(request, "order_id")
    body = validate(MuteIn, await read_json(request))
    return await _run(request, lambda conn, actor, now: actions.mute(
        conn, order_id, body.muted, actor, body.note, now))


async def mark_lost(request: web.Request) -> web.Response:
    shipment_id = path_id(request, "shipment_id")
    body = validate(MarkLostIn, await read_json(request))
    return await _run(request, lambda conn, actor, now: actions.mark_lost(
        conn, shipment_id, actor, body.note, now))


async def mark_delivered(request: web.Request) -> web.Response:
    shipment_id = path_id(request, "shipment_id")
    body = validate(MarkDeliveredIn, await read_json(request))
    return await _run(request, lambda conn, actor, now: actions.mark_delivered(
        conn, shipment_id, actor, body.note, now, body.delivered_at))
