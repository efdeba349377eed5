"""The support page over real HTTP: sign-in cookie, search, the shipment view with its chart,
actions behind CSRF tokens, the reverse-proxy header."""

from __future__ import annotations

import re

import asyncpg
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.clock import ManualClock
from service.settings import Settings
from tests.conftest import KeyFactory


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found[1]


async def _signed_in(client: TestClient, key_headers: dict[str, str]) -> None:
    key = key_headers["Authorization"].split()[1]
    answer = await client.post("/support/sign-in", data={"key": key}, allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/support"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/support" in cookie


async def test_sign_in_search_view_and_resend(shop: TestClient, make_key: KeyFactory,
                                              pool: asyncpg.Pool) -> None:
    assert "Sign in to support" in await (await shop.get("/support")).text()
    agent = await make_key("shipments:read", "support:write")
    await _signed_in(shop, agent)
    results = await (await shop.get("/support?q=ADA@example.com")).text()
    assert '<a href="/support/shipments/s-1">s-1</a>' in results
    page = await shop.get("/support/shipments/s-1")
    html = await page.text()
    assert page.status == 200
    for expected in ("<svg", "ETA windows against the promised date", "promised 2026-11-06",
                     "Time since the last carrier scan (2.5 h): takes about 4 h off",
                     "past promise", "waiting for morning", "Departed facility",
                     "No support actions yet.", "Chance of missing the promise: <strong>81 %"):
        assert expected in html, expected
    async with pool.acquire() as conn:
        sent = await conn.fetchval("SELECT id FROM notifications WHERE provider_id = 'Q1'")
    csrf = _csrf(html)
    done = await shop.post("/support/shipments/s-1/resend", allow_redirects=False,
                           data={"csrf": csrf, "notification_id": str(sent)})
    assert done.status == 303
    assert done.headers["Location"] == "/support/shipments/s-1?done=resend"
    after = await (await shop.get(done.headers["Location"])).text()
    assert "Message queued" in after and f"resend of #{sent}" in after
    actor = agent["Authorization"].split("_")[1]
    assert re.search(rf"<td>{actor}</td><td>resend · s-1</td>", after)


async def test_actions_need_a_fresh_csrf_token_and_the_scope(
    shop: TestClient, make_key: KeyFactory, pool: asyncpg.Pool
) -> None:
    reader = await make_key("shipments:read")
    await _signed_in(shop, reader)
    html = await (await shop.get("/support/shipments/s-1")).text()
    assert "Mark lost" not in html  # no actions for a read-only key
    refused = await shop.post("/support/shipments/s-1/lost",
                              data={"csrf": _csrf(html), "note": "x"})
    assert refused.status == 403 and "support:write" in await refused.text()
    writer = await make_key("shipments:read", "support:write")
    await _signed_in(shop, writer)  # another key: the old token no longer fits
    stale = await shop.post("/support/shipments/s-1/lost",
                            data={"csrf": _csrf(html), "note": "x"})
    assert stale.status == 403 and "expired" in await stale.text()
    fresh = _csrf(await (await shop.get("/support/shipments/s-1")).text())
    cross = await shop.post("/support/shipments/s-1/lost", data={"csrf": fresh, "note": "x"},
                            headers={"Origin": "https://evil.example"})
    assert cross.status == 403
    no_note = await shop.post("/support/shipments/s-1/lost", data={"csrf": fresh, "note": ""})
    assert no_note.status == 422
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM support_actions") == 0
    ok = await shop.post("/support/shipments/s-1/lost", data={"csrf": fresh, "note": "claim"},
                         allow_redirects=False)
    assert ok.status == 303
    twice = await shop.post("/support/shipments/s-1/delivered",
                            data={"csrf": fresh, "note": "found it"}, allow_redirects=False)
    assert twice.status == 303
    again = await shop.post("/support/shipments/s-1/lost", data={"csrf": fresh, "note": "x"})
    assert again.status == 409 and "already delivered" in await again.text()


async def test_sign_in_refusals_and_sign_out(shop: TestClient, make_key: KeyFactory) -> None:
    bad = await shop.post("/support/sign-in", data={"key": "pc_nope_nope"})
    assert bad.status == 401 and "Unknown or revoked" in await bad.text()
    writer = await make_key("events:write")
    key = writer["Authorization"].split()[1]
    lacking = await shop.post("/support/sign-in", data={"key": key})
    assert lacking.status == 403
    agent = await make_key("shipments:read")
    await _signed_in(shop, agent)
    html = await (await shop.get("/support")).text()
    out = await shop.post("/support/sign-out", data={"csrf": _csrf(html)},
                          allow_redirects=False)
    assert out.status == 303
    assert "Sign in to support" in await (await shop.get("/support")).text()
    # The cookie never works as an API key, and an API key's header never signs in the page.
    assert (await shop.get("/support", headers=agent)).status == 200
    assert "Sign in to support" in await (await shop.get("/support", headers=agent)).text()


async def test_a_trusted_proxy_header(aiohttp_client, settings: Settings,  # type: ignore[no-untyped-def]
                                      clock: ManualClock, pool: asyncpg.Pool,
                                      shop: TestClient) -> None:
    proxied = await aiohttp_client(create_app(settings.model_copy(update={
        "support_auth_header": "X-Forwarded-User"}), clock))
    user = {"X-Forwarded-User": "alice@shop.example"}
    html = await (await proxied.get("/support/shipments/s-1", headers=user)).text()
    assert "Signed in as <strong>proxy:alice@shop.example</strong>" in html
    done = await proxied.post("/support/shipments/s-1/mute", headers=user,
                              data={"csrf": _csrf(html), "note": "asked"},
                              allow_redirects=False)
    assert done.status == 303
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT actor FROM support_actions") == "proxy:alice@shop.example"
    # Another agent's token does not fit.
    other = await proxied.post("/support/shipments/s-1/mute",
                               headers={"X-Forwarded-User": "mallory"},
                               data={"csrf": _csrf(html), "note": "x"})
    assert other.status == 403
    # Without the setting the header means nothing.
    assert "Sign in to support" in await (await shop.get("/support", headers=user)).text()
