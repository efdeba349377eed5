"""The one normalizer: what carriers, aggregators and platforms call statuses and themselves,
mapped to our taxonomy from the data tables in carriers/ (service.tracking.carrier_tables).

No imports from the rest of the service, so taxonomy.py can use it without a cycle. A code
not in the tables maps to "unknown" (which never changes a shipment's status) and is kept
raw, so a missing row loses nothing: it is counted per carrier and code
(`parcelcast carriers unknown`) until a row is added and `parcelcast events remap` re-derives
what was stored.

Aggregator-level states (a tracker that errored, expired or has nothing yet) are not parcel
news: `tracker_state_*` say when a tracker is in one, and the adapters store it as the
tracker's state instead of an event.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final, NamedTuple

from service.tracking import carrier_tables
from service.tracking.carrier_tables import CodeRow

OTHER_PREFIX: Final = "other:"
# A shipment whose sender named no carrier at all.
NO_CARRIER: Final = "other:unknown"
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


class Mapped(NamedTuple):
    """Our status for a sender's code, its finer substatus ("" when none) and the raw code kept."""

    status: str
    substatus: str
    raw_code: str | None


def lookup(table: str, code: str | None) -> CodeRow | None:
    """The row for a code in a carrier's (or aggregator's) table, or None when not listed."""
    return carrier_tables.lookup(table, code) if code else None


def carrier_slug(name: str | None) -> str | None:
    """Our carrier slug for a courier name or slug a sender uses, or None when unknown."""
    return carrier_tables.carrier_slug(name)


@lru_cache(maxsize=4096)  # the hot path: every event names its carrier
def normalize_carrier(name: str | None) -> str:
    """Our slug for any carrier a sender names: a known one (aliases, case and punctuation do
    not matter: "U.P.S.", "Fedex Ground"), else `other:<slug>` of the text, else NO_CARRIER."""
    if name is None or not name.strip():
        return NO_CARRIER
    text = name.strip()
    if text.lower().startswith(OTHER_PREFIX):
        text = text[len(OTHER_PREFIX):]
    known = carrier_slug(text)
    if known is not None:
        return known
    slug = _SLUG_JUNK.sub("-", text.lower()).strip("-")[:32].strip("-")
    return f"{OTHER_PREFIX}{slug or 'unknown'}"


# Tracking number shapes that name their carrier unambiguously (checked after normalizing).
_NUMBER_SHAPES: Final = ((re.compile(r"^1Z[0-9A-Z]{16}$"), "ups"),
                         (re.compile(r"^9[1-5][0-9]{18,24}$"), "usps"))


def carrier_for(name: str | None, tracking_number: str | None) -> str:
    """normalize_carrier, except that a sender naming no carrier (null, "", "Other") gets the
    carrier its tracking number's shape names (UPS 1Z…, USPS 9[1-5]… of 20-26 digits), so its
    scans from a tracker that does name the carrier meet it."""
    slug = normalize_carrier(name)
    if slug in (NO_CARRIER, "other:other") and tracking_number:
        number = "".join(tracking_number.split()).replace("-", "").upper()
        for shape, carrier in _NUMBER_SHAPES:
            if shape.match(number):
                return carrier
    return slug


def is_other(carrier: str) -> bool:
    return carrier.startswith(OTHER_PREFIX)


def carrier_name(carrier: str) -> str:
    """How a carrier is shown: our name for a known one, the sender's words for another."""
    known = carrier_tables.load_carriers().get(carrier)
    if known is not None:
        return known.name
    if is_other(carrier):
        rest = carrier[len(OTHER_PREFIX):]
        return "Carrier" if rest == "unknown" else rest.replace("-", " ").title()
    return carrier


def _mapped(row: CodeRow | None, raw: str | None) -> Mapped | None:
    return Mapped(row.status, row.substatus, raw) if row is not None else None


def from_carrier(carrier: str, code: str) -> Mapped:
    """A carrier's own raw code (unknown when the carrier or the code is not listed)."""
    return _mapped(lookup(carrier, code), code) or Mapped("unknown", "", code)


def _sharpened(found: Mapped, carrier: str, code: str | None) -> Mapped:
    """`found` with the carrier's own code's substatus when that code means the same status."""
    if found.substatus:
        return found
    row = lookup(carrier, code)
    if row is not None and row.status == found.status and row.substatus:
        return found._replace(substatus=row.substatus)
    return found


