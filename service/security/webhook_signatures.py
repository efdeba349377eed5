"""Webhook signatures, checked the way each sender computes them, over the raw body bytes.

All three are HMAC-SHA256 of the exact bytes received (never a re-serialized body), compared
with hmac.compare_digest on bytes so a non-ASCII header cannot raise instead of failing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata

EASYPOST_PREFIX = "hmac-sha256-hex="


def _digest(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()


def _same(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace"))


def shopify_signature(secret: str, body: bytes) -> str:
    """X-Shopify-Hmac-Sha256: base64 of HMAC-SHA256(app client secret, raw body)."""
    return base64.b64encode(_digest(secret.encode(), body)).decode()


def easypost_signature(secret: str, body: bytes) -> str:
    """X-Hmac-Signature: "hmac-sha256-hex=" + hex HMAC-SHA256(NFKD(webhook secret), raw body).

    EasyPost's own client libraries (e.g. easypost-python's validate_webhook) NFKD-normalize
    the secret and encode it as UTF-8 before keying the HMAC; a secret with accents or
    full-width characters only verifies if we do the same.
    """
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return EASYPOST_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def aftership_signature(secret: str, body: bytes) -> str:
    """aftership-hmac-sha256: base64 of HMAC-SHA256(webhook secret, raw body)."""
    return base64.b64encode(_digest(secret.encode(), body)).decode()


def shopify_valid(secret: str, body: bytes, header: str | None) -> bool:
    return _same(shopify_signature(secret, body), header)


def easypost_valid(secret: str, body: bytes, header: str | None) -> bool:
    return _same(easypost_signature(secret, body), header)


def aftership_valid(secret: str, body: bytes, header: str | None) -> bool:
    return _same(aftership_signature(secret, body), header)
