from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from standins.common import free_port, start_site
from standins.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioStandin
from tests.notify.conftest import FROM_NUMBER
from workers.senders import (
    PermanentSendError,
    SmsMessage,
    TransientSendError,
    TwilioSmsSender,
    UncertainSendError,
)

TO = "+14155550123"


async def _control(standin: TwilioStandin, **body: object) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{standin.base_url}/_control", json=body) as resp:
        assert resp.status == 200


async def test_sdk_sends_through_the_standin(twilio_standin: TwilioStandin,
                                             twilio_sender: TwilioSmsSender) -> None:
    result = await twilio_sender.send(SmsMessage("n-1", TO, "Your order has shipped",
                                                 "https://hooks.example/twilio/status"))
    assert result.provider_id.startswith("SM") and len(result.provider_id) == 34
    [received] = twilio_standin.state.messages
    assert received["sid"] == result.provider_id
    assert (received["to"], received["from"], received["body"]) == (
        TO, FROM_NUMBER, "Your order has shipped")
    assert received["status_callback"] == (
        "https://hooks.example/twilio/status?notification_id=n-1")
    async with aiohttp.ClientSession() as session, session.get(
            f"{twilio_standin.base_url}/_messages") as resp:
        assert [m["sid"] for m in await resp.json()] == [result.provider_id]


async def test_messaging_service_and_duplicate_count(twilio_standin: TwilioStandin) -> None:
    sender = TwilioSmsSender(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN,
                             messaging_service_sid="MG" + "1" * 32,
                             base_url=twilio_standin.base_url)
    try:
        await sender.send(SmsMessage("n-1", TO, "one", "https://hooks.example/s"))
        await sender.send(SmsMessage("n-2", TO, "two", "https://hooks.example/s"))
        assert twilio_standin.state.duplicates == 0
        await sender.send(SmsMessage("n-1", TO, "one again", "https://hooks.example/s"))
        assert twilio_standin.state.duplicates == 1
        assert twilio_standin.state.messages[0]["status"] == "accepted"
    finally:
        await sender.aclose()


async def test_server_error_then_success(twilio_standin: TwilioStandin,
                                         twilio_sender: TwilioSmsSender) -> None:
    await _control(twilio_standin, fail_next=1, status=500)
    with pytest.raises(TransientSendError) as info:
        await twilio_sender.send(SmsMessage("n-1", TO, "hello"))
    assert info.value.retry_after is None
    result = await twilio_sender.send(SmsMessage("n-1", TO, "hello"))
    assert result.provider_id.startswith("SM")
    assert twilio_standin.state.duplicates == 0


async def test_429_carries_retry_after(twilio_standin: TwilioStandin,
                                       twilio_sender: TwilioSmsSender) -> None:
    await _control(twilio_standin, fail_next=1, status=429, retry_after=7)
    with pytest.raises(TransientSendError) as info:
        await twilio_sender.send(SmsMessage("n-1", TO, "hello"))
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize(("code", "opt_out"), [(21211, False), (21610, True)])
async def test_permanent_errors_expose_the_twilio_code(
        twilio_standin: TwilioStandin, twilio_sender: TwilioSmsSender, code: int,
        opt_out: bool) -> None:
    key = "invalid_numbers" if code == 21211 else "unsubscribed_numbers"
    await _control(twilio_standin, **{key: [TO]})
    with pytest.raises(PermanentSendError) as info:
        await twilio_sender.send(SmsMessage("n-1", TO, "hello"))
    assert info.value.code == code and info.value.is_opt_out is opt_out


async def test_bad_credentials_are_permanent(twilio_standin: TwilioStandin) -> None:
    sender = TwilioSmsSender(DEFAULT_ACCOUNT_SID, "wrong", from_number=FROM_NUMBER,
                             base_url=twilio_standin.base_url)
    try:
        with pytest.raises(PermanentSendError) as info:
            await sender.send(SmsMessage("n-1", TO, "hello"))
        assert info.value.code == 20003
    finally:
        await sender.aclose()


async def test_connection_refused_is_transient() -> None:
    sender = TwilioSmsSender(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, from_number=FROM_NUMBER,
                             base_url=f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(TransientSendError) as info:
            await sender.send(SmsMessage("n-1", TO, "hello"))
        assert not isinstance(info.value, UncertainSendError)  # it never got there
    finally:
        await sender.aclose()


async def test_no_answer_in_time_is_uncertain_and_the_lookup_finds_it(
        twilio_standin: TwilioStandin) -> None:
    sender = TwilioSmsSender(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, from_number=FROM_NUMBER,
                             base_url=twilio_standin.base_url, timeout=0.3)
    message = SmsMessage("n-1", TO, "hello, slowly")
    try:
        twilio_standin.state.delay = 1.0
        with pytest.raises(UncertainSendError):
            await sender.send(message)
        twilio_standin.state.delay = 0
        found = await sender.lookup(message, datetime.now(UTC))
        assert found is not None
        assert found.provider_id == twilio_standin.state.messages[0]["sid"]
        assert await sender.lookup(SmsMessage("n-2", TO, "another"), datetime.now(UTC)) is None
    finally:
        await sender.aclose()


def test_base_url_excludes_edge_and_region() -> None:
    with pytest.raises(ValueError, match="edge/region"):
        TwilioSmsSender("AC1", "t", from_number=FROM_NUMBER, base_url="http://x", edge="sydney")


async def test_signed_status_callbacks(twilio_standin: TwilioStandin,
                                       twilio_sender: TwilioSmsSender) -> None:
    received: list[dict[str, str]] = []
    done = asyncio.Event()

    async def status(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        ok = RequestValidator(DEFAULT_AUTH_TOKEN).validate(
            str(request.url), form, request.headers["X-Twilio-Signature"])
        received.append({**form, "valid": str(ok)})
        if form["MessageStatus"] == "delivered":
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/twilio/status", status)
    runner, port = await start_site(app, "127.0.0.1", 0)
    try:
        await _control(twilio_standin, callbacks=True)
        result = await twilio_sender.send(SmsMessage(
            "n-9", TO, "hello", f"http://127.0.0.1:{port}/twilio/status"))
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await runner.cleanup()
    assert [r["MessageStatus"] for r in received] == ["sent", "delivered"]
    assert all(r["MessageSid"] == result.provider_id and r["valid"] == "True"
               for r in received)
