"""Domain exceptions and the one error shape (RFC 9457 problem+json) they become."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One wrong field: a JSON-pointer-like path, what is wrong, and the code for machines."""

    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass
class ProblemError(Exception):
    """Raised anywhere below the web layer; the error middleware renders it."""

    status: int
    title: str
    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)
    type_slug: str = "about:blank"
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        return body


def validation_failed(errors: list[FieldError], detail: str = "") -> ProblemError:
    return ProblemError(
        422,
        "Validation failed",
        detail or "; ".join(f"{e.field}: {e.message}" for e in errors[:5]),
        errors,
        "https://parcelcast.dev/problems/validation",
    )


def not_found(what: str, key: str) -> ProblemError:
    return ProblemError(404, "Not found", f"{what} {key!r} does not exist",
                        type_slug="https://parcelcast.dev/problems/not-found")
