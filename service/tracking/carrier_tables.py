"""Carrier and aggregator status codes as reviewable data: one CSV per carrier in carriers/.

Each row says what one raw code means, which of our statuses it maps to, a finer substatus, the
carrier's own meaning category and where the code is documented. The rules a row must follow
(SUBSTATUSES per status, CATEGORY_STATUSES per category) are checked on load, so a bad edit to a
table fails at import time with the file and line, not at the first scan that uses it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

# The substatuses each status may carry (an empty substatus is always allowed); the keys are
# exactly service.taxonomy.STATUSES (a test holds them together).
SUBSTATUSES: Final[dict[str, frozenset[str]]] = {
    "label_created": frozenset({"info_received", "pickup_scheduled", "awaiting_dropoff"}),
    "in_transit": frozenset({"picked_up", "arrived_at_facility", "departed_facility", "in_customs",
                             "customs_cleared", "handed_to_partner", "rerouted", "delivery_rescheduled",
                             "returning"}),
    "out_for_delivery": frozenset(),
    "delivery_attempted": frozenset({"no_one_home", "business_closed", "no_access", "signature_required",
                                     "payment_required"}),
    "available_for_pickup": frozenset({"access_point", "post_office", "locker", "carrier_facility"}),
    "delivered": frozenset({"signature_obtained", "left_at_door", "in_mailbox", "with_neighbour",
                            "parcel_locker", "picked_up_by_customer", "to_agent", "damaged"}),
    "exception": frozenset({"address_issue", "damaged", "customs", "weather", "refused", "lost", "held",
                            "delayed", "missort", "payment_required", "returning", "no_updates",
                            "undeliverable", "disposed"}),
    "returned_to_sender": frozenset(),
    "cancelled": frozenset(),
    "unknown": frozenset(),
}

# What the carrier's meaning allows us to say. Terminal statuses only where the meaning is final;
# a return that is still under way is in_transit/exception with substatus "returning".
CATEGORY_STATUSES: Final[dict[str, frozenset[str]]] = {
    "pre_transit": frozenset({"label_created", "exception"}),
    "pickup": frozenset({"in_transit", "label_created", "exception"}),
    "transit": frozenset({"in_transit"}),
    "out_for_delivery": frozenset({"out_for_delivery"}),
    "attempt": frozenset({"delivery_attempted"}),
    "ready_for_pickup": frozenset({"available_for_pickup"}),
    "delivered": frozenset({"delivered"}),
    "exception": frozenset({"exception"}),
    "return": frozenset({"in_transit", "exception", "returned_to_sender"}),
    "cancelled": frozenset({"cancelled"}),
    "informational": frozenset({"in_transit", "unknown"}),
}

COLUMNS: Final = ("code", "status", "substatus", "category", "meaning", "source")
CARRIER_COLUMNS: Final = ("slug", "name", "country", "aliases")
CARRIERS_FILE: Final = "carriers.csv"
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True, slots=True)
class CodeRow:
    """What one raw code means and maps to."""

    status: str
    substatus: str
    category: str
    meaning: str
    source: str


@dataclass(frozen=True, slots=True)
class Carrier:
    """One of our carriers and the names senders use for it."""

    slug: str
    name: str
    country: str
    aliases: tuple[str, ...]


def check_row(row: CodeRow) -> str | None:
    """Why a row breaks the rules, or None when it is valid."""
    if row.status not in SUBSTATUSES:
        return f"unknown status {row.status!r}"
    if row.category not in CATEGORY_STATUSES:
        return f"unknown category {row.category!r}"
    if row.substatus and row.substatus not in SUBSTATUSES[row.status]:
        return f"substatus {row.substatus!r} not allowed for status {row.status!r}"
    if row.status not in CATEGORY_STATUSES[row.category]:
        return f"status {row.status!r} not allowed for category {row.category!r}"
    if row.category == "return" and row.status != "returned_to_sender" and row.substatus != "returning":
        return "a return still under way needs substatus 'returning'"
    if not row.meaning or not row.source:
        return "meaning and source are required"
    return None


def _rows(filename: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    text = resources.files(__package__).joinpath("carriers", filename).read_text(encoding="utf-8")
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != columns:
        raise ValueError(f"{filename}: header must be {','.join(columns)}")
    return [(reader.line_num, {k: (v or "").strip() for k, v in line.items()}) for line in reader]


def _table_names() -> list[str]:
    folder = resources.files(__package__).joinpath("carriers")
    return sorted(p.name[:-4] for p in folder.iterdir()
                  if p.name.endswith(".csv") and p.name != CARRIERS_FILE)


@cache
def load_codes() -> dict[str, dict[str, CodeRow]]:
    """Carrier (or aggregator) slug -> raw code -> row, for every table in carriers/."""
    tables: dict[str, dict[str, CodeRow]] = {}
    for name in _table_names():
        codes: dict[str, CodeRow] = {}
        for line, raw in _rows(f"{name}.csv", COLUMNS):
            row = CodeRow(raw["status"], raw["substatus"], raw["category"], raw["meaning"], raw["source"])
            problem = check_row(row) or ("empty code" if not raw["code"] else None)
            if problem is None and raw["code"] in codes:
                problem = f"duplicate code {raw['code']!r}"
            if problem:
                raise ValueError(f"{name}.csv line {line}: {problem}")
            codes[raw["code"]] = row
        tables[name] = codes
    return tables


def lookup(carrier: str, code: str) -> CodeRow | None:
    """The row for a carrier's raw code (exact, then upper-, then lower-case), or None."""
    codes = load_codes().get(carrier)
    if not codes:
        return None
    return codes.get(code) or codes.get(code.upper()) or codes.get(code.lower())


