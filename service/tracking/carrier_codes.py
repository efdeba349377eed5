"""What carriers and tracking aggregators call statuses and themselves, mapped to our taxonomy.

Pure tables and two lookups; no imports from the rest of the service, so taxonomy.py can
use it without a cycle. Every value is a taxonomy status (tests check that). Anything not
here maps to "unknown" and is kept raw by the caller, so a missing entry loses nothing:
it only shows up in `parcelcast_unknown_status_events_total{carrier}` until it is added.
"""

from __future__ import annotations

import re
from typing import Final

# Carrier raw codes: the status/event codes each carrier's own tracking API returns.
RAW_CODES: Final[dict[str, dict[str, str]]] = {
    # UPS Tracking API activity status types, and common activity codes.
    "ups": {
        "M": "label_created", "MV": "cancelled", "P": "in_transit", "I": "in_transit",
        "O": "out_for_delivery", "D": "delivered", "X": "exception", "RS": "returned_to_sender",
        "DO": "in_transit", "DD": "delivery_attempted", "W": "available_for_pickup",
        "NA": "unknown", "OR": "in_transit", "AR": "in_transit", "DP": "in_transit",
        "OT": "out_for_delivery", "KB": "available_for_pickup", "FS": "delivered",
        "ZP": "delivered", "RD": "exception", "UR": "exception",
    },
    # USPS Tracking event codes.
    "usps": {
        "GX": "label_created", "MA": "label_created", "OA": "in_transit", "10": "in_transit",
        "03": "in_transit", "07": "in_transit", "OF": "out_for_delivery",
        "01": "delivered", "02": "delivery_attempted", "04": "exception", "05": "exception",
        "09": "returned_to_sender", "21": "exception", "53": "available_for_pickup",
        "06": "in_transit", "08": "exception", "11": "exception", "14": "in_transit",
        "16": "available_for_pickup", "17": "delivered", "22": "exception", "23": "exception",
        "24": "exception", "25": "exception", "26": "exception", "27": "exception",
        "28": "exception", "29": "returned_to_sender", "30": "exception", "31": "returned_to_sender",
        "43": "in_transit", "44": "cancelled", "51": "exception", "52": "delivery_attempted",
        "55": "delivery_attempted", "56": "delivery_attempted", "57": "exception",
        "59": "out_for_delivery", "80": "in_transit", "81": "in_transit", "82": "in_transit",
        "A1": "in_transit", "L1": "in_transit", "T1": "in_transit", "U1": "in_transit",
        "SF": "in_transit", "PC": "in_transit", "RB": "available_for_pickup",
    },
    # FedEx Track API scan event codes.
    "fedex": {
        "OC": "label_created", "PU": "in_transit", "IT": "in_transit", "AR": "in_transit",
        "DP": "in_transit", "OD": "out_for_delivery", "DL": "delivered", "DE": "exception",
        "SE": "exception", "CA": "cancelled", "RS": "returned_to_sender",
        "HL": "available_for_pickup", "DY": "exception", "IN": "label_created",
        "PX": "in_transit", "AA": "in_transit", "AC": "in_transit", "AF": "in_transit",
        "AP": "in_transit", "AX": "in_transit", "CC": "in_transit", "CP": "in_transit",
        "CD": "exception", "CH": "in_transit", "EA": "in_transit", "ED": "out_for_delivery",
        "EO": "in_transit", "FD": "in_transit", "LO": "in_transit", "OF": "in_transit",
        "OX": "in_transit", "PD": "exception", "PF": "in_transit", "PL": "in_transit",
        "SF": "in_transit", "TR": "in_transit", "DD": "exception", "HP": "available_for_pickup",
        "RC": "exception", "DR": "in_transit",
    },
    # DHL Shipment Tracking (unified) statusCode values and DHL Express checkpoint codes.
    "dhl": {
        "pre-transit": "label_created", "transit": "in_transit", "delivered": "delivered",
        "failure": "exception", "PU": "in_transit", "WC": "out_for_delivery", "OK": "delivered",
        "NH": "delivery_attempted", "RT": "returned_to_sender", "SA": "label_created",
        "PL": "in_transit", "DF": "in_transit", "AF": "in_transit", "AR": "in_transit",
        "CR": "in_transit", "IC": "in_transit", "SM": "in_transit", "TP": "in_transit",
        "CA": "delivery_attempted", "CC": "available_for_pickup", "OH": "exception",
        "MS": "exception", "BA": "exception", "CD": "exception", "RD": "exception",
        "HP": "exception", "TD": "exception", "DD": "delivered",
    },
}
# DHL eCommerce speaks the unified DHL status codes too.
RAW_CODES["dhl_ecommerce"] = {k: v for k, v in RAW_CODES["dhl"].items() if k.islower()}

