"""The pages in real headless Chromium: a customer opens the tracking link from the e-mail
she was sent (German and Spanish, late parcels), on a phone and a desktop; an agent signs in
to the support page, finds her by e-mail, resends a message and sees it in the log and in the
audit log."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from pydantic import AnyUrl

from service.api.app import create_app
from service.clock import ManualClock
from service.eta.runtime import Prediction
from service.settings import Settings
from service.store import etas
from service.store.embedded import free_port
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.builders import event, order, shipment
from tests.conftest import KeyFactory
from tests.notifying import drain, wired

NOW = datetime(2026, 11, 3, 13, tzinfo=UTC)  # daytime in Europe: nothing waits for morning
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 900}
CUSTOMERS = {  # order -> (locale, zone, e-mail, destination)
    "o-de": ("de", "Europe/Berlin", "lena@example.com", {"postal_code": "10115",
                                                         "country": "DE"}),
    "o-es": ("es", "Europe/Madrid", "lucia@example.com", {"postal_code": "28001",
                                                          "country": "ES"}),
}


@pytest.fixture
async def live(aiohttp_server: Any, settings: Settings, clock: ManualClock,
               twilio: TwilioStandin, smtp: SmtpStandin, pool: asyncpg.Pool
               ) -> tuple[TestServer, Settings]:
    """The app on a known port, so the links in its messages open in the browser."""
    port = free_port()
    live_settings = wired(settings, twilio, smtp).model_copy(
        update={"public_base_url": AnyUrl(f"http://127.0.0.1:{port}")})
    clock.set(NOW)
    server = await aiohttp_server(create_app(live_settings, clock), port=port)
    return server, live_settings


async def _late_orders(server: TestServer, admin: dict[str, str], pool: asyncpg.Pool,
                       settings: Settings, clock: ManualClock) -> None:
    """Two customers whose parcels are predicted two days past their promise (Nov 5); the
    worker sends each a "shipped" and a "predicted delay" e-mail."""
    client = server.app  # noqa: F841  (the server serves the app; requests go over HTTP)
    import aiohttp

    async with aiohttp.ClientSession(str(server.make_url("/"))) as http:
        for n, (order_id, (locale, zone, address, destination)) in enumerate(CUSTOMERS.items()):
            tracking = f"1Z{n:04d}"
            await http.put(f"/v1/orders/{order_id}", headers=admin, json=order(
                customer={"name": "Lena" if locale == "de" else "Lucía", "email": address,
                          "locale": locale, "timezone": zone},
                consent={"email": True, "sms": False},
                items=[{"name": "Kaffeemühle" if locale == "de" else "Molinillo", "quantity": 1}]))
            await http.put(f"/v1/shipments/s-{locale}", headers=admin, json=shipment(
                order_id=order_id, tracking_number=tracking, destination=destination,
                promised_delivery_date="2026-11-05", label_created_at="2026-11-02T08:00:00Z"))
            await http.post("/v1/tracking-events", headers=admin, json=event(
                "in_transit", "2026-11-03T06:00:00Z", tracking_number=tracking,
                location={"city": "Leipzig", "postal_code": "04103", "country": "DE"}))
    p10 = datetime(2026, 11, 6, 9, tzinfo=UTC)
    async with pool.acquire() as conn:
        await etas.store_many(conn, ["s-de", "s-es"], NOW, "m-1", [
            Prediction("first_scan", p10, p10 + timedelta(days=1), p10 + timedelta(days=2),
                       0.9, []) for _ in range(2)])
    await drain(settings, clock, pool)


def _tracking_link(smtp: SmtpStandin, to: str, subject_word: str) -> str:
    for raw in smtp.state.raw:
        message = email.message_from_bytes(raw, policy=default_policy)
        if message["To"] == to and subject_word in message["Subject"]:
            body = message.get_body(("plain",))
            assert body is not None
            found = re.search(r"http://127\.0\.0\.1:\d+/t/\S+", body.get_content())
            assert found, "no tracking link in the e-mail"
            return found[0]
    raise AssertionError(f"no e-mail to {to} about {subject_word!r}: "
                         f"{[m['subject'] for m in smtp.state.messages]}")


async def _shots(page: Any, folder: Path, name: str) -> None:
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)


async def _accessible(page: Any) -> None:
    """Landmarks once each, a language, every field labelled, and the text we check readable
    against what is really behind it."""
    for landmark in ("header", "main", "footer"):
        assert await page.locator(landmark).count() == 1, landmark
    assert await page.get_attribute("html", "lang")
    unlabelled = await page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), textarea')].filter(e => !e.labels || !e.labels.length).length""")
    assert unlabelled == 0
    ratios = await page.evaluate("""() => {
        const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
        const bg = el => { for (; el; el = el.parentElement) {
            const c = getComputedStyle(el).backgroundColor;
            if (!c.startsWith('rgba(0, 0, 0, 0') && c !== 'transparent') return rgb(c); }
            return [255, 255, 255]; };
        return [...document.querySelectorAll('h1, h2, p, li, a, button, label, time')]
          .filter(el => el.offsetParent && el.textContent.trim())
          .map(el => { const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
                       return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); });
    }""")
    assert ratios and min(ratios) >= 4.5, min(ratios)


