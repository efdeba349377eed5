"""Signed, unguessable tokens for public links (tracking page, unsubscribe).

A token is `<value>.<issued>.<mac>`: the value (base64url), its issue time (Unix seconds,
base 36) and an HMAC-SHA256 (first 12 bytes, base64url) over purpose, value and issue time
with the current secret key. The purpose ("track", "unsubscribe") is inside the MAC, so a
token serves one purpose only. Not encrypted: never sign secrets.

Key rotation: tokens are signed with PARCELCAST_SECRET_KEY and verified with it or any of
PARCELCAST_PREVIOUS_SECRET_KEYS (drop an old key when its grace period is over).

Tokens from before issue times (`<value>.<mac>`, in messages already sent) verify the
same way and count as untimed: accepted until PARCELCAST_UNTIMED_LINKS_UNTIL when that is
set, for ever otherwise. What a valid token may still open (a tracking link expires some
days after delivery) is the caller's rule: see `tracking_link_expired`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Longer tokens are not ours (and are not worth hashing).
MAX_TOKEN_LENGTH = 1024


@dataclass(frozen=True)
class Verified:
    """A token's value, and when it was issued (None: an untimed token from before)."""

    value: str
    issued_at: datetime | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, value: str, issued: str | None) -> str:
    message = f"{purpose}\x1f{value}" + (f"\x1f{issued}" if issued is not None else "")
    return _b64(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()[:12])


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def sign(secret: str, purpose: str, value: str, issued_at: datetime) -> str:
    """`value`, its issue time and their MAC, URL-safe."""
    issued = _base36(max(0, int(issued_at.timestamp())))
    return f"{_b64(value.encode())}.{issued}.{_mac(secret, purpose, value, issued)}"


def verify(secrets: Sequence[str], purpose: str, token: str) -> Verified | None:
    """The token's value and issue time, or None for anything forged, truncated, of another
    purpose, signed with an unknown key, or not a token at all (any text may arrive here)."""
    if not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) == 3:
        encoded, issued, mac = parts
    elif len(parts) == 2:
        (encoded, mac), issued = parts, None
    else:
        return None
    try:
        value = _unb64(encoded).decode()
        issued_at = (datetime.fromtimestamp(int(issued, 36), UTC)
                     if issued is not None else None)
    except (ValueError, OverflowError, OSError):  # bad base64/UTF-8/base36, absurd time
        return None
    for secret in secrets:
        if hmac.compare_digest(mac.encode(), _mac(secret, purpose, value, issued).encode()):
            return Verified(value, issued_at)
    return None


def tracking_url(base_url: str, secret: str, shipment_id: str, issued_at: datetime) -> str:
    return f"{base_url.rstrip('/')}/t/{sign(secret, 'track', shipment_id, issued_at)}"


def unsubscribe_url(base_url: str, secret: str, channel: str, address: str,
                    issued_at: datetime) -> str:
    token = sign(secret, "unsubscribe", f"{channel}:{address}", issued_at)
    return f"{base_url.rstrip('/')}/u/{token}"


def untimed_refused(token: Verified, until: datetime | None, now: datetime) -> bool:
    """An untimed (pre-issue-time) token past the operator's cutoff."""
    return token.issued_at is None and until is not None and now >= until


def tracking_link_expired(delivered_at: datetime | None, days_after_delivery: float,
                          now: datetime) -> bool:
    """A tracking link works while the parcel is on its way and for some days after."""
    return delivered_at is not None and now >= delivered_at + timedelta(days=days_after_delivery)


def preferences_url(base_url: str, secret: str, order_id: str, issued_at: datetime) -> str:
    """The customer's notification preferences for one order."""
    return f"{base_url.rstrip('/')}/preferences/{sign(secret, 'preferences', order_id, issued_at)}"
