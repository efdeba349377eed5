"""Build the MIME message for a rendered e-mail, with one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from workers.notify.render import RenderedEmail

NOTIFICATION_ID_HEADER = "X-Parcelcast-Notification-Id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
    if not unsubscribe_url.startswith("https://"):
        raise ValueError("RFC 8058 one-click unsubscribe needs an https URL")
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = to_addr
    if reply_to:
        msg["Reply-To"] = reply_to
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
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg
