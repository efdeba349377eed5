from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from workers.render.email_message import build_email
from workers.render.render import Renderer
from workers.render.samples import sample_context
from workers.senders import OutboxSender, SmsMessage


async def test_one_file_per_notification_id(tmp_path: Path, renderer: Renderer) -> None:
    outbox = OutboxSender(tmp_path / "outbox")
    rendered = renderer.render_email("shipped", "en", sample_context("shipped"))
    msg = build_email(rendered, notification_id="ntf-1", from_addr="a@x.example",
                      to_addr="b@x.example", unsubscribe_url="https://x.example/u",
                      now=datetime(2026, 3, 3, tzinfo=UTC), message_id_domain="x.example")
    first = await outbox.send(msg)
    second = await outbox.send(msg)
    assert first == second
    sms = SmsMessage("ntf-2", "+14155550123", "hello")
    await asyncio.gather(*(outbox.send(sms) for _ in range(10)))
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["ntf-1.eml", "ntf-2.sms.json"]  # no second copy, no temp files left
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in (
        tmp_path / "outbox" / "ntf-1.eml").read_bytes()
    assert json.loads((tmp_path / "outbox" / "ntf-2.sms.json").read_text())["body"] == "hello"
