"""POST /v1/eta/quote: "order now, arrives between X and Y" at checkout, before any shipment."""

from __future__ import annotations

import asyncio

from aiohttp import web

from service.api.bodies import read_json, validate
from service.api.keys import eta_key, pool_key
from service.api.responses import json_response
from service.errors import ProblemError
from service.eta.runtime import modelled, quote_options
from service.inputs import QuoteIn


async def post_quote(request: web.Request) -> web.Response:
    quote = validate(QuoteIn, await read_json(request))
    runtime = request.app[eta_key]
    async with request.app[pool_key].acquire() as conn:
        model = await runtime.current(conn)
        if model is None:
            raise ProblemError(503, "No model", "no ETA model has been trained and promoted yet; "
                               "run `parcelcast train`", headers={"Retry-After": "60"})
        recent = await runtime.recent(conn, quote.order_time)
    carriers = [quote.carrier] if quote.carrier else modelled(model, "carrier")
    services = [quote.service_level] if quote.service_level else modelled(model, "service_level")
    options = await asyncio.to_thread(
        quote_options, model, (quote.origin.postal_code, quote.origin.country),
        (quote.destination.postal_code, quote.destination.country), quote.order_time,
        carriers, services, recent)
    return json_response({
        "order_time": quote.order_time.isoformat(), "model_version": model.version,
        "options": [{"carrier": o.carrier, "service_level": o.service_level,
                     "earliest": o.earliest.isoformat(), "likely": o.likely.isoformat(),
                     "latest": o.latest.isoformat()} for o in options],
    })
