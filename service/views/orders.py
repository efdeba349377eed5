"""PUT and GET /v1/orders/{order_id}."""

from __future__ import annotations

from aiohttp import web

from service.db import orders as orders_db
from service.db import shipments as shipments_db
from service.errors import not_found
from service.keys import clock_key, pool_key
from service.models import OrderIn
from service.present import order_json
from service.responses import json_response
from service.shipment_view import shipment_view
from service.validation import read_json, validate
from service.views.params import path_id


async def put_order(request: web.Request) -> web.Response:
    order_id = path_id(request, "order_id")
    order = validate(OrderIn, await read_json(request))
    async with request.app[pool_key].acquire() as conn:
        created = await orders_db.upsert(conn, order_id, order, request.app[clock_key].now())
    return json_response({"order_id": order_id, "created": created}, 201 if created else 200)


async def get_order(request: web.Request) -> web.Response:
    order_id = path_id(request, "order_id")
    async with request.app[pool_key].acquire() as conn:
        row = await orders_db.get(conn, order_id)
        if row is None:
            raise not_found("order", order_id)
        shipments = []
        for shipment in await shipments_db.find(conn, order_id=order_id):
            shipments.append(await shipment_view(conn, shipment, row))
    return json_response(order_json(row, shipments))
