"""The shipment status taxonomy, the carriers we know, and their raw codes."""

from __future__ import annotations

from typing import Final

from service.tracking.carrier_codes import Mapped, from_status
from service.tracking.carrier_tables import load_carriers

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


# Our known carriers (slug -> name), from carriers/carriers.csv. A carrier we do not list is
# kept as `other:<slug>` (service.tracking.carrier_codes.normalize_carrier).
CARRIERS: Final[dict[str, str]] = {slug: c.name for slug, c in load_carriers().items()}

SERVICE_LEVELS: Final = ("economy", "ground", "express", "overnight")


def normalize_status(carrier: str, status: str, raw_code: str | None = None) -> Mapped:
    """Our status, substatus and the raw code kept, for a taxonomy value or a carrier's raw
    code (service.tracking.carrier_codes is the one home of the mapping)."""
    return from_status(carrier, status, raw_code, STATUSES)
