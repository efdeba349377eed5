"""The shipment status taxonomy, the carriers we know, and their raw codes."""

from __future__ import annotations

from typing import Final

from service.tracking.carrier_codes import RAW_CODES, lookup  # noqa: F401  (RAW_CODES lives there now)

STATUSES: Final = (
    "label_created",
    "in_transit",
    "out_for_delivery",
    "delivery_attempted",
    "available_for_pickup",
    "delivered",
    "exception",
    "returned_to_sender",
    "cancelled",
    "unknown",
)

# A shipment's status is the event with the highest (rank, occurred_at).
# Terminal states outrank everything, so a late or clock-skewed "in transit"
# never un-delivers a parcel; "unknown" never changes a status at all.
TERMINAL: Final = frozenset({"delivered", "returned_to_sender", "cancelled"})
# Statuses that are not a carrier handling the parcel: a shipment's first scan (its
# handover) is its first event with any other status.
NOT_CARRIER_SCANS: Final = frozenset({"label_created", "unknown", "cancelled"})


def sql_list(statuses: frozenset[str]) -> str:
    """A status set as an SQL literal list, e.g. `('cancelled', 'delivered')`: the one home of
    a rule stays in Python and SQL statements render it from there."""
    return "(" + ", ".join(f"'{s}'" for s in sorted(statuses)) + ")"


def status_rank(status: str) -> int:
    if status == "unknown":
        return 0
    return 2 if status in TERMINAL else 1


CARRIERS: Final[dict[str, str]] = {
    "ups": "UPS",
    "usps": "USPS",
    "fedex": "FedEx",
    "dhl": "DHL Express",
    "dhl_ecommerce": "DHL eCommerce",
    "ontrac": "OnTrac",
    "lasership": "LaserShip",
    "amazon": "Amazon Logistics",
    "canada_post": "Canada Post",
    "royal_mail": "Royal Mail",
    "dpd": "DPD",
    "gls": "GLS",
    "postnl": "PostNL",
    "correios": "Correios",
    "australia_post": "Australia Post",
}

SERVICE_LEVELS: Final = ("economy", "ground", "express", "overnight")


def normalize_status(carrier: str, status: str) -> tuple[str, str | None]:
    """Our status for a taxonomy value or a carrier's raw code, and the raw code if one was given."""
    if status in STATUSES:
        return status, None
    mapped = lookup(carrier, status)
    return (mapped or "unknown"), status