def from_easypost(carrier: str, status: str | None, status_detail: str | None,
                  carrier_code: str | None) -> Mapped:
    """An EasyPost tracking detail: its status_detail when it is sharper than its status (and
    agrees), else its status, else the carrier's own code (whose substatus sharpens the
    others' when it agrees)."""
    return _sharpened(_from_easypost(carrier, status, status_detail, carrier_code), carrier,
                      carrier_code)


def _from_easypost(carrier: str, status: str | None, status_detail: str | None,
                   carrier_code: str | None) -> Mapped:
    given = "/".join(p for p in (status, status_detail) if p) or None
    top = lookup("easypost", status)
    detail = lookup("easypost", status_detail) if status_detail != "unknown" else None
    if detail is not None and detail.status != "unknown" and (
            top is None or top.status in ("unknown", detail.status)
            or detail.status in ("delivery_attempted", "available_for_pickup")):
        return Mapped(detail.status, detail.substatus, given)
    if top is not None and top.status != "unknown":
        return Mapped(top.status, top.substatus, given)
    # EasyPost said "unknown" (or something new): the carrier's raw code may still say.
    if carrier_code:
        return from_carrier(carrier, carrier_code)
    return Mapped("unknown", "", given or "unknown")


def from_aftership(carrier: str, tag: str | None, subtag: str | None,
                   raw_tag: str | None) -> Mapped:
    """An AfterShip checkpoint: the subtag (it names its tag), else the tag, else the raw tag."""
    for code in (subtag, tag):
        found = _mapped(lookup("aftership", code), code)
        if found is not None:
            return _sharpened(found, carrier, raw_tag)
    if raw_tag:
        return from_carrier(carrier, raw_tag)
    return Mapped("unknown", "", subtag or tag or "unknown")


def from_shopify(shipment_status: str) -> Mapped:
    """A Shopify fulfilment's shipment_status (or a fulfillment event's status)."""
    return _mapped(lookup("shopify", shipment_status.lower()), shipment_status) or Mapped(
        "unknown", "", shipment_status)


def from_status(carrier: str, status: str, raw_code: str | None, statuses: tuple[str, ...]
                ) -> Mapped:
    """The API's event: a taxonomy status (its substatus from the raw code, when the code
    agrees), or the carrier's raw code."""
    if status in statuses:
        row = lookup(carrier, raw_code)
        substatus = row.substatus if row is not None and row.status == status else ""
        return Mapped(status, substatus, raw_code)
    found = from_carrier(carrier, status)
    return found._replace(raw_code=raw_code or status)


# Aggregator states that say something about the tracker, not the parcel.
EASYPOST_TRACKER_STATES: Final = frozenset({"error", "failure", "unknown"})
AFTERSHIP_TRACKER_STATES: Final = frozenset({"Expired", "Pending", "InfoReceived"})
# EasyPost details that are EasyPost's own error, not a carrier scan.
EASYPOST_ERROR_DETAILS: Final = frozenset({"error"})
AFTERSHIP_ERROR_TAGS: Final = frozenset({"Expired"})


def remap(carrier: str, raw_code: str | None, payload: dict[str, Any] | None,
          statuses: tuple[str, ...]) -> Mapped | None:
    """A stored event's status from today's tables, or None when it cannot be re-derived
    (its stored status stands). `payload` is the stored payload (its `source` says which
    sender's words to read)."""
    payload = payload if isinstance(payload, dict) else {}
    source = payload.get("source")
    if source == "support":  # our own event (marked delivered by an agent)
        return None
    if source == "easypost" and isinstance(payload.get("detail"), dict):
        d = payload["detail"]
        return from_easypost(carrier, _s(d.get("status")), _s(d.get("status_detail")),
                             _s(d.get("carrier_code")))
    if source == "aftership" and isinstance(payload.get("checkpoint"), dict):
        c = payload["checkpoint"]
        return from_aftership(carrier, _s(c.get("tag")), _s(c.get("subtag")), _s(c.get("raw_tag")))
    if source == "shopify":
        if payload.get("status") == "cancelled" or not raw_code:
            return None
        return from_shopify(raw_code)
    status = payload.get("status")
    if isinstance(status, str) and status:
        given = payload.get("raw_code")
        return from_status(carrier, status, given if isinstance(given, str) else None, statuses)
    return None


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
