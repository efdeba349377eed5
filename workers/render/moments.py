"""The moments Parcelcast tells a customer about, and the locales it ships templates for."""

from __future__ import annotations

from typing import Final, Literal

Channel = Literal["email", "sms"]

MOMENTS: Final[tuple[str, ...]] = (
    "shipped",               # first carrier scan
    "out_for_delivery",
    "delivered",
    "delivery_attempted",
    "available_for_pickup",
    "exception",
    "returned_to_sender",
    "predicted_delay",       # our model says it will be late, before the carrier does
    "eta_revised",
    "stalled",               # no scan for longer than the lane normally allows
    "missed_promise",        # the promised date passed without delivery
)

SHIPPED_LOCALES: Final[tuple[str, ...]] = ("en", "es", "de", "pt-BR")
CHANNELS: Final[tuple[Channel, ...]] = ("email", "sms")
