"""Fixtures: the renderer, and both provider stand-ins as real servers on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from standins.smtp_server import SmtpStandin
from standins.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioStandin
from workers.render.render import Renderer
from workers.senders import SmtpEmailSender, SmtpSettings, TwilioSmsSender

FROM_NUMBER = "+15005550006"


@pytest.fixture(scope="session")
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture
async def twilio_standin() -> AsyncIterator[TwilioStandin]:
    standin = await TwilioStandin().start()
    yield standin
    await standin.stop()


@pytest.fixture
async def twilio_sender(twilio_standin: TwilioStandin) -> AsyncIterator[TwilioSmsSender]:
    sender = TwilioSmsSender(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, from_number=FROM_NUMBER,
                             base_url=twilio_standin.base_url, timeout=5)
    yield sender
    await sender.aclose()


@pytest.fixture
def smtp_standin() -> Iterator[SmtpStandin]:
    standin = SmtpStandin(username="relay", password="secret").start()
    yield standin
    standin.stop()


@pytest.fixture
async def smtp_sender(smtp_standin: SmtpStandin) -> AsyncIterator[SmtpEmailSender]:
    sender = SmtpEmailSender(SmtpSettings("127.0.0.1", smtp_standin.port, username="relay",
                                          password="secret", start_tls=False, timeout=5),
                             pool_size=2)
    yield sender
    await sender.aclose()
