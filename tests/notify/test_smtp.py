from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy

import aiohttp
import pytest

from standins.common import free_port
from standins.smtp_server import SmtpStandin
from workers.render.email_message import NOTIFICATION_ID_HEADER, build_email
from workers.render.render import Renderer
from workers.render.samples import sample_context
from workers.senders import (
    PermanentSendError,
    SmtpEmailSender,
    SmtpSettings,
    TransientSendError,
)

NOW = datetime(2026, 3, 3, 15, 30, tzinfo=UTC)


def _message(renderer: Renderer, notification_id: str, locale: str = "de") -> EmailMessage:
    ctx = sample_context("out_for_delivery")
    rendered = renderer.render_email("out_for_delivery", locale, ctx)
    return build_email(rendered, notification_id=notification_id,
                       from_addr="Northwind Coffee <orders@northwind.example>",
                       to_addr="maria@example.com", unsubscribe_url=ctx["unsubscribe_url"],
                       unsubscribe_mailto="unsubscribe@northwind.example", now=NOW,
                       message_id_domain="northwind.example")


def test_message_headers(renderer: Renderer) -> None:
    msg = _message(renderer, "ntf-1")
    assert msg["List-Unsubscribe"] == (
        "<https://track.northwind.example/u/8fK2mQ9x?c=email>, "
        "<mailto:unsubscribe@northwind.example>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == "<ntf-1@northwind.example>"
    assert msg[NOTIFICATION_ID_HEADER] == "ntf-1"
    assert msg["Date"] == "Tue, 03 Mar 2026 15:30:00 +0000"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    with pytest.raises(ValueError):
        build_email(renderer.render_email("shipped", "en", sample_context("shipped")),
                    notification_id="bad id\n", from_addr="a@x.example", to_addr="b@x.example",
                    unsubscribe_url="https://x.example/u", now=NOW, message_id_domain="x")


async def test_send_is_captured_with_headers(renderer: Renderer, smtp_standin: SmtpStandin,
                                             smtp_sender: SmtpEmailSender) -> None:
    result = await smtp_sender.send(_message(renderer, "ntf-1"))
    [captured] = smtp_standin.state.messages
    assert result.provider_id == captured["queue_id"]
    assert captured["rcpt_tos"] == ["maria@example.com"]
    assert captured["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    parsed = email.message_from_bytes(smtp_standin.state.raw[0], policy=default_policy)
    assert parsed["Subject"] == "Kommt heute: Ihre Bestellung #1042 bei Northwind Coffee"
    html = parsed.get_body(("html",))
    assert html is not None and "Ihr Paket ist in der Zustellung" in html.get_content()


async def test_451_is_transient_550_permanent(renderer: Renderer, smtp_standin: SmtpStandin,
                                              smtp_sender: SmtpEmailSender) -> None:
    smtp_standin.state.control(1, 451)
    with pytest.raises(TransientSendError):
        await smtp_sender.send(_message(renderer, "ntf-1"))
    smtp_standin.state.control(1, 550)
    with pytest.raises(PermanentSendError) as info:
        await smtp_sender.send(_message(renderer, "ntf-2"))
    assert info.value.code == 550
    await smtp_sender.send(_message(renderer, "ntf-1"))  # the connection is still usable
    assert smtp_standin.state.stats() == {"received": 3, "accepted": 1, "duplicates": 0,
                                          "failed": 2}


async def test_connections_are_reused_and_reopened(renderer: Renderer,
                                                   smtp_standin: SmtpStandin,
                                                   smtp_sender: SmtpEmailSender) -> None:
    for i in range(5):
        await smtp_sender.send(_message(renderer, f"ntf-{i}"))
    assert len(smtp_sender._all) == 1  # sequential sends share one connection
    [conn] = smtp_sender._all
    conn.close()  # as if the server had dropped an idle connection
    await smtp_sender.send(_message(renderer, "ntf-after"))
    assert len(smtp_standin.state.messages) == 6


async def test_refused_connection_is_transient(renderer: Renderer) -> None:
    sender = SmtpEmailSender(SmtpSettings("127.0.0.1", free_port(), start_tls=False, timeout=2))
    with pytest.raises(TransientSendError):
        await sender.send(_message(renderer, "ntf-1"))
    await sender.aclose()


async def test_duplicates_and_http_control(renderer: Renderer, smtp_standin: SmtpStandin,
                                           smtp_sender: SmtpEmailSender) -> None:
    port = await smtp_standin.start_http()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/_control", json={"fail_next": 1, "code": 550}) as r:
                assert r.status == 200
            with pytest.raises(PermanentSendError):
                await smtp_sender.send(_message(renderer, "ntf-1"))
            await smtp_sender.send(_message(renderer, "ntf-1"))
            await smtp_sender.send(_message(renderer, "ntf-1"))
            async with http.get(f"{base}/_stats") as r:
                assert await r.json() == {"received": 3, "accepted": 2, "duplicates": 1,
                                          "failed": 1}
            async with http.get(f"{base}/_messages") as r:
                assert [m["notification_id"] for m in await r.json()] == ["ntf-1", "ntf-1"]
    finally:
        await smtp_standin.stop_http()
