"""Signed, unguessable tokens for public links (tracking page, unsubscribe)."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(secret: str, purpose: str, value: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode().rstrip("=")


def sign(secret: str, purpose: str, value: str) -> str:
    """`value` and its MAC, URL-safe. Not encrypted: don't sign secrets."""
    encoded = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    return f"{encoded}.{_mac(secret, purpose, value)}"


def unsign(secret: str, purpose: str, token: str) -> str | None:
    """The signed value, or None for a forged, truncated or other-purpose token."""
    encoded, _, mac = token.partition(".")
    try:
        value = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return value if hmac.compare_digest(mac, _mac(secret, purpose, value)) else None


def tracking_url(base_url: str, secret: str, shipment_id: str) -> str:
    return f"{base_url.rstrip('/')}/t/{sign(secret, 'track', shipment_id)}"


def unsubscribe_url(base_url: str, secret: str, channel: str, address: str) -> str:
    return f"{base_url.rstrip('/')}/u/{sign(secret, 'unsubscribe', f'{channel}:{address}')}"


def preferences_url(base_url: str, secret: str, order_id: str) -> str:
    """The customer's notification preferences for one order."""
    return f"{base_url.rstrip('/')}/preferences/{sign(secret, 'preferences', order_id)}"
