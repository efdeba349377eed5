"""What reaches the SMTP server, byte for byte: List-Unsubscribe whole and unencoded (so
mailbox providers offer one-click unsubscribe), subjects encoded only where they need it,
folding only at the spaces RFC 5322 allows."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.policy import default as default_policy

import pytest

from service.security.links import unsubscribe_url
from standins.smtp_server import SmtpStandin
from workers.render.email_message import WIRE_POLICY, build_email, fold, wire_bytes
from workers.render.moments import MOMENTS, SHIPPED_LOCALES
from workers.render.render import RenderedEmail, Renderer
from workers.render.samples import sample_context
from workers.senders import SmtpEmailSender

NOW = datetime(2026, 3, 3, 15, 30, tzinfo=UTC)
# A real signed link for a long address on a long host: well past 78 characters.
UNSUBSCRIBE = unsubscribe_url("https://track.northwind-coffee-roasters.example",
                              "a-secret-key-of-sixteen+", "email",
                              "maximiliana.wolfeschlegelsteinhausen@example.com", NOW)


def _rendered(subject: str) -> RenderedEmail:
    return RenderedEmail(subject=subject, html="<p>Hallo</p>", text="Hallo", locale_used="de")


def _headers(raw: bytes) -> list[bytes]:
    """The raw header lines, folds kept (each continuation line starts with a space)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b""), "bare LF in the header block"
    return head.split(b"\r\n")


