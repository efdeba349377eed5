"""The OpenAPI 3.1 document, built from the route table and the models it names.

Besides each route's own answers, the document states the ones every route of its kind
really gives (see `_errors`): a JSON body's 400/413/415/422, a form's 400/413/415, a key's
401/403, a signature's 401, a malformed path or query value's 422, an unmatched path's 404,
and 503 while PostgreSQL is unavailable. Tests (and Schemathesis against the live app)
hold the handlers to it.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.api import schemas as outputs
from service.api import support_schemas as support_outputs
from service.api.routes import ROUTES, Route
from service.inputs import ID_PATTERN
from service.limits import MAX_JSON_DEPTH

REF = "#/components/schemas/{model}"
HTML = {"text/html": {"schema": {"type": "string"}}}
ID_PARAM = {"type": "string", "pattern": ID_PATTERN}

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
    ("POST", "/v1/webhooks/shopify"): outputs.WebhookAnswer,
    ("POST", "/v1/webhooks/easypost"): outputs.WebhookAnswer,
    ("POST", "/v1/webhooks/aftership"): outputs.WebhookAnswer,
    ("GET", "/v1/support/search"): support_outputs.SearchOut,
    ("GET", "/v1/support/shipments/{shipment_id}"): support_outputs.SupportShipmentOut,
    ("GET", "/v1/support/orders/{order_id}/audit"): support_outputs.AuditOut,
    ("POST", "/v1/support/notifications/{notification_id}/resend"): support_outputs.ActionOut,
    ("POST", "/v1/support/orders/{order_id}/mute"): support_outputs.ActionOut,
    ("POST", "/v1/support/shipments/{shipment_id}/lost"): support_outputs.ActionOut,
    ("POST", "/v1/support/shipments/{shipment_id}/delivered"): support_outputs.ActionOut,
}
# Success bodies that are not JSON.
OTHER_CONTENT: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/metrics"): {"text/plain": {"schema": {"type": "string"}}},
    ("GET", "/openapi.json"): {"application/json": {"schema": {"type": "object"}}},
    ("POST", "/v1/webhooks/twilio/inbound"): {"application/xml": {"schema": {"type": "string"}}},
}


class _Components:
    """Schemas of the document's models, named without collisions (two `Address` models,
    ours and Shopify's, become distinct components)."""

    def __init__(self) -> None:
        self.wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
        self.msgspec: dict[str, Any] = {}

    def ref(self, model: type[Any], mode: JsonSchemaMode) -> dict[str, Any]:
        """A placeholder for the model's schema, resolved by `resolve` once all are known."""
        if isinstance(model, type) and issubclass(model, msgspec.Struct):
            schema = msgspec.json.schema(model, ref_template=REF.replace("model", "name"))
            self.msgspec.update(schema.pop("$defs", {}))
            return schema
        if (model, mode) not in self.wanted:
            self.wanted.append((model, mode))
        return {"$ref": f"pending:{self.wanted.index((model, mode))}"}

    def problem(self) -> dict[str, Any]:
        return {"application/problem+json": {"schema": self.ref(outputs.Problem,
                                                                "serialization")}}

    def resolve(self, document: dict[str, Any]) -> dict[str, Any]:
        refs, defs = models_json_schema(self.wanted, ref_template=REF)
        placeholders = {f"pending:{i}": refs[key]["$ref"] for i, key in enumerate(self.wanted)}

        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                if isinstance(value.get("$ref"), str) and value["$ref"] in placeholders:
                    return {**value, "$ref": placeholders[value["$ref"]]}
                if "pattern" in value and "format" in value:
                    # Our time patterns say all a format would (service.limits); both at
                    # once can only be met by filtering generated values.
                    value = {k: v for k, v in value.items() if k != "format"}
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        document["components"]["schemas"] = {**self.msgspec, **defs.get("$defs", {})}
        resolved: dict[str, Any] = walk(document)
        return resolved


