"""The customer's tracking page over real HTTP and PostgreSQL, in every locale."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.eta.runtime import Prediction
from service.security.links import sign, tracking_url
from service.settings import Settings
from service.store import etas
from tests.builders import event, order, shipment
from tests.conftest import START

LABEL = datetime(2026, 11, 2, 9, tzinfo=UTC)


def _path(settings: Settings, shipment_id: str = "s-1") -> str:
    return "/t/" + sign(settings.parcelcast_secret_key, "track", shipment_id, START)


async def _shop(client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
                clock: ManualClock, locale: str = "en", late: bool = False,
                zone: str = "America/Chicago") -> None:
    """An order in Chicago (promised Nov 6) with two scans and an ETA window; `late` puts the
    window after the promise."""
    clock.set(LABEL)
    await client.put("/v1/orders/o-1", headers=admin, json=order(customer={
        "name": "Ada", "email": "ada@example.com", "locale": locale, "timezone": zone}))
    await client.put("/v1/shipments/s-1", headers=admin, json=shipment(
        destination={"postal_code": "60601", "country": "US"}))
    await client.post("/v1/tracking-events", headers=admin, json=[
        event("P", "2026-11-02T20:00:00Z", raw_code="P", description="Pickup Scan",
              location={"city": "Memphis", "region": "TN", "postal_code": "38118",
                        "country": "US"}),
        event("DP", "2026-11-03T14:30:00Z", description="Departed from Facility",
              location={"city": "Chicago", "region": "IL", "postal_code": "60666",
                        "country": "US"})])
    p10 = datetime(2026, 11, 7 if late else 5, 15, tzinfo=UTC)
    async with pool.acquire() as conn:
        await etas.store_many(conn, ["s-1"], LABEL + timedelta(hours=12), "m-1", [Prediction(
            "later", p10, p10 + timedelta(days=1), p10 + timedelta(days=2), 0.7 if late else 0.1,
            [])])
    clock.set(datetime(2026, 11, 4, 12, tzinfo=UTC))


def _text(html: str) -> str:
    """What a reader sees: no styles, no tags, single spaces."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize(("locale", "expect"), [
    ("en", ["On its way", "Left a carrier facility", "Picked up by the carrier",
            "Thu, Nov 5 – Sat, Nov 7", "Most likely Fri, November 6", "Central Time",
            "Chicago, IL", "Memphis, TN", "2 × Enamel mug", "Tue, Nov 3, 8:30 AM",
            "Notification preferences"]),
    ("de", ["Unterwegs", "Hat ein Paketzentrum verlassen", "Vom Versanddienstleister abgeholt",
            "Do., 5. – Sa., 7. Nov.", "Am wahrscheinlichsten: Fr., 6. November",
            "Nordamerikanische Zentralzeit", "Di., 3. Nov., 08:30",
            "Benachrichtigungen einstellen"]),
    ("es", ["En camino", "Salió de un centro del transportista", "hora central",
            "jue, 5 de noviembre – sáb, 7 de noviembre"]),
    ("pt-BR", ["A caminho", "Saiu de um centro da transportadora", "Horário Central",
               "qui., 5 de nov. – sáb., 7 de nov."]),
])
async def test_the_page_speaks_the_customers_language(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    settings: Settings, locale: str, expect: list[str],
) -> None:
    await _shop(client, admin, pool, clock, locale)
    answer = await client.get(_path(settings))
    assert answer.status == 200 and answer.content_type == "text/html"
    html = await answer.text()
    text = _text(html)
    for phrase in expect:
        assert phrase in text, phrase
    assert f'<html lang="{locale}">' in html
    # City-level places only: no postcode, street, phone or e-mail.
    for private in ("38118", "60666", "60601", "ada@example.com", "+1415"):
        assert private not in html
    # Nothing English left over in another language.
    if locale != "en":
        for english in ("On its way", "Estimated delivery", "Latest updates", "Departed"):
            assert english not in text
    # Landmarks, headings, a progress list with the current step marked.
    for landmark in ("<header", "<main", "<footer"):
        assert landmark in html
    assert 'aria-current="step"' in html
    assert answer.headers["Referrer-Policy"] == "no-referrer"


