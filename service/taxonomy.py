"""The shipment status taxonomy, the carriers we know, and their raw codes."""

from __future__ import annotations

from typing import Final

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

# Common raw codes per carrier. Anything not here maps to "unknown" and is kept raw.
RAW_CODES: Final[dict[str, dict[str, str]]] = {
    "ups": {
        "M": "label_created", "MV": "cancelled", "P": "in_transit", "I": "in_transit",
        "O": "out_for_delivery", "D": "delivered", "X": "exception", "RS": "returned_to_sender",
        "DO": "in_transit", "DD": "delivery_attempted", "W": "available_for_pickup",
    },
    "usps": {
        "GX": "label_created", "MA": "label_created", "OA": "in_transit", "10": "in_transit",
        "03": "in_transit", "07": "in_transit", "OF": "out_for_delivery",
        "01": "delivered", "02": "delivery_attempted", "04": "exception", "05": "exception",
        "09": "returned_to_sender", "21": "exception", "53": "available_for_pickup",
    },
    "fedex": {
        "OC": "label_created", "PU": "in_transit", "IT": "in_transit", "AR": "in_transit",
        "DP": "in_transit", "OD": "out_for_delivery", "DL": "delivered", "DE": "exception",
        "SE": "exception", "CA": "cancelled", "RS": "returned_to_sender", "HL": "available_for_pickup",
        "DY": "exception",
    },
    "dhl": {
        "pre-transit": "label_created", "transit": "in_transit", "delivered": "delivered",
        "failure": "exception", "PU": "in_transit", "WC": "out_for_delivery", "OK": "delivered",
        "NH": "delivery_attempted", "RT": "returned_to_sender",
    },
}


def normalize_status(carrier: str, status: str) -> tuple[str, str | None]:
    """Our status for a taxonomy value or a carrier's raw code, and the raw code if one was given."""
    if status in STATUSES:
        return status, None
    mapped = RAW_CODES.get(carrier, {}).get(status) or RAW_CODES.get(carrier, {}).get(status.upper())
    return (mapped or "unknown"), status
