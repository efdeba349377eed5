"""The OpenAPI 3.1 document, built from the route table and the models it names."""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
from pydantic import BaseModel

from service.api import schemas as outputs
from service.api import support_schemas as support_outputs
from service.api.routes import ROUTES, Route

REF = "#/components/schemas/{model}"

# What each documented route answers with on success.
RESPONSE_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("GET", "/healthz"): outputs.Status,
    ("GET", "/readyz"): outputs.Status,
    ("PUT", "/v1/orders/{order_id}"): outputs.Upserted,
    ("GET", "/v1/orders/{order_id}"): outputs.OrderOut,
    ("PUT", "/v1/shipments/{shipment_id}"): outputs.Upserted,
    ("GET", "/v1/shipments/{shipment_id}"): outputs.ShipmentOut,
    ("GET", "/v1/shipments"): outputs.ShipmentList,
    ("POST", "/v1/tracking-events"): outputs.IngestOutcome,
    ("POST", "/v1/eta/quote"): outputs.QuoteOut,
    ("GET", "/v1/support/search"): support_outputs.SearchOut,
    ("GET", "/v1/support/shipments/{shipment_id}"): support_outputs.SupportShipmentOut,
    ("GET", "/v1/support/orders/{order_id}/audit"): support_outputs.AuditOut,
    ("POST", "/v1/support/notifications/{notification_id}/resend"): support_outputs.ActionOut,
    ("POST", "/v1/support/orders/{order_id}/mute"): support_outputs.ActionOut,
    ("POST", "/v1/support/shipments/{shipment_id}/lost"): support_outputs.ActionOut,
    ("POST", "/v1/support/shipments/{shipment_id}/delivered"): support_outputs.ActionOut,
}


def _schema(model: type[Any], components: dict[str, Any], mode: str) -> dict[str, Any]:
    if isinstance(model, type) and issubclass(model, msgspec.Struct):
        schema = msgspec.json.schema(model, ref_template="#/components/schemas/{name}")
        components.update(schema.pop("$defs", {}))
        return schema
    schema = model.model_json_schema(ref_template=REF, mode=mode)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ] + [{"name": name, "in": "query", "schema": {"type": "string"}} for name in route.query]
    if params:
        op["parameters"] = params
    if route.form_body:
        op["requestBody"] = {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    if route.body is not None:
        body = _schema(route.body, components, "validation")
        if route.batch_body:
            body = {"oneOf": [
                body,
                {"type": "array", "items": body, "maxItems": 1000},
                {"type": "object", "required": ["events"],
                 "properties": {"events": {"type": "array", "items": body, "maxItems": 1000}}},
            ]}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    problem = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}
    responses: dict[str, Any] = {}
    model = RESPONSE_MODELS.get((route.method, route.path))
    for status, description in route.responses.items():
        entry: dict[str, Any] = {"description": description}
        if route.html and status != 303:
            entry["content"] = {"text/html": {"schema": {"type": "string"}}}
        elif status < 400 and route.form_body and status != 204:
            entry["content"] = {"application/xml": {"schema": {"type": "string"}}}
        elif status < 400 and model is not None:
            entry["content"] = {
                "application/json": {"schema": _schema(model, components, "serialization")}
            }
        elif status >= 400:
            entry["content"] = problem
        responses[str(status)] = entry
    errors = {400: "malformed JSON", 413: "body over 1 MB", 415: "not JSON", 422: "invalid fields"}
    if route.body is not None:
        for status, description in errors.items():
            responses.setdefault(str(status), {"description": description, "content": problem})
    if route.scope is not None:
        op["security"] = [{"apiKey": [route.scope]}]
        op["description"] = f"Needs an API key with the `{route.scope}` scope (or `admin`)."
        responses["401"] = {"description": "missing or unknown API key", "content": problem}
        responses["403"] = {"description": "the key lacks the scope", "content": problem}
    op["responses"] = responses
    return op


@functools.cache
def document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    _schema(outputs.Problem, components, "serialization")
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Parcelcast API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