def _field(lines: list[bytes], name: str) -> list[bytes]:
    """One header's physical lines, as received."""
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(
        name.lower().encode() + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return lines[start:end]


async def _sent(smtp_sender: SmtpEmailSender, smtp_standin: SmtpStandin, subject: str,
                mailto: str | None = "unsubscribe@northwind-coffee-roasters.example") -> bytes:
    message = build_email(_rendered(subject), notification_id="n42",
                          from_addr="Northwind Coffee Röstërei <orders@northwind.example>",
                          to_addr="maria@example.com", unsubscribe_url=UNSUBSCRIBE, now=NOW,
                          message_id_domain="northwind.example", unsubscribe_mailto=mailto)
    await smtp_sender.send(message)
    return smtp_standin.state.raw[-1]


async def test_list_unsubscribe_reaches_the_server_whole(
    smtp_sender: SmtpEmailSender, smtp_standin: SmtpStandin
) -> None:
    assert len(UNSUBSCRIBE) > 78
    lines = _headers(await _sent(smtp_sender, smtp_standin, "Your order has shipped"))
    field = _field(lines, "List-Unsubscribe")
    # Folded (if at all) only between the two URLs, each in angle brackets, never encoded.
    assert field == [f"List-Unsubscribe: <{UNSUBSCRIBE}>,".encode(),
                     b" <mailto:unsubscribe@northwind-coffee-roasters.example>"]
    assert _field(lines, "List-Unsubscribe-Post") == [
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    assert all(b"=?" not in line for line in field)
    assert all(len(line) <= 998 for line in lines)


async def test_one_url_alone_stays_on_one_line(
    smtp_sender: SmtpEmailSender, smtp_standin: SmtpStandin
) -> None:
    lines = _headers(await _sent(smtp_sender, smtp_standin, "Shipped", mailto=None))
    assert _field(lines, "List-Unsubscribe") == [f"List-Unsubscribe: <{UNSUBSCRIBE}>".encode()]


async def test_subjects_are_encoded_only_where_needed(
    smtp_sender: SmtpEmailSender, smtp_standin: SmtpStandin
) -> None:
    plain = "Kommt heute: Ihre Bestellung #1042 bei Northwind Coffee ist in der Zustellung"
    lines = _headers(await _sent(smtp_sender, smtp_standin, plain))
    field = _field(lines, "Subject")
    assert b"=?" not in b"".join(field)
    assert b" ".join(line.strip() for line in field) == f"Subject: {plain}".encode()
    assert all(len(line) <= 78 for line in field)  # folded at a space, not encoded

    accented = "Verspätung: Ihre Bestellung #1042 kommt später, voraussichtlich Donnerstag"
    raw = await _sent(smtp_sender, smtp_standin, accented)
    field = _field(_headers(raw), "Subject")
    joined = b"".join(field).decode("ascii")
    assert "Ihre Bestellung #1042 kommt" in joined  # the ASCII words stay readable
    assert joined.count("=?utf-8?b?") == 2  # "Verspätung:" and "später,"
    assert all(len(line) <= 78 for line in field)
    assert str(make_header(decode_header(joined.removeprefix("Subject:").strip()))) == accented
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert parsed["Subject"] == accented
    assert parsed["From"].addresses[0].display_name == "Northwind Coffee Röstërei"


@pytest.mark.parametrize("subject", [
    "Ваш заказ #1042 в пути: курьер доставит его в четверг между 10 и 14 часами",
    "配送中：ご注文 #1042 は木曜日にお届け予定です。配達員が10時から14時の間に伺います。",
    "A" * 120, "Zoë 🎉 " * 20,
])
def test_fold_round_trips(subject: str) -> None:
    text = fold("Subject", subject)
    assert text.endswith("\r\n")
    lines = text[:-2].split("\r\n")
    assert all(line.isascii() for line in lines)
    # Longer only where one unbreakable token would not fit.
    assert all(len(line) <= 78 or len(line.removeprefix("Subject:").split()) == 1
               for line in lines)
    value = " ".join(line.strip() for line in lines).removeprefix("Subject:").strip()
    assert str(make_header(decode_header(value))) == subject.strip()


def test_every_template_goes_out_as_the_stdlib_would_write_it(renderer: Renderer) -> None:
    """`wire_bytes` writes our messages itself (the generator cost more than rendering them):
    byte for byte what `as_bytes` makes, and a mail client reads back exactly what was
    rendered."""
    for moment in MOMENTS:
        for locale in SHIPPED_LOCALES:
            ctx = sample_context(moment)
            rendered = renderer.render_email(moment, locale, ctx)
            message = build_email(rendered, notification_id="n42",
                                  from_addr="Northwind Coffee Röstërei <orders@northwind.example>",
                                  to_addr="maria@example.com",
                                  unsubscribe_url=ctx["unsubscribe_url"], now=NOW,
                                  message_id_domain="northwind.example")
            raw = wire_bytes(message)
            assert raw == message.as_bytes(policy=WIRE_POLICY), (moment, locale)
            parsed = email.message_from_bytes(raw, policy=default_policy)
            assert parsed["Subject"] == rendered.subject
            assert parsed["Content-Language"] == rendered.locale_used
            text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
            assert text is not None and html is not None
            assert text.get_content().replace("\r\n", "\n") == rendered.text
            assert html.get_content() == rendered.html


@pytest.mark.parametrize("text", [
    "Plain ASCII in short lines.\n",
    "Grüße aus Köln, Ihre Bestellung ist unterwegs.\n",
    "A very long line " * 12 + "\nand a short one\n",
    "Windows line ends\r\nand a lone carriage return\rin carrier data\n",
    "--=_pc_ a line that looks like a boundary\n.\nFrom the start of a line\n",
])
def test_text_parts_read_back_as_written(text: str) -> None:
    rendered = RenderedEmail(subject="Hallo", html="<p>Hallo</p>", text=text, locale_used="de")
    message = build_email(rendered, notification_id="n42", from_addr="a@x.example",
                          to_addr="b@x.example", unsubscribe_url=UNSUBSCRIBE, now=NOW,
                          message_id_domain="x.example")
    raw = wire_bytes(message)
    assert raw == message.as_bytes(policy=WIRE_POLICY)
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert all(len(line) <= 78 for line in body_lines)  # RFC 5322's SHOULD
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only, as SMTP wants
    body = email.message_from_bytes(raw, policy=default_policy).get_body(("plain",))
    assert body is not None
    # Line ends as the text's lines, whatever the transfer encoding (a 7bit part reads back
    # with the wire's CRLF).
    assert body.get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n").replace(
        "\r", "\n")
