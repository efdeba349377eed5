"""Path and query parameters, checked like body fields."""

from __future__ import annotations

import re

from aiohttp import web

from service.errors import FieldError, validation_failed
from service.inputs import ID_PATTERN

_ID = re.compile(ID_PATTERN)


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise validation_failed([FieldError(
            name, "must be 1-100 characters of letters, digits, '.', '_', ':' or '-'", "pattern"
        )])
    return value


def query_id(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not _ID.fullmatch(value):
        raise validation_failed([FieldError(
            name, "must be 1-100 characters of letters, digits, '.', '_', ':' or '-'", "pattern"
        )])
    return value