def _errors(route: Route) -> dict[int, str]:
    """The error answers a route gives because of what it takes (see the module doc)."""
    found: dict[int, str] = {}
    if route.body is not None:
        found |= {400: "not JSON, not UTF-8, or nested deeper than 1,024 levels",
                  413: "body over PARCELCAST_MAX_BODY_BYTES",
                  415: "not a JSON media type",
                  422: f"invalid fields (incl. text with U+0000, JSON deeper than "
                       f"{MAX_JSON_DEPTH} levels); each is named"}
    if route.form_body is not None:
        found |= {400: "not UTF-8 url-encoded", 413: "body over PARCELCAST_MAX_BODY_BYTES",
                  415: "not application/x-www-form-urlencoded",
                  422: "a field we store is missing or malformed"}
    if route.scope is not None:
        found |= {401: "missing or unknown API key", 403: "the key lacks the scope"}
    if route.signature is not None:
        found[401] = f"missing or invalid {route.signature}"
    if re.search(r"{\w+}", route.path):
        found[404] = "no such resource (or a path that matches no route)"
        if not route.html:
            found[422] = found.get(422, "a malformed path parameter")
    if route.query:
        found[422] = found.get(422, "a malformed query parameter")
    if route.store:
        found[503] = "PostgreSQL is unavailable for a moment; retry after Retry-After seconds"
    return found


def _parameters(route: Route) -> list[dict[str, Any]]:
    path = [{"name": name, "in": "path", "required": True,
             "schema": {"type": "string"} if route.html else ID_PARAM}
            for name in re.findall(r"{(\w+)}", route.path)]
    query = [{"name": name, "in": "query", "schema": ID_PARAM} for name in route.query]
    headers = []
    if route.signature is not None:
        headers.append({"name": route.signature, "in": "header", "required": True,
                        "description": "the sender's signature over the raw body",
                        "schema": {"type": "string"}})
    headers += [{"name": name, "in": "header", "schema": {"type": "string"}}
                for name in route.headers]
    return path + query + headers


def _request_body(route: Route, components: _Components) -> dict[str, Any] | None:
    if route.form_body is not None:
        schema = components.ref(route.form_body, "validation")
        return {"required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": schema}}}
    if route.body is None:
        return None
    body = components.ref(route.body, "validation")
    if route.batch_body:
        body = {"oneOf": [
            body,
            {"type": "array", "items": body, "minItems": 1, "maxItems": 1000},
            {"type": "object", "required": ["events"],
             "properties": {"events": {"type": "array", "items": body, "minItems": 1,
                                       "maxItems": 1000}}},
        ]}
    return {"required": True, "content": {"application/json": {"schema": body}}}


def _response(route: Route, status: int, description: str, components: _Components
              ) -> dict[str, Any]:
    entry: dict[str, Any] = {"description": description}
    key = (route.method, route.path)
    model = RESPONSE_MODELS.get(key)
    if route.html and status in route.responses and status not in (303, 204):
        # A page's own answers are pages; 404 is also the JSON problem of a path no route
        # matches (e.g. an empty token). The edge's answers (413, 503...) stay problem+json.
        entry["content"] = HTML | components.problem() if status == 404 else HTML
    elif status in (204, 303):
        pass
    elif status < 400 and key in OTHER_CONTENT:
        entry["content"] = OTHER_CONTENT[key]
    elif status < 400 and model is not None:
        entry["content"] = {
            "application/json": {"schema": components.ref(model, "serialization")}}
    elif status >= 400:
        entry["content"] = components.problem()
    if status in (503,) or (status == 401 and (route.scope or key == ("GET", "/metrics"))):
        header = "Retry-After" if status == 503 else "WWW-Authenticate"
        entry["headers"] = {header: {"schema": {"type": "string"}}}
    return entry


def _operation(route: Route, components: _Components) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
    params = _parameters(route)
    if params:
        op["parameters"] = params
    body = _request_body(route, components)
    if body is not None:
        op["requestBody"] = body
    if route.scope is not None:
        op["security"] = [{"apiKey": [route.scope]}]
        op["description"] = f"Needs an API key with the `{route.scope}` scope (or `admin`)."
    statuses = {**_errors(route), **route.responses}
    op["responses"] = {str(status): _response(route, status, statuses[status], components)
                       for status in sorted(statuses)}
    return op


@functools.cache
def document() -> dict[str, Any]:
    components = _Components()
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return components.resolve({
        "openapi": "3.1.0",
        "info": {"title": "Parcelcast API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {},
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    })
