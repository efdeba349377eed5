"""API keys with scopes: `Authorization: Bearer pc_<id>_<secret>`."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Final

SCOPES: Final = ("events:write", "shipments:read", "support:write", "admin")
KEY_PREFIX: Final = "pc_"
# How long a verified key is trusted before asking the database again (so a
# revocation takes effect within this many seconds).
CACHE_SECONDS: Final = 30.0


def new_key() -> tuple[str, str, bytes]:
    """(key_id, full key shown once, its hash to store)."""
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
    return key_id, key, hash_key(key)


def hash_key(key: str) -> bytes:
    # Keys carry 192 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).digest()


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    # Our keys are ASCII; anything else (header bytes that were not UTF-8 arrive as
    # surrogates) is simply not a key.
    if scheme.lower() != "bearer" or not token.strip().startswith(KEY_PREFIX) \
            or not token.isascii():
        return None
    return token.strip()


def key_id_of(token: str) -> str:
    """The public id inside a key (`pc_<id>_<secret>`): who did it, in audit logs."""
    return token[len(KEY_PREFIX):].split("_", 1)[0]


def allows(granted: list[str], needed: str) -> bool:
    return "admin" in granted or needed in granted


class KeyCache:
    """Verified key hashes and their scopes, for CACHE_SECONDS (monotonic time)."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self._ttl = ttl
        self._entries: dict[bytes, tuple[float, list[str]]] = {}

    def get(self, key_hash: bytes) -> list[str] | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: bytes, scopes: list[str]) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self._ttl, scopes)
