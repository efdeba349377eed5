"""Signed links with a lifetime: issue times, expiry after delivery, key rotation, untimed
(pre-issue-time) links, friendly pages; and /metrics behind METRICS_TOKEN or METRICS_BIND."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import timedelta

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.cli.processes import metrics_socket
from service.clock import ManualClock
from service.security.links import sign, tracking_url, unsubscribe_url, verify
from service.settings import Settings
from service.store.embedded import free_port
from tests.builders import event, order, shipment
from tests.conftest import START

OLD_KEY = "an-old-secret-key-0123456789"
NEW_KEY = "the-new-secret-key-0123456789"
AppClient = Callable[..., Awaitable[TestClient]]


def untimed(secret: str, purpose: str, value: str) -> str:
    """A token as signed before links carried an issue time (in messages already sent)."""
    mac = hmac.new(secret.encode(), f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()
    encode = base64.urlsafe_b64encode
    return f"{encode(value.encode()).decode().rstrip('=')}.{encode(mac[:12]).decode().rstrip('=')}"


def test_tokens_carry_their_issue_time_and_one_purpose() -> None:
    token = sign(NEW_KEY, "track", "s-1", START)
    found = verify([NEW_KEY], "track", token)
    assert found is not None and (found.value, found.issued_at) == ("s-1", START)
    assert verify([NEW_KEY], "unsubscribe", token) is None  # single-purpose
    assert verify([OLD_KEY], "track", token) is None
    assert verify([OLD_KEY, NEW_KEY], "track", token) is not None  # rotation
    tampered = token.rsplit(".", 2)
    assert verify([NEW_KEY], "track", f"{tampered[0]}.{tampered[1]}0.{tampered[2]}") is None
    legacy = verify([NEW_KEY], "track", untimed(NEW_KEY, "track", "s-1"))
    assert legacy is not None and legacy.issued_at is None
    for junk in ("", ".", "é.é", "a.b.c.d", "x" * 5000, "zz.zzzzzzzzzzzzzzzzzzzzz.zz"):
        assert verify([NEW_KEY], "track", junk) is None


async def _shop(client: TestClient, admin: dict[str, str], locale: str = "de") -> None:
    await client.put("/v1/orders/o-1", json=order(customer={"locale": locale}), headers=admin)
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)


async def test_a_tracking_link_works_until_some_days_after_delivery(
    aiohttp_client: AppClient, settings: Settings, clock: ManualClock, pool: asyncpg.Pool,
    admin: dict[str, str],
) -> None:
    settings = settings.model_copy(update={"tracking_link_days_after_delivery": 30.0})
    client = await aiohttp_client(create_app(settings, clock))
    await _shop(client, admin)
    path = tracking_url("", settings.parcelcast_secret_key, "s-1", START)
    assert (await client.get(path)).status == 200
    clock.set(START + timedelta(days=400))
    assert (await client.get(path)).status == 200  # not delivered: still useful
    await client.post("/v1/tracking-events", headers=admin,
                      json=event("delivered", "2026-11-05T15:00:00Z"))
    clock.set(START + timedelta(days=33, seconds=-1))  # delivered 2026-11-05 15:00, + 30 days
    assert (await client.get(path)).status == 200
    clock.set(START + timedelta(days=33))
    expired = await client.get(path)
    assert expired.status == 410 and expired.content_type == "text/html"
    assert "Dieser Link ist abgelaufen" in await expired.text()  # the customer's language
    gone = await client.get(tracking_url("", settings.parcelcast_secret_key, "s-9", START))
    assert gone.status == 404 and gone.content_type == "text/html"


async def test_a_locale_babel_does_not_know_shows_the_page_in_english(
    client: TestClient, admin: dict[str, str], settings: Settings,
) -> None:
    await _shop(client, admin, locale="tlh")  # a valid BCP 47 tag, unknown to Babel
    page = await client.get(tracking_url("", settings.parcelcast_secret_key, "s-1", START))
    assert page.status == 200 and page.content_type == "text/html"


async def test_rotated_keys_and_untimed_links(
    aiohttp_client: AppClient, settings: Settings, clock: ManualClock, pool: asyncpg.Pool,
    admin: dict[str, str],
) -> None:
    settings = settings.model_copy(update={
        "parcelcast_secret_key": NEW_KEY, "parcelcast_previous_secret_keys": OLD_KEY,
        "parcelcast_untimed_links_until": START + timedelta(days=10)})
    client = await aiohttp_client(create_app(settings, clock))
    await _shop(client, admin, locale="es")
    signed_before = tracking_url("", OLD_KEY, "s-1", START)
    legacy = f"/t/{untimed(OLD_KEY, 'track', 's-1')}"
    legacy_unsubscribe = f"/u/{untimed(OLD_KEY, 'unsubscribe', 'email:ada@example.com')}"
    assert (await client.get(signed_before)).status == 200
    assert (await client.get(legacy)).status == 200
    assert (await client.get(legacy_unsubscribe)).status == 200
    clock.set(START + timedelta(days=10))
    assert (await client.get(signed_before)).status == 200
    after_cutoff = await client.get(legacy)
    assert after_cutoff.status == 410 and "Este enlace ha caducado" in await after_cutoff.text()
    assert (await client.get(legacy_unsubscribe)).status == 404
    retired = settings.model_copy(update={"parcelcast_previous_secret_keys": ""})
    client = await aiohttp_client(create_app(retired, clock))
    assert (await client.get(signed_before)).status == 404


async def test_unsubscribe_links_never_expire(
    client: TestClient, settings: Settings, clock: ManualClock, pool: asyncpg.Pool,
) -> None:
    path = unsubscribe_url("", settings.parcelcast_secret_key, "email", "ada@example.com",
                           START)
    clock.set(START + timedelta(days=3650))
    assert (await client.get(path)).status == 200
    assert (await client.post(path)).status == 200
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT address FROM opt_outs") == "ada@example.com"
    as_tracking = path.replace("/u/", "/t/")
    assert (await client.get(as_tracking)).status == 404  # single-purpose


async def test_metrics_behind_a_token(
    aiohttp_client: AppClient, settings: Settings, clock: ManualClock, pool: asyncpg.Pool,
) -> None:
    open_metrics = await aiohttp_client(create_app(settings, clock))
    assert (await open_metrics.get("/metrics")).status == 200
    token = "metrics-token-0123456789"
    guarded = await aiohttp_client(create_app(
        settings.model_copy(update={"metrics_token": token}), clock))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {token}"},
                    {"Authorization": "Bearer métrics"}):
        refused = await guarded.get("/metrics", headers=headers)
        assert refused.status == 401 and refused.content_type == "application/problem+json"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    scraped = await guarded.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status == 200 and "parcelcast_http_requests_total" in await scraped.text()


async def test_metrics_on_an_address_of_their_own(
    settings: Settings, clock: ManualClock, pool: asyncpg.Pool,
) -> None:
    private = free_port()
    app = create_app(settings.model_copy(update={"metrics_bind": f"127.0.0.1:{private}"}),
                     clock)
    runner = web.AppRunner(app)
    await runner.setup()
    public = web.TCPSite(runner, "127.0.0.1", 0)
    await public.start()
    await web.SockSite(runner, metrics_socket("127.0.0.1", private)).start()
    try:
        public_port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{public_port}/metrics") as hidden:
                assert hidden.status == 404
            async with session.get(f"http://127.0.0.1:{public_port}/healthz") as alive:
                assert alive.status == 200
            async with session.get(f"http://127.0.0.1:{private}/metrics") as scraped:
                assert scraped.status == 200
    finally:
        await runner.cleanup()
