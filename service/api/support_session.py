"""Who is using the support page: an API key kept in an HTTP-only, SameSite=Strict cookie
after sign-in, or an agent a trusted reverse proxy names in a header (SUPPORT_AUTH_HEADER).
Every form that changes something carries a CSRF token bound to that session."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

from aiohttp import web

from service.api.keys import settings_key
from service.api.principal import Principal, key_principal
from service.security.api_keys import KEY_PREFIX

COOKIE = "pc_support"
COOKIE_PATH = "/support"
SESSION_SECONDS = 12 * 3600
MAX_KEY = 200


def _proxy_user(request: web.Request) -> str | None:
    header = request.app[settings_key].support_auth_header
    if not header:
        return None
    user = request.headers.get(header, "").strip()
    return user[:200] if user and user.isprintable() else None


def _cookie_key(request: web.Request) -> str | None:
    key = request.cookies.get(COOKIE, "")
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY or not key.isascii():
        return None
    return key


async def agent(request: web.Request) -> Principal | None:
    """The signed-in agent, or None."""
    settings = request.app[settings_key]
    user = _proxy_user(request)
    if user is not None:
        return Principal(f"proxy:{user}", tuple(settings.support_auth_scopes))
    key = _cookie_key(request)
    return await key_principal(request, key) if key is not None else None


def _binding(request: web.Request) -> str:
    """What a CSRF token is bound to: the proxy's agent, or the signed-in key (hashed)."""
    user = _proxy_user(request)
    if user is not None:
        return f"proxy\x1f{user}"
    return "key\x1f" + hashlib.sha256((_cookie_key(request) or "").encode()).hexdigest()


def csrf_token(request: web.Request) -> str:
    secret = request.app[settings_key].parcelcast_secret_key.encode()
    digest = hmac.new(secret, f"support-csrf\x1f{_binding(request)}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def same_origin(request: web.Request) -> bool:
    """A browser's Origin (or Referer), when it sends one, names this site."""
    settings = request.app[settings_key]
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    ours = {request.host, urlsplit(str(settings.public_base_url)).netloc}
    return parts.netloc in ours


def csrf_ok(request: web.Request, token: str) -> bool:
    return same_origin(request) and hmac.compare_digest(
        token.encode("utf-8", "replace"), csrf_token(request).encode())


def sign_in(response: web.StreamResponse, request: web.Request, key: str) -> None:
    secure = str(request.app[settings_key].public_base_url).startswith("https://")
    response.set_cookie(COOKIE, key, max_age=SESSION_SECONDS, path=COOKIE_PATH, httponly=True,
                        samesite="Strict", secure=secure)


def sign_out(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)
