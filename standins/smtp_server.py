"""A stand-in SMTP server (aiosmtpd) that captures mail, counts duplicates, fails on request.

    SMTP on --smtp-port: accepts everything, answers "250 2.0.0 Ok: queued as <id>"
    HTTP on --http-port:
      GET  /_messages   captured messages (headers summary, in order)
      GET  /_stats      {"received", "accepted", "duplicates", "failed"}
      POST /_control    {"fail_next": N, "code": 451|550}
      POST /_reset

A duplicate is a second message with the same X-Parcelcast-Notification-Id (or, without
one, the same Message-ID). aiosmtpd's Controller runs the SMTP side on its own thread
and loop, so the shared state is guarded by a threading lock.
Run: python -m standins.smtp_server --smtp-port P --http-port Q [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from standins.common import free_port, start_site

NOTIFICATION_ID_HEADER = "X-Parcelcast-Notification-Id"
_FAIL_TEXT = {451: "451 4.3.0 Temporary local problem, try again later",
              550: "550 5.1.1 Mailbox unavailable"}


@dataclass
class SmtpState:
    """What the server captured and how it has been told to fail (thread-safe)."""

    out_dir: Path | None = None
    keep_raw: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[dict[str, Any]] = field(default_factory=list)
    raw: deque[bytes] = field(default_factory=deque)
    keys: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    failed: int = 0
    fail_next: int = 0
    fail_code: int = 451
    delay: float = 0.0  # hold each reply after capturing: a test can kill the sender meanwhile

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.raw.clear()
            self.keys.clear()
            self.duplicates = self.failed = self.fail_next = 0
            self.fail_code = 451
            self.delay = 0.0

    def control(self, fail_next: int, code: int = 451) -> None:
        if code not in _FAIL_TEXT:
            raise ValueError(f"code must be one of {sorted(_FAIL_TEXT)}")
        with self.lock:
            self.fail_next, self.fail_code = fail_next, code

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"received": len(self.messages) + self.failed,
                    "accepted": len(self.messages),
                    "duplicates": self.duplicates, "failed": self.failed}


class CapturingHandler:
    """aiosmtpd handler: records each message, or refuses it when told to."""

    def __init__(self, state: SmtpState) -> None:
        self.state = state
        self._parser = BytesHeaderParser()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        state = self.state
        with state.lock:
            if state.fail_next > 0:
                state.fail_next -= 1
                state.failed += 1
                return _FAIL_TEXT[state.fail_code]
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        headers = self._parser.parsebytes(content)
        notification_id = headers.get(NOTIFICATION_ID_HEADER)
        message_id = headers.get("Message-ID")
        queue_id = secrets.token_hex(6).upper()
        summary = {"queue_id": queue_id, "mail_from": envelope.mail_from,
                   "rcpt_tos": list(envelope.rcpt_tos), "message_id": message_id,
                   "notification_id": notification_id, "subject": headers.get("Subject"),
                   "list_unsubscribe": headers.get("List-Unsubscribe"),
                   "list_unsubscribe_post": headers.get("List-Unsubscribe-Post"),
                   "size": len(content)}
        key = f"id:{notification_id}" if notification_id else f"mid:{message_id}"
        with state.lock:
            if state.keys[key]:
                state.duplicates += 1
            state.keys[key] += 1
            state.messages.append(summary)
            state.raw.append(content)
            while len(state.raw) > state.keep_raw:
                state.raw.popleft()
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.out_dir is not None:
            # A run-unique name: duplicates are exactly what we want to be able to inspect.
            await asyncio.to_thread((state.out_dir / f"{queue_id}.eml").write_bytes, content)
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _drop_login_data_notice(record: logging.LogRecord) -> bool:
    # aiosmtpd 1.4 logs a deprecation notice from its own AUTH code on every login.
    return "login_data is deprecated" not in record.getMessage()


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username.encode(), password.encode()

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.username
              and auth_data.password == self.password)
        return AuthResult(success=ok, handled=False)


class SmtpStandin:
    """The SMTP stand-in on a loopback port (its own thread), plus an optional HTTP side."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, out_dir: Path | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        self.state = SmtpState(out_dir=out_dir)
        kwargs: dict[str, Any] = {}
        if username is not None and password is not None:
            # Loopback only: AUTH without TLS is what a local relay does.
            kwargs.update(authenticator=_Authenticator(username, password),
                          auth_require_tls=False)
            aiosmtpd_log = logging.getLogger("mail.log")
            if _drop_login_data_notice not in aiosmtpd_log.filters:
                aiosmtpd_log.addFilter(_drop_login_data_notice)
        self.controller = Controller(CapturingHandler(self.state), hostname=host,
                                     port=self.port, ready_timeout=10, **kwargs)
        self._http: web.AppRunner | None = None
        self.http_port: int | None = None

    def start(self) -> SmtpStandin:
        """Start the SMTP thread; returns once it accepts connections."""
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop the SMTP thread."""
        self.controller.stop()

    async def start_http(self, port: int = 0) -> int:
        """Serve the control/inspection endpoints; returns the bound port."""
        self._http, self.http_port = await start_site(create_control_app(self.state),
                                                      self.host, port)
        return self.http_port

    async def stop_http(self) -> None:
        if self._http is not None:
            await self._http.cleanup()
            self._http = None


STATE = web.AppKey("smtp_state", SmtpState)


async def _messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    with state.lock:
        return web.json_response(list(state.messages))


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


async def _control(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        request.app[STATE].control(int(body.get("fail_next", 0)), int(body.get("code", 451)))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"ok": True})


def create_control_app(state: SmtpState) -> web.Application:
    """The HTTP inspection/control app over a stand-in's state."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/_messages", _messages)
    app.router.add_get("/_stats", _stats)
    app.router.add_post("/_control", _control)
    app.router.add_post("/_reset", _reset)
    return app


async def _serve(args: argparse.Namespace) -> None:
    standin = SmtpStandin(args.host, args.smtp_port,
                          out_dir=Path(args.out_dir) if args.out_dir else None,
                          username=args.username, password=args.password)
    standin.start()
    try:
        await standin.start_http(args.http_port)
        print(f"smtp stand-in on {args.host}:{standin.port}, "
              f"control on http://{args.host}:{standin.http_port}", flush=True)
        await asyncio.Event().wait()
    finally:
        await standin.stop_http()
        standin.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--http-port", type=int, default=8026)
    parser.add_argument("--out-dir")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
