"""The app with known webhook secrets, and the senders' signing helpers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.api.views import webhooks
from service.clock import ManualClock
from service.security.webhook_secrets import WebhookSecrets
from service.security.webhook_signatures import (
    aftership_signature,
    easypost_signature,
    shopify_signature,
)
from service.settings import Settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SECRETS = {"shopify": "shpss_test_secret_0123456789abcdef",
           "easypost": "ep-secret-naïve-ﬁle",  # non-ASCII, so NFKD normalization matters
           "aftership": "aftership-test-secret"}


def fixture(name: str) -> bytes:
    """A sender's example payload, as bytes (signatures are over exactly these)."""
    return json.dumps(json.loads((FIXTURES / name).read_text())).encode()


def sign(source: str, body: bytes, **headers: str) -> dict[str, str]:
    """The headers the sender would send with `body`."""
    secret = SECRETS[source]
    signed = {
        "shopify": {"X-Shopify-Hmac-Sha256": shopify_signature(secret, body)},
        "easypost": {"X-Hmac-Signature": easypost_signature(secret, body)},
        "aftership": {"aftership-hmac-sha256": aftership_signature(secret, body)},
    }[source]
    return {"Content-Type": "application/json", **signed, **headers}


def build_client_app(settings: Settings, clock: ManualClock, secrets: WebhookSecrets) -> Any:
    app = create_app(settings, clock)
    app[webhooks.webhook_secrets_key] = secrets
    return app


@pytest.fixture
async def hooks(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> TestClient:
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE webhook_deliveries RESTART IDENTITY")
    secrets = WebhookSecrets(shopify_webhook_secret=SECRETS["shopify"],
                             easypost_webhook_secret=SECRETS["easypost"],
                             aftership_webhook_secret=SECRETS["aftership"])
    return await aiohttp_client(build_client_app(settings, clock, secrets))


Post = Callable[..., Awaitable[ClientResponse]]


@pytest.fixture
def post(hooks: TestClient) -> Post:
    async def send(source: str, body: bytes, **headers: str) -> ClientResponse:
        return await hooks.post(f"/v1/webhooks/{source}", data=body,
                                headers=sign(source, body, **headers))
    return send