# Tracking aggregators and platforms: their own normalized vocabularies.
AFTERSHIP_TAGS: Final[dict[str, str]] = {
    "Pending": "label_created", "InfoReceived": "label_created", "InTransit": "in_transit",
    "OutForDelivery": "out_for_delivery", "AttemptFail": "delivery_attempted",
    "Delivered": "delivered", "AvailableForPickup": "available_for_pickup",
    "Exception": "exception", "Expired": "exception",
}
# Sub-statuses whose meaning is sharper than their tag's.
AFTERSHIP_SUBTAGS: Final[dict[str, str]] = {
    "Exception_011": "returned_to_sender",  # returned to sender
    "Exception_012": "cancelled",  # shipment cancelled
    "Delivered_003": "delivered",  # picked up by the customer at a pickup point
}
EASYPOST_STATUSES: Final[dict[str, str]] = {
    "pre_transit": "label_created", "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery", "delivered": "delivered",
    "available_for_pickup": "available_for_pickup", "return_to_sender": "returned_to_sender",
    "failure": "exception", "cancelled": "cancelled", "error": "exception",
}
EASYPOST_DETAILS: Final[dict[str, str]] = {
    "attempted_delivery": "delivery_attempted", "delivery_attempted": "delivery_attempted",
    "arrived_at_pickup_location": "available_for_pickup",
}
SHOPIFY_SHIPMENT_STATUSES: Final[dict[str, str]] = {
    "label_printed": "label_created", "label_purchased": "label_created",
    "confirmed": "label_created", "carrier_picked_up": "in_transit", "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery", "attempted_delivery": "delivery_attempted",
    "ready_for_pickup": "available_for_pickup", "picked_up": "delivered",
    "delivered": "delivered", "failure": "exception", "delayed": "exception",
}

# Courier names and slugs as Shopify (tracking_company), AfterShip (slug) and EasyPost
# (carrier) spell them, compared after lower-casing and dropping everything but a-z0-9.
COURIER_ALIASES: Final[dict[str, str]] = {
    "ups": "ups", "unitedparcelservice": "ups", "upsmailinnovations": "ups",
    "usps": "usps", "unitedstatespostalservice": "usps", "uspsreturns": "usps",
    "fedex": "fedex", "fedexground": "fedex", "fedexexpress": "fedex", "fedexsmartpost": "fedex",
    "dhl": "dhl", "dhlexpress": "dhl", "dhlexpressusa": "dhl",
    "dhlecommerce": "dhl_ecommerce", "dhlecs": "dhl_ecommerce", "dhlglobalmail": "dhl_ecommerce",
    "dhlecommerceus": "dhl_ecommerce", "dhlecommercesolutions": "dhl_ecommerce",
    "ontrac": "ontrac", "lasership": "lasership",
    "amazon": "amazon", "amazonlogistics": "amazon", "amazonshipping": "amazon",
    "amazonlogisticsus": "amazon", "amazonmws": "amazon",
    "canadapost": "canada_post", "royalmail": "royal_mail",
    "dpd": "dpd", "dpduk": "dpd", "dpdde": "dpd", "gls": "gls", "glsus": "gls", "postnl": "postnl",
    "correios": "correios", "brazilcorreios": "correios",
    "australiapost": "australia_post", "auspost": "australia_post",
}
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def lookup(carrier: str, code: str) -> str | None:
    """Our status for one carrier's raw code, or None when the code is not known."""
    codes = RAW_CODES.get(carrier)
    if not codes:
        return None
    return codes.get(code) or codes.get(code.upper()) or codes.get(code.lower())


def carrier_slug(name: str | None) -> str | None:
    """Our carrier slug for a courier name or slug a sender uses, or None when unknown."""
    if not name:
        return None
    return COURIER_ALIASES.get(_NOT_ALNUM.sub("", name.lower()))