async def test_a_late_parcel_says_so_with_the_new_window(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    settings: Settings,
) -> None:
    await _shop(client, admin, pool, clock, "en", late=True)
    text = _text(await (await client.get(_path(settings))).text())
    assert "Your parcel is running late" in text
    assert ("It will probably not arrive by Fri, November 6, the date you were promised. "
            "New estimate: Sat, Nov 7 – Mon, Nov 9.") in text
    clock.set(datetime(2026, 11, 7, 20, tzinfo=UTC))  # past the promise
    text = _text(await (await client.get(_path(settings))).text())
    assert ("It was promised for Fri, November 6 and has not arrived yet. "
            "New estimate: Sat, Nov 7 – Mon, Nov 9.") in text
    clock.set(datetime(2026, 11, 12, tzinfo=UTC))  # past the window too
    text = _text(await (await client.get(_path(settings))).text())
    assert "has not arrived yet. We are checking with UPS." in text


async def test_delivered_lost_and_several_shipments(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    settings: Settings,
) -> None:
    await _shop(client, admin, pool, clock, "de")
    await client.put("/v1/shipments/s-2", headers=admin, json=shipment(
        tracking_number="1Z0002"))
    await client.post("/v1/tracking-events", headers=admin, json=event(
        "delivered", "2026-11-04T17:00:00Z", tracking_number="1Z0002"))
    html = await (await client.get(_path(settings, "s-2"))).text()
    text = _text(html)
    assert "Zugestellt am Mi., 4. November" in text
    assert "Sendung 1 von 2: Unterwegs" in text and "Sendung 2 von 2: Zugestellt" in text
    assert _path(settings, "s-1") in html
    await client.post("/v1/support/shipments/s-1/lost", headers=admin, json={"note": "claim"})
    text = _text(await (await client.get(_path(settings))).text())
    assert "Es tut uns leid: Dieses Paket ist offenbar verloren gegangen" in text
    assert "Voraussichtliche Zustellung" not in text


@pytest.mark.parametrize(("token", "language", "title"), [
    ("nope", "de-DE,de;q=0.9,en;q=0.5", "Dieser Link funktioniert nicht"),
    ("bm9wZQ.AAAAAAAAAAAAAAAA", "es", "Este enlace no funciona"),
    ("%C3%A9t%C3%A9.x", "pt-BR", "Este link não funciona"),
    ("a" * 2000, "fr, en;q=0.1", "This link does not work"),
])
async def test_a_bad_link_is_a_friendly_page(client: TestClient, token: str, language: str,
                                             title: str) -> None:
    answer = await client.get(f"/t/{token}", headers={"Accept-Language": language})
    assert answer.status == 404 and answer.content_type == "text/html"
    assert title in await answer.text()


async def test_tokens_open_only_their_own_page(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    settings: Settings,
) -> None:
    await _shop(client, admin, pool, clock)
    await client.put("/v1/orders/o-2", headers=admin, json=order(
        customer={"name": "Grace", "email": "grace@example.com"},
        items=[{"name": "Secret teapot"}]))
    await client.put("/v1/shipments/s-9", headers=admin, json=shipment(
        order_id="o-2", tracking_number="1Z0009"))
    mine = await (await client.get(_path(settings))).text()
    assert "Secret teapot" not in mine and "1Z0009" not in mine
    theirs = await (await client.get(_path(settings, "s-9"))).text()
    assert "Enamel mug" not in theirs and "Secret teapot" in theirs
    secret = settings.parcelcast_secret_key
    # A token of another purpose, or for a shipment that does not exist, opens nothing.
    for token in (sign(secret, "unsubscribe", "s-1", START),
                  sign(secret, "preferences", "s-1", START), sign(secret, "track", "s-404", START),
                  sign("another-secret-key-16", "track", "s-1", START)):
        assert (await client.get(f"/t/{token}")).status == 404
    assert (await client.get("/preferences/" + sign(secret, "track", "o-1", START))
            ).status == 404
    full = tracking_url("http://x", secret, "s-1", START)
    assert full.endswith(_path(settings))
