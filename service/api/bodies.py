"""Reading request bodies and turning validation failures into field errors."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from service.errors import FieldError, ProblemError, validation_failed
from service.limits import json_problems

M = TypeVar("M", bound=BaseModel)
_JSON_TYPES = frozenset({
    "application/json", "application/problem+json", "application/x-www-form-urlencoded",
    "application/octet-stream", "",
})


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"])
        path = f"{prefix}.{path}" if prefix and path else (prefix or path or "body")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "timezone_aware":
            message = "timestamp has no timezone; send an offset, e.g. 2026-11-02T14:30:00Z"
        errors.append(FieldError(path, message, err["type"]))
    return errors


def check_media_type(request: web.Request) -> None:
    """415 unless the request says (or may mean) JSON."""
    # curl's -d sends application/x-www-form-urlencoded; a JSON body under it is accepted
    # so the README's curl examples need no extra header.
    if request.content_type not in _JSON_TYPES:
        raise ProblemError(415, "Unsupported media type",
                           f"send application/json, not {request.content_type[:100]}",
                           [FieldError("Content-Type", "must be application/json",
                                       "media_type")])


async def read_body(request: web.Request) -> bytes:
    """The raw body, UTF-8; 415 for a non-JSON media type, 400 if not UTF-8, 422 if empty,
    413 if too big."""
    check_media_type(request)
    body = await request.read()  # raises 413 past client_max_size
    if not body:
        raise validation_failed([FieldError("body", "request body is empty", "missing")])
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        raise malformed(f"it is not UTF-8 (byte {exc.start})") from None
    return body


def malformed(exc: Exception | str) -> ProblemError:
    return ProblemError(400, "Malformed JSON", f"the body is not valid JSON: {exc}",
                        [FieldError("body", "must be valid JSON in UTF-8", "malformed")],
                        type_slug="https://parcelcast.dev/problems/malformed-json")


def parse_json(body: bytes) -> Any:
    """Parsed JSON that can be stored: 400 when broken (or deeper than orjson's 1,024
    levels), 422 naming each field with a NUL or nested deeper than MAX_JSON_DEPTH."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(exc) from None
    problems = json_problems(data)
    if problems:
        raise validation_failed(problems)
    return data


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; 415 for another media type, 400 for broken JSON, 413 if too big,
    422 for text that cannot be stored."""
    return parse_json(await read_body(request))


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    if not isinstance(data, dict):
        raise validation_failed([FieldError(prefix or "body", "must be a JSON object", "type")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(field_errors(exc, prefix)) from None
