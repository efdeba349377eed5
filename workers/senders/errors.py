"""What a send returns, and the two ways it can fail: try again later, or never."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider accepted the message; `provider_id` is its id for it (Twilio SID, queue id)."""

    provider_id: str


class SendError(Exception):
    """Base class for send failures."""


class TransientSendError(SendError):
    """Worth retrying: 5xx, 429, timeouts, refused or dropped connections.

    `retry_after` is the provider's own hint in seconds (a Retry-After header), if it gave one.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason if retry_after is None else f"{reason} (retry after {retry_after}s)")
        self.reason = reason
        self.retry_after = retry_after


class UncertainSendError(TransientSendError):
    """Worth retrying, but the request may have reached the provider (no answer in time, or
    the connection dropped after the request went out): ask the provider whether it has the
    message before sending it again, as after a worker died mid-send."""


# Twilio error codes the caller acts on (https://www.twilio.com/docs/api/errors).
TWILIO_INVALID_TO = 21211
TWILIO_UNSUBSCRIBED = 21610   # recipient replied STOP: record the opt-out, never retry
TWILIO_NOT_MOBILE = 21614


class PermanentSendError(SendError):
    """Retrying cannot help: invalid recipient, opted out, message refused (SMTP 5xx).

    `code` is the provider's code (a Twilio error code such as 21610, or an SMTP reply code).
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def is_opt_out(self) -> bool:
        """The recipient unsubscribed at the provider (Twilio 21610): stop this channel for them."""
        return self.code == TWILIO_UNSUBSCRIBED
