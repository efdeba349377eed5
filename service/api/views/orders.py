"""PUT and GET /v1/orders/{order_id}."""

from __future__ import annotations

from aiohttp import web

from service.api.bodies import read_json, validate
from service.api.keys import clock_key, pool_key, settings_key
from service.api.present import order_json
from service.api.responses import json_response
from service.api.shipment_view import shipment_view
from service.api.views.params import path_id
from service.errors import not_found
from service.inputs import OrderIn
from service.store import orders as orders_db
from service.store import shipments as shipments_db


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
            shipments.append(await shipment_view(
                conn, shipment, request.app[settings_key].shop_timezone, row))
    return json_response(order_json(row, shipments))
