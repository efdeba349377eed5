"""Build the MIME message for a rendered e-mail, with one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import datetime
from email.contentmanager import raw_data_manager
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.policy import Compat32
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from workers.render.render import RenderedEmail

NOTIFICATION_ID_HEADER = "X-Parcelcast-Notification-Id"


# RFC 5322 §2.1.1: lines SHOULD stay within 78 characters and MUST within 998.
LINE_LIMIT = 78
# RFC 2047 §2: an encoded word is at most 75 characters; "=?utf-8?b?" + "?=" take 12, and
# 60 base64 characters carry 45 bytes.
_WORD_BYTES = 45
_FOLDED = re.compile(r"\r?\n[ \t]*")
# An RFC 2047 encoded word already made (an address's display name, by formataddr).
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=[,;>]?")
# A short value `fold` writes as it is: single spaces between words, none at either end.
_PLAIN_VALUE = re.compile(r"[^\s]+(?: [^\s]+)*")


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 encoded words (B encoding, UTF-8), each within 75 characters and
    never splitting a character."""
    words, chunk = [], b""
    for char in text:
        data = char.encode()
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += data
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words if w]


def header_tokens(value: str) -> list[str]:
    """A header value as the tokens it may be folded between: its space-separated words,
    where a run of words that are not plain ASCII becomes encoded words (only those: an
    ASCII subject is never encoded; encoded words made before pass as they are). Whitespace
    between two encoded words vanishes when decoded, so a run keeps its inner spaces inside
    its encoding."""
    tokens: list[str] = []
    run: list[str] = []
    for word in _FOLDED.sub(" ", value).strip(" ").split(" "):
        if word.isascii() and ("=?" not in word or _ENCODED_WORD.fullmatch(word)):
            if run:
                tokens += _encoded_words(" ".join(run))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens += _encoded_words(" ".join(run))
    return tokens


def fold(name: str, value: str, linesep: str = "\r\n") -> str:
    """`Name: value` folded only where RFC 5322 allows, at the spaces between tokens, when a
    line would pass LINE_LIMIT. A token is never split: a URL in angle brackets stays whole
    (RFC 2369), on a line of its own if it must."""
    if (len(name) + len(value) + 2 <= LINE_LIMIT and value.isascii() and "=?" not in value
            and _PLAIN_VALUE.fullmatch(value)):
        return f"{name}: {value}{linesep}"  # what the loop below makes of it, cheaply
    lines, line = [], f"{name}:"
    for token in header_tokens(value):
        if len(line) + 1 + len(token) > LINE_LIMIT and line.strip() and line != f"{name}:":
            lines.append(line)
            line = ""
        line += f" {token}"
    lines.append(line)
    return linesep.join(lines) + linesep


class _MimePolicy(Compat32):
    """compat32 header handling plus the modern content manager (set_content & co), and our
    own folding.

    The default policy parses every header into a token tree on assignment and refolds
    it on output; for headers we compose ourselves that was ~75% of the cost of a
    message (the stdlib even builds a new header class per header). compat32 stores
    strings as given. On output `fold` writes them: ASCII as it is, folded only at spaces
    and only past 78 characters; non-ASCII words as RFC 2047 encoded words. (SMTP's
    default policy re-parses and refolds instead, which turned List-Unsubscribe into
    encoded words that mailbox providers do not read: send `wire_bytes`.)
    """

    content_manager = raw_data_manager

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if not isinstance(value, str) or any("\udc80" <= c <= "\udcff" for c in value):
            return str(super()._fold(name, value, sanitize))  # type: ignore[misc]
        return fold(name, value, self.linesep)


POLICY = _MimePolicy()
# What goes to an SMTP server (and the outbox): CRLF line ends.
WIRE_POLICY = POLICY.clone(linesep="\r\n")


_SURROGATE = re.compile("[\udc80-\udcff]")


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as it goes on the wire, headers folded by `fold`: the bytes
    `message.as_bytes(policy=WIRE_POLICY)` makes, written directly for the messages
    `build_email` makes (a tenth of the cost); anything else goes through the generator."""
    out: list[str] = []
    if _flatten(message, out):
        return "".join(out).encode("ascii")
    return message.as_bytes(policy=WIRE_POLICY)


def _flatten(part: Message, out: list[str]) -> bool:
    """`part` appended to `out` as the stdlib's BytesGenerator writes it with WIRE_POLICY,
    for the simple shapes only (string headers, ASCII payloads already transfer-encoded, a
    multipart with its boundary set and no preamble or epilogue); False for anything else."""
    for name, value in part.raw_items():  # as stored, as the generator reads them
        if not isinstance(value, str) or (not value.isascii() and _SURROGATE.search(value)):
            return False  # what `_MimePolicy._fold` leaves to compat32
        out.append(fold(name, value))
    out.append("\r\n")
    payload = part.get_payload()
    if isinstance(payload, str):
        if not payload.isascii() or "\r" in payload:
            return False
        out.append(payload.replace("\n", "\r\n"))
        return True
    if not isinstance(payload, list) or not payload or part.preamble is not None \
            or part.epilogue is not None:
        return False
    boundary = part.get_boundary()
    if boundary is None:
        return False
    out.append(f"--{boundary}\r\n")
    for i, sub in enumerate(payload):
        if i:
            out.append(f"\r\n--{boundary}\r\n")
        if not isinstance(sub, Message) or sub.is_multipart() or not _flatten(sub, out):
            return False
    out.append(f"\r\n--{boundary}--\r\n")
    return True


# A bare address as `_address` would return it (and as SMTP's envelope uses it).
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
# Headers that change the envelope aiosmtplib derives from a message.
_ENVELOPE_HEADERS = ("Sender", "Cc", "Bcc", "Resent-Date", "Resent-From", "Resent-Sender")


def envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """SMTP's MAIL FROM and RCPT TO for `message`: the addresses of From and To (what
    aiosmtplib's extract_sender and extract_recipients return for the messages `build_email`
    makes; with Sender, Cc, Bcc or Resent-* present, theirs)."""
    if any(name in message for name in _ENVELOPE_HEADERS):
        from aiosmtplib.email import extract_recipients, extract_sender

        return extract_sender(message) or "", extract_recipients(message)
    sender = _addr_spec(str(message.get("From") or ""))
    recipients = [_addr_spec(str(value)) for value in message.get_all("To") or ()]
    return sender, [r for r in recipients if r]


@lru_cache(maxsize=1024)
def _addr_spec(value: str) -> str:
    if _BARE_ADDRESS.fullmatch(value):
        return value
    found = getaddresses([value])
    return found[0][1] if found else ""


def _address(value: str | Address) -> str:
    if isinstance(value, Address):
        return _formatted(value.display_name, value.addr_spec, value)
    if _BARE_ADDRESS.fullmatch(value):
        return value  # formataddr(parseaddr(value)) of a bare address: itself
    return _named_address(value)


@lru_cache(maxsize=256)
def _named_address(value: str) -> str:
    """The shop's own From (the same every time): parsed once."""
    name, addr = parseaddr(value)
    return _formatted(name, addr, value)