async def test_a_customer_opens_her_link_on_a_phone_and_a_desktop(
    browser: Any, live: tuple[TestServer, Settings], admin: dict[str, str], pool: asyncpg.Pool,
    clock: ManualClock, smtp: SmtpStandin, artefacts: Path,
) -> None:
    server, settings = live
    await _late_orders(server, admin, pool, settings, clock)
    context = await browser.new_context(viewport=PHONE, bypass_csp=True)
    page = await context.new_page()
    cases = {
        "de": ("lena@example.com", "später", "Ihr Paket verspätet sich",
               "Es kommt voraussichtlich nicht bis Do., 5. November, dem versprochenen Termin. "
               "Neue Schätzung: Fr., 6. – So., 8. Nov.", "Voraussichtliche Zustellung",
               "Mitteleuropäische Zeit"),
        "es": ("lucia@example.com", "Aviso", "Tu paquete lleva retraso",
               "Probablemente no llegará el jue, 5 de noviembre, la fecha que te prometimos. "
               "Nueva estimación: vie, 6 de noviembre – dom, 8 de noviembre.",
               "Entrega estimada", "hora de Europa central"),
    }
    for locale, (to, subject_word, title, text, eta_heading, zone) in cases.items():
        link = _tracking_link(smtp, to, subject_word)
        answer = await page.goto(link)
        assert answer is not None and answer.status == 200
        notice = page.locator("[data-delay]")
        assert await notice.locator("h2").inner_text() == title
        assert " ".join((await notice.locator("p").inner_text()).split()) == text
        assert await page.locator("#eta").inner_text() == eta_heading
        assert zone in await page.locator("main").inner_text()
        assert await page.locator('[aria-current="step"]').count() == 1
        await _accessible(page)
        await _shots(page, artefacts, f"tracking-{locale}")
    # A broken link: the friendly page in the browser's language, never JSON.
    german = await browser.new_context(locale="de-DE")
    lost = await german.new_page()
    answer = await lost.goto(str(server.make_url("/t/not-a-real-link")))
    assert answer is not None and answer.status == 404
    assert await lost.locator("h1").inner_text() == "Dieser Link funktioniert nicht"
    await lost.click("text=Bestellung finden")
    await lost.fill("#order", "o-de")
    await lost.fill("#contact", "LENA@example.com")
    await lost.click("button[type=submit]")
    assert "/t/" in lost.url and await lost.locator("h1").inner_text() == "Unterwegs"
    await german.close()
    await context.close()


async def test_an_agent_finds_the_customer_and_resends_a_message(
    browser: Any, live: tuple[TestServer, Settings], admin: dict[str, str], pool: asyncpg.Pool,
    clock: ManualClock, smtp: SmtpStandin, make_key: KeyFactory, artefacts: Path,
) -> None:
    server, settings = live
    await _late_orders(server, admin, pool, settings, clock)
    sent_before = len(smtp.state.messages)
    agent = await make_key("shipments:read", "support:write")
    key = agent["Authorization"].split()[1]
    context = await browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = await context.new_page()
    await page.goto(str(server.make_url("/support")))
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#q")
    cookies = await context.cookies()
    [session] = [c for c in cookies if c["name"] == "pc_support"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await page.fill("#q", "Lena@Example.com")
    await page.click("form[role=search] button")
    await page.click("text=s-de")
    assert await page.locator("h1").inner_text() == "Shipment s-de in transit late"
    assert await page.locator("svg[role=img]").count() == 1
    await _accessible(page)
    rows = page.locator("#notifications tbody tr")
    assert await rows.count() == 2  # shipped and predicted delay, both sent
    await page.click('button[aria-label="Resend predicted delay by email"]')
    assert "Message queued" in await page.locator(".flash").inner_text()
    await drain(settings, clock, pool)
    await page.reload()
    assert await rows.count() == 3
    resent = rows.nth(2)
    assert "resend of #" in await resent.inner_text()
    assert "sent" in await resent.locator(".badge").inner_text()
    audit = page.locator("section[aria-labelledby=audit] tbody tr")
    assert await audit.count() == 1
    actor = key.split("_")[1]
    assert (await audit.first.inner_text()).split("\t")[1:3] == [actor, "resend · s-de"]
    assert len(smtp.state.messages) == sent_before + 1
    await _shots(page, artefacts, "support-shipment")
    await page.goto(str(server.make_url("/support?q=lena")))
    await _shots(page, artefacts, "support-search")
    await context.close()
