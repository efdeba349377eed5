"""The default transport of a fresh install: write what would be sent to a folder.

One file per notification, named by its id, so nothing is sent by accident and an
operator can read exactly what a customer would have received. Files appear atomically
(written under a temporary name, then hard-linked into place), and a second send of the
same id finds the file already there and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from email.message import EmailMessage
from pathlib import Path

from workers.render.email_message import NOTIFICATION_ID_HEADER, wire_bytes
from workers.senders.errors import PermanentSendError, SendResult, TransientSendError
from workers.senders.messages import SmsMessage

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class OutboxSender:
    """Writes e-mails as `<id>.eml` and SMS as `<id>.sms.json` under `folder`."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    async def send(self, message: EmailMessage | SmsMessage) -> SendResult:
        """Write the message; only a disk error fails (as TransientSendError: disks recover)."""
        if isinstance(message, SmsMessage):
            notification_id = message.notification_id
            name = f"{notification_id}.sms.json"
            payload = json.dumps({"notification_id": notification_id, "to": message.to,
                                  "body": message.body,
                                  "status_callback": message.status_callback},
                                 ensure_ascii=False, indent=2).encode()
        else:
            notification_id = str(message.get(NOTIFICATION_ID_HEADER) or "")
            name = f"{notification_id}.eml"
            payload = b""
        if not _SAFE_NAME.match(notification_id):
            # An id we cannot use as a file name is a bug upstream; retrying will not fix it.
            raise PermanentSendError(0, f"outbox: unusable notification id {notification_id!r}")
        if isinstance(message, EmailMessage):
            payload = wire_bytes(message)
        try:
            await asyncio.to_thread(self._write_once, name, payload)
        except OSError as exc:
            raise TransientSendError(f"outbox: {exc}") from exc
        return SendResult(provider_id=f"outbox:{notification_id}")

    async def lookup(self, message: EmailMessage | SmsMessage, since: object) -> SendResult | None:
        """An interrupted send went out if its file is there."""
        notification_id = (message.notification_id if isinstance(message, SmsMessage)
                           else str(message.get(NOTIFICATION_ID_HEADER) or ""))
        suffix = ".sms.json" if isinstance(message, SmsMessage) else ".eml"
        if _SAFE_NAME.match(notification_id) and (self.folder / f"{notification_id}{suffix}").exists():
            return SendResult(provider_id=f"outbox:{notification_id}")
        return None

    def _write_once(self, name: str, payload: bytes) -> bool:
        """True when this call created the file, False when it already existed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / name
        if final.exists():
            return False
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                # link() fails if the name exists, so two concurrent sends of one id
                # cannot both "create" it, and readers never see a half-written file.
                os.link(tmp, final)
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    async def aclose(self) -> None:
        """Nothing to release; present so every sender closes the same way."""
