"""/openapi.json is valid OpenAPI 3.1 and describes the handlers that really run."""

from __future__ import annotations

from typing import Any

import jsonschema
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from tests.builders import event, order, shipment


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "components": doc["components"]}


def _check(doc: dict[str, Any], method: str, path: str, status: int, body: Any) -> None:
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path} answered an undocumented {status}"
    content = responses[str(status)].get("content", {})
    schema = next(iter(content.values()))["schema"]
    # Refs are "#/components/schemas/X": resolve them against the document itself.
    jsonschema.validate(body, {**schema, "components": doc["components"]})


async def test_document_is_valid_and_matches_the_router(client: TestClient) -> None:
    doc = await (await client.get("/openapi.json")).json()
    validate(doc)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert documented == served


async def test_real_responses_match_their_documented_schemas(
    client: TestClient, admin: dict[str, str]
) -> None:
    doc = await (await client.get("/openapi.json")).json()
    calls = [
        ("put", "/v1/orders/o-1", "/v1/orders/{order_id}", order()),
        ("put", "/v1/shipments/s-1", "/v1/shipments/{shipment_id}", shipment()),
        ("post", "/v1/tracking-events", "/v1/tracking-events",
         [event("in_transit", "2026-11-03T10:00:00Z"), {"carrier": "nope"}]),
        ("get", "/v1/shipments/s-1", "/v1/shipments/{shipment_id}", None),
        ("get", "/v1/shipments?order_id=o-1", "/v1/shipments", None),
        ("get", "/v1/orders/o-1", "/v1/orders/{order_id}", None),
        ("get", "/v1/orders/missing", "/v1/orders/{order_id}", None),
        ("put", "/v1/orders/o-2", "/v1/orders/{order_id}", {"placed_at": "bad"}),
        ("get", "/healthz", "/healthz", None),
        ("get", "/readyz", "/readyz", None),
    ]
    for method, url, path, body in calls:
        answer = await client.request(method, url, json=body, headers=admin)
        _check(doc, method, path, answer.status, await answer.json())
    unauthorized = await client.get("/v1/orders/o-1")
    _check(doc, "get", "/v1/orders/{order_id}", 401, await unauthorized.json())