def _formatted(name: str, addr: str, value: str | Address) -> str:
    if not addr or "\n" in addr or "\r" in addr:
        raise ValueError(f"not an e-mail address: {value!r}")
    return formataddr((name, addr), charset="utf-8")


_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _loopback(url: str) -> bool:
    """A local development URL (the demo's), which cannot have a certificate."""
    host = urlsplit(url).hostname or ""
    return url.startswith("http://") and (host in ("localhost", "::1") or host.startswith("127."))


def message_id_for(notification_id: str, domain: str) -> str:
    """A Message-ID derived from the notification id: a retried send keeps the same one,
    so the provider (and the customer's mail client) can tell it is the same message."""
    return f"<{notification_id}@{domain}>"


def build_email(rendered: RenderedEmail, *, notification_id: str, from_addr: str | Address,
                to_addr: str | Address, unsubscribe_url: str, now: datetime,
                message_id_domain: str, unsubscribe_mailto: str | None = None,
                reply_to: str | None = None) -> EmailMessage:
    """A multipart/alternative message (text first, HTML preferred) ready for SMTP.

    `now` stamps the Date header and must be timezone-aware. `unsubscribe_url` must be an
    https URL that accepts a POST of `List-Unsubscribe=One-Click` (RFC 8058), which is what
    Gmail and Yahoo require of bulk senders.
    """
    if not _SAFE_ID.match(notification_id):
        raise ValueError(f"notification id unsuitable for a header: {notification_id!r}")
    if now.tzinfo is None:
        raise ValueError("the Date header needs a timezone-aware `now`")
    if not (unsubscribe_url.startswith("https://") or _loopback(unsubscribe_url)):
        raise ValueError("RFC 8058 one-click unsubscribe needs an https URL")
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(from_addr)
    msg["To"] = _address(to_addr)
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id_for(notification_id, message_id_domain)
    targets = [f"<{unsubscribe_url}>"]
    if unsubscribe_mailto:
        targets.append(f"<mailto:{unsubscribe_mailto}>")
    msg["List-Unsubscribe"] = ", ".join(targets)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg[NOTIFICATION_ID_HEADER] = notification_id
    msg["Content-Language"] = rendered.locale_used
    msg["MIME-Version"] = "1.0"
    # The parts are made here, transfer-encoded in C (binascii), rather than by set_content
    # and add_alternative: those took two thirds of a message's MIME cost (a content manager
    # round, header re-parsing, a regular expression compiled per message to pick a boundary).
    text = _text_part(rendered.text)
    # base64 for the HTML, as the text's quoted-printable: encoded in C; mail clients treat
    # both the same.
    html = _part("text/html", "base64", base64.encodebytes(rendered.html.encode()).decode("ascii"))
    msg["Content-Type"] = f'multipart/alternative; boundary="{_boundary(text)}"'
    msg.set_payload([text, html])
    return msg


# The stdlib's choice for a text part: as it is (7bit) when it is plain ASCII in short lines.
_SEVEN_BIT = re.compile(r"[\t\n\x20-\x7e]*")


def _text_part(text: str) -> MIMEPart:
    """text/plain in UTF-8: 7bit when it can be, else quoted-printable (line ends as LF)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _SEVEN_BIT.fullmatch(text) and all(len(line) <= LINE_LIMIT
                                          for line in text.split("\n")):
        return _part("text/plain", "7bit", text)
    encoded = binascii.b2a_qp(text.encode(), istext=True).decode("ascii")
    return _part("text/plain", "quoted-printable", encoded)


def _part(content_type: str, cte: str, payload: str) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    part["Content-Type"] = f'{content_type}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = cte
    part.set_payload(payload)
    return part


def _boundary(text: MIMEPart) -> str:
    """A random boundary. base64 and quoted-printable never contain "=_", so only a text part
    sent as it is could; it is checked."""
    while True:
        boundary = f"=_pc_{secrets.token_hex(12)}"
        if boundary not in str(text.get_payload()):
            return boundary
