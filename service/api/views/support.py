"""The support API's reads: find shipments, one shipment with everything, an order's audit."""

from __future__ import annotations

from aiohttp import web

from service.api.keys import clock_key, pool_key, settings_key
from service.api.responses import json_response
from service.api.support_present import audit_json, case_json, hit_json
from service.api.views.params import path_id
from service.errors import FieldError, not_found, validation_failed
from service.store import search as search_db
from service.store import shipments as shipments_db
from service.store import support_actions
from service.support.case import load_case
from service.support.search import (
    criteria_for_text,
    criteria_from,
    decode_cursor,
    encode_cursor,
)

SEARCH_FIELDS = ("q", "order_id", "shipment_id", "tracking_number", "email", "phone", "name",
                 "limit", "cursor")
MAX_PAGE = 100


def _page_size(value: str | None) -> int:
    if value is None:
        return 25
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise validation_failed([FieldError("limit", f"must be 1-{MAX_PAGE}", "range")])
    return int(value)


async def search(request: web.Request) -> web.Response:
    """Shipments by any of SEARCH_FIELDS (all given must match; `q` reads free text every
    way it can), newest first, a page at a time."""
    settings = request.app[settings_key]
    query = request.query
    limit = _page_size(query.get("limit"))
    after = None
    if "cursor" in query:
        after = decode_cursor(query["cursor"])
        if after is None:
            raise validation_failed([FieldError("cursor", "not a cursor from a previous page",
                                                "invalid")])
    if "q" in query:
        text = " ".join(query["q"].split())
        if not text:
            raise validation_failed([FieldError("q", "must not be empty", "missing")])
        criteria, match_any = criteria_for_text(text, settings.shop_country), True
    else:
        criteria, errors = criteria_from(
            {k: v for k, v in query.items() if k not in ("limit", "cursor")},
            settings.shop_country)
        if errors:
            raise validation_failed(errors)
        if not criteria.given():
            raise validation_failed([FieldError(
                "q", "give q or one of order_id, shipment_id, tracking_number, email, phone, "
                "name", "missing")])
        match_any = False
    async with request.app[pool_key].acquire() as conn:
        hits, more = await search_db.find(conn, criteria, match_any=match_any, limit=limit,
                                          after=after)
    return json_response({"shipments": [hit_json(h) for h in hits],
                          "next_cursor": encode_cursor(more) if more else None})


async def shipment(request: web.Request) -> web.Response:
    shipment_id = path_id(request, "shipment_id")
    settings = request.app[settings_key]
    async with request.app[pool_key].acquire() as conn:
        row = await shipments_db.get(conn, shipment_id)
        if row is None:
            raise not_found("shipment", shipment_id)
        case = await load_case(conn, row, settings, request.app[clock_key].now())
    return json_response(case_json(case, settings))


async def audit(request: web.Request) -> web.Response:
    order_id = path_id(request, "order_id")
    async with request.app[pool_key].acquire() as conn:
        entries = await support_actions.for_order(conn, order_id)
    return json_response({"order_id": order_id, "entries": [audit_json(e) for e in entries]})
