"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): sign webhook cases.

A generated webhook body with a random signature only ever reaches the 401 branch. Here
each case that carries its signature header is signed the way its sender signs (secrets
from the same environment the server reads), so generated deliveries reach the adapters,
the mapping and the database; a case without the header stays unsigned (the 401 path).
"""

from __future__ import annotations

import ast
import gc
import json
import os
from typing import Any
from urllib.parse import urlencode

import schemathesis
from twilio.request_validator import RequestValidator

from service.security.webhook_signatures import (
    aftership_signature,
    easypost_signature,
    shopify_signature,
)

_parse = ast.parse


def _parse_without_gc(*args: Any, **kwargs: Any) -> ast.AST:
    """CPython 3.11 (< 3.11.8) can fail building an AST when a garbage collection runs in the
    middle of it ("SystemError: AST constructor recursion depth mismatch"); hypothesis
    parses its own lambdas with ast.parse while schemathesis generates cases. No collection
    during a parse, no such failure (the tool's error, not the API's)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(*args, **kwargs)
    finally:
        if enabled:
            gc.enable()


ast.parse = _parse_without_gc  # type: ignore[assignment]

JSON_SIGNERS = {
    "/v1/webhooks/shopify": ("X-Shopify-Hmac-Sha256", "SHOPIFY_WEBHOOK_SECRET", shopify_signature),
    "/v1/webhooks/easypost": ("X-Hmac-Signature", "EASYPOST_WEBHOOK_SECRET", easypost_signature),
    "/v1/webhooks/aftership": ("aftership-hmac-sha256", "AFTERSHIP_WEBHOOK_SECRET",
                               aftership_signature),
}


def _has(headers: dict[str, Any] | None, name: str) -> bool:
    return any(key.lower() == name.lower() for key in (headers or {}))


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    if path in JSON_SIGNERS:
        header, variable, signer = JSON_SIGNERS[path]
        if not _has(case.headers, header) or isinstance(case.body, bytes):
            return
        if case.media_type != "application/json" or not isinstance(case.body, dict | list):
            return
        body = json.dumps(case.body).encode()
        case.body = body  # sent as these exact bytes
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != header.lower()}
        case.headers[header] = signer(os.environ[variable], body)
    elif path.startswith("/v1/webhooks/twilio/"):
        if not _has(case.headers, "X-Twilio-Signature") or not isinstance(case.body, dict):
            return
        if case.media_type != "application/x-www-form-urlencoded":
            return
        form = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in case.body.items()}
        case.body = urlencode(form).encode()
        url = os.environ["PUBLIC_BASE_URL"].rstrip("/") + path
        signature = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"]).compute_signature(url, form)
        case.headers = {k: v for k, v in case.headers.items()
                        if k.lower() != "x-twilio-signature"}
        case.headers["X-Twilio-Signature"] = signature