def normalize_name(name: str) -> str:
    """A courier name or slug as compared: lower case, only a-z and 0-9."""
    return _NOT_ALNUM.sub("", name.lower())


@cache
def load_carriers() -> dict[str, Carrier]:
    """Our carrier slug -> Carrier, from carriers/carriers.csv."""
    carriers: dict[str, Carrier] = {}
    for line, raw in _rows(CARRIERS_FILE, CARRIER_COLUMNS):
        if not raw["slug"] or raw["slug"] in carriers:
            raise ValueError(f"{CARRIERS_FILE} line {line}: missing or duplicate slug {raw['slug']!r}")
        aliases = tuple(a.strip() for a in raw["aliases"].split("|") if a.strip())
        carriers[raw["slug"]] = Carrier(raw["slug"], raw["name"], raw["country"], aliases)
    return carriers


@cache
def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for carrier in load_carriers().values():
        for alias in (carrier.slug, carrier.name, *carrier.aliases):
            key = normalize_name(alias)
            if index.setdefault(key, carrier.slug) != carrier.slug:
                clash = f"alias {alias!r} names both {index[key]} and {carrier.slug}"
                raise ValueError(f"{CARRIERS_FILE}: {clash}")
    return index


def carrier_slug(name: str | None) -> str | None:
    """Our carrier slug for a courier name or slug a sender uses, or None when unknown."""
    if not name:
        return None
    return _alias_index().get(normalize_name(name))


def coverage() -> dict[str, tuple[int, int]]:
    """Per table: (codes that map to a real status, all codes)."""
    return {name: (sum(r.status != "unknown" for r in codes.values()), len(codes))
            for name, codes in load_codes().items()}


def main() -> None:
    """Print the coverage table (`python -m service.tracking.carrier_tables`)."""
    print(f"{'table':<16}{'mapped':>8}{'total':>8}{'share':>9}")
    for name, (mapped, total) in coverage().items():
        share = f"{mapped / total:.1%}" if total else "-"
        print(f"{name:<16}{mapped:>8}{total:>8}{share:>9}")


if __name__ == "__main__":
    main()
