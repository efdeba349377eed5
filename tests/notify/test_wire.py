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
from workers.render.email_message import build_email, fold
from workers.render.render import RenderedEmail
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
