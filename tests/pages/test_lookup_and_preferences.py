"""Order lookup (rate-limited), notification preferences and unsubscribe, as customers use
them: HTML forms, in their language."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.security.links import sign, unsubscribe_url
from service.settings import Settings
from tests.builders import order, shipment
from tests.conftest import START


@pytest.fixture
async def shop(client: TestClient, admin: dict[str, str]) -> TestClient:
    await client.put("/v1/orders/1042", headers=admin, json=order(customer={
        "email": "Ada@Example.com", "phone": "+14155552671", "locale": "es"}))
    await client.put("/v1/shipments/s-1", headers=admin, json=shipment(order_id="1042"))
    return client


@pytest.mark.parametrize(("number", "contact"), [
    ("1042", "ada@example.com"), ("#1042", " ADA@example.COM "), ("1042", "94105"),
    (" #1042", "94105-0001"),
])
async def test_lookup_finds_the_tracking_page(shop: TestClient, settings: Settings, clock: ManualClock,
                                              number: str, contact: str) -> None:
    answer = await shop.post("/track", data={"order": number, "contact": contact},
                             allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"] == "/t/" + sign(settings.parcelcast_secret_key, "track",
                                                      "s-1", clock.now())


@pytest.mark.parametrize(("number", "contact", "status"), [
    ("1042", "grace@example.com", 404), ("1043", "ada@example.com", 404),
    ("1042", "10001", 404), ("", "ada@example.com", 422), ("1042", " ", 422),
])
async def test_lookup_refuses_without_saying_why(shop: TestClient, number: str, contact: str,
                                                 status: int) -> None:
    answer = await shop.post("/track", data={"order": number, "contact": contact, "lang": "de"})
    assert answer.status == status and answer.content_type == "text/html"
    html = await answer.text()
    assert "Bestellung finden" in html and 'role="alert"' in html


async def test_lookup_is_rate_limited(shop: TestClient, settings: Settings,
                                      clock: ManualClock) -> None:
    for _ in range(settings.lookup_attempts):
        wrong = await shop.post("/track", data={"order": "1042", "contact": "x@example.com"})
        assert wrong.status == 404
    limited = await shop.post("/track", data={"order": "1042", "contact": "ada@example.com"},
                              allow_redirects=False)
    assert limited.status == 429
    assert "Too many attempts" in await limited.text()
    # The window is business time: the next one starts afresh.
    clock.advance(timedelta(seconds=settings.lookup_window_s))
    again = await shop.post("/track", data={"order": "1042", "contact": "ada@example.com"},
                            allow_redirects=False)
    assert again.status == 303


async def test_an_order_not_shipped_yet(client: TestClient, admin: dict[str, str]) -> None:
    await client.put("/v1/orders/2001", headers=admin, json=order())
    answer = await client.post("/track", data={"order": "2001", "contact": "ada@example.com"})
    assert answer.status == 200
    assert "Your order 2001 has not shipped yet" in await answer.text()


async def test_the_lookup_form_in_the_browsers_language(client: TestClient) -> None:
    answer = await client.get("/track", headers={"Accept-Language": "pt-BR,pt;q=0.8"})
    html = await answer.text()
    assert answer.status == 200 and "Encontre seu pedido" in html
    assert '<label for="order">Número do pedido</label>' in html
    assert "Find your order" in await (await client.get("/track?lang=fr")).text()


async def test_preferences_stop_and_resume(shop: TestClient, settings: Settings,
                                           pool: asyncpg.Pool) -> None:
    url = "/preferences/" + sign(settings.parcelcast_secret_key, "preferences", "1042", START)
    html = await (await shop.get(url)).text()
    assert "Preferencias de notificación" in html
    assert "Correo electrónico a A•••@example.com" in html and "•••2671" in html
    assert "Ada@example.com" not in html and "+14155552671" not in html
    stopped = await shop.post(url, data={"channel": "sms", "action": "stop"})
    assert "Tus preferencias se han guardado." in await stopped.text()
    await shop.post(url, data={"channel": "email", "action": "stop"})
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT channel, address, source FROM opt_outs ORDER BY channel")
    assert [tuple(r) for r in rows] == [("email", "Ada@example.com", "preferences-page"),
                                         ("sms", "+14155552671", "preferences-page")]
    resumed = await shop.post(url, data={"channel": "email", "action": "resume"})
    assert "responde START" in await resumed.text()  # SMS comes back only by texting START
    await shop.post(url, data={"channel": "sms", "action": "resume"})
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT array_agg(channel) FROM opt_outs") == ["sms"]


async def test_unsubscribe_pages_are_styled_and_localized(shop: TestClient,
                                                          settings: Settings,
                                                          pool: asyncpg.Pool) -> None:
    url = unsubscribe_url("", settings.parcelcast_secret_key, "email", "ada@example.com", START)
    page = await shop.get(url, headers={"Accept-Language": "de"})
    html = await page.text()
    assert page.status == 200 and 'class="card"' in html and "<main" in html
    assert "Keine Versand-E-Mails mehr von Parcelcast Demo Shop?" in html
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM opt_outs") == 0  # GET changes nothing
    done = await shop.post(url, data={"List-Unsubscribe": "One-Click"},
                           headers={"Accept-Language": "de"})
    assert done.status == 200 and "Sie sind abgemeldet" in await done.text()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM opt_outs") == 1
    bad = await shop.get("/u/forged.token", headers={"Accept-Language": "es"})
    assert bad.status == 404 and "Este enlace no funciona" in await bad.text()


@pytest.mark.parametrize("path", ["/track", "/support/sign-in", "/support/shipments/s-1/lost"])
async def test_a_body_that_is_no_form_is_a_page_not_a_500(shop: TestClient, path: str) -> None:
    answer = await shop.post(path, data=b"--x\r\n", headers={
        "Content-Type": "multipart/form-data"})  # no boundary
    assert 400 <= answer.status < 500 and answer.content_type == "text/html"
