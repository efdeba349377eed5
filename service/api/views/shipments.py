"""PUT and GET /v1/shipments/{shipment_id}, and GET /v1/shipments?tracking_number=|order_id=."""

from __future__ import annotations

from aiohttp import web

from service.api.bodies import read_json, validate
from service.api.keys import clock_key, pool_key, settings_key
from service.api.responses import json_response
from service.api.shipment_view import shipment_view
from service.api.views.params import path_id, query_id
from service.errors import FieldError, ProblemError, not_found, validation_failed
from service.inputs import ShipmentIn
from service.store import shipments as shipments_db


async def put_shipment(request: web.Request) -> web.Response:
    shipment_id = path_id(request, "shipment_id")
    shipment = validate(ShipmentIn, await read_json(request))
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        try:
            created = await shipments_db.upsert(conn, shipment_id, shipment, now)
        except shipments_db.TrackingNumberTaken:
            raise ProblemError(
                409, "Conflict",
                f"{shipment.carrier} tracking number {shipment.tracking_number!r} already "
                "belongs to another shipment",
                [FieldError("tracking_number", "already used by another shipment", "conflict")],
            ) from None
    return json_response({"shipment_id": shipment_id, "created": created}, 201 if created else 200)


async def get_shipment(request: web.Request) -> web.Response:
    shipment_id = path_id(request, "shipment_id")
    async with request.app[pool_key].acquire() as conn:
        row = await shipments_db.get(conn, shipment_id)
        if row is None:
            raise not_found("shipment", shipment_id)
        view = await shipment_view(conn, row, request.app[settings_key].shop_timezone)
    return json_response(view)


async def list_shipments(request: web.Request) -> web.Response:
    tracking_number = query_id(request, "tracking_number")
    order_id = query_id(request, "order_id")
    if tracking_number is None and order_id is None:
        raise validation_failed([FieldError(
            "tracking_number", "give tracking_number or order_id as a query parameter", "missing"
        )])
    async with request.app[pool_key].acquire() as conn:
        rows = await shipments_db.find(conn, tracking_number=tracking_number, order_id=order_id)
        zone = request.app[settings_key].shop_timezone
        shipments = [await shipment_view(conn, row, zone) for row in rows]
    return json_response({"shipments": shipments})
