"""Importing a shop's past orders from CSV (with the Olist dataset as a named preset).

Rows are validated one by one; a bad row is reported with its CSV line number and
skipped, and every good row is kept. Naive timestamps are read as local time in the
shop's timezone and converted to UTC. The output has the same shipments/events shape
as :mod:`predictor.simulator`, so training and evaluation code does not care where the
history came from. There is no carrier or address in Olist: those fields stay empty and
the features treat them as unknown.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

OLIST_PATH = Path("/work/shared/data/olist/olist_orders_2016_2017.csv")
OLIST_CUTOFF = datetime(2017, 10, 1, tzinfo=ZoneInfo("America/Sao_Paulo"))
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")
_TIME_FIELDS = ("placed_at", "label_created_at", "shipped_at", "delivered_at")


@dataclass(frozen=True)
class CsvPreset:
    """How to read one CSV layout: target field → source column(s), timezone, constants.

    A mapping value may list several columns: the first non-empty one wins (Olist's
    approval time stands in for label creation, else the purchase time).
    """

    mapping: Mapping[str, str | Sequence[str]]
    tz: str
    defaults: Mapping[str, Any] = field(default_factory=dict)


OLIST = CsvPreset(
    mapping={
        "shipment_id": "order_id", "order_id": "order_id", "tracking_number": "order_id",
        "status": "order_status", "placed_at": "order_purchase_timestamp",
        "label_created_at": ("order_approved_at", "order_purchase_timestamp"),
        "shipped_at": "order_delivered_carrier_date",
        "delivered_at": "order_delivered_customer_date",
        "promised_delivery_date": "order_estimated_delivery_date",
    },
    tz="America/Sao_Paulo",
    defaults={"carrier": None, "service_level": None, "origin_country": "BR",
              "destination_country": "BR", "origin_postal_code": None,
              "destination_postal_code": None, "weight_grams": None},
)


@dataclass(frozen=True)
class RowError:
    """A rejected CSV row: its 1-based line number in the file and why."""

    line: int
    reason: str


def load_csv(path: str | Path, mapping: Mapping[str, str | Sequence[str]], tz: str, *,
             defaults: Mapping[str, Any] | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[RowError]]:
    """Read a history CSV into (shipments, events, errors); see the module docstring."""
    zone = ZoneInfo(tz)
    records: list[dict[str, Any]] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for cols in mapping.values() for c in _as_list(cols)
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"CSV is missing columns: {sorted(set(missing))}")
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                break
            line = reader.line_num
            try:
                record = _parse_row(raw, mapping, zone)
            except ValueError as exc:
                errors.append(RowError(line, str(exc)))
                continue
            if record["shipment_id"] in seen:
                errors.append(RowError(line, f"duplicate shipment id {record['shipment_id']}"))
                continue
            seen.add(record["shipment_id"])
            records.append({**(defaults or {}), **record})
    shipments = _shipments_frame(records)
    return shipments, events_from_shipments(shipments), errors


def load_olist(path: str | Path = OLIST_PATH
               ) -> tuple[pd.DataFrame, pd.DataFrame, list[RowError]]:
    """The Olist orders CSV through the :data:`OLIST` preset."""
    return load_csv(path, OLIST.mapping, OLIST.tz, defaults=OLIST.defaults)


def events_from_shipments(shipments: pd.DataFrame) -> pd.DataFrame:
    """The scans implied by an order history: label, carrier handover, delivery."""
    parts = []
    for status, col, text in (("label_created", "label_created_at", "Order approved"),
                              ("in_transit", "shipped_at", "Handed to carrier"),
                              ("delivered", "delivered_at", "Delivered")):
        have = shipments[shipments[col].notna()]
        parts.append(pd.DataFrame({
            "carrier": have["carrier"].to_numpy(),
            "tracking_number": have["tracking_number"].to_numpy(),
            "event_id": have["tracking_number"].astype(str).to_numpy() + f"-{status}",
            "status": status, "occurred_at": have[col].to_numpy(), "description": text,
            "location_city": None, "location_region": None, "location_postal_code": None,
            "location_country": have["destination_country"].to_numpy(),
        }))
    events = pd.concat(parts, ignore_index=True)
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True)
    return events.sort_values(["tracking_number", "occurred_at"], kind="stable",
                              ignore_index=True)


def _parse_row(raw: Mapping[str, str | None], mapping: Mapping[str, str | Sequence[str]],
               zone: ZoneInfo) -> dict[str, Any]:
    def value(target: str) -> str:
        for column in _as_list(mapping.get(target, ())):
            text = (raw.get(column) or "").strip()
            if text:
                return text
        return ""

    record: dict[str, Any] = {}
    for target in mapping:
        record[target] = value(target) or None
    if not record.get("shipment_id"):
        raise ValueError("missing shipment id")
    for target in _TIME_FIELDS:
        if record.get(target):
            record[target] = _parse_time(record[target], zone, target)
    if record.get("placed_at") is None and record.get("label_created_at") is None:
        raise ValueError("missing order time")
    promised = record.get("promised_delivery_date")
    if promised:
        record["promised_delivery_date"] = _parse_time(promised, zone, "promised").date()
    shipped, delivered = record.get("shipped_at"), record.get("delivered_at")
    start = record.get("label_created_at") or record.get("placed_at")
    if delivered is not None and shipped is not None and delivered < shipped:
        raise ValueError("delivered before it was handed to the carrier")
    if delivered is not None and start is not None and delivered < start:
        raise ValueError("delivered before the order was placed")
    if shipped is not None and record.get("placed_at") and shipped < record["placed_at"]:
        raise ValueError("handed to the carrier before the order was placed")
    return record


def _parse_time(text: str, zone: ZoneInfo, name: str) -> datetime:
    for fmt in _TIME_FORMATS:
        try:
            local = datetime.strptime(text, fmt)  # noqa: DTZ007 - zone attached below
        except ValueError:
            continue
        # fold=0: an ambiguous wall-clock time (DST fall-back) takes the first reading.
        return local.replace(tzinfo=zone).astimezone(ZoneInfo("UTC"))
    raise ValueError(f"{name}: cannot parse time {text!r}")


def _shipments_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["shipment_id", "order_id", "carrier", "service_level", "tracking_number",
               "origin_postal_code", "origin_country", "destination_postal_code",
               "destination_country", "weight_grams", "promised_delivery_date",
               "label_created_at", "shipped_at", "delivered_at", "placed_at", "status"]
    frame = pd.DataFrame.from_records(records).reindex(columns=columns)
    for col in _TIME_FIELDS:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["label_created_at"] = frame["label_created_at"].fillna(frame["placed_at"])
    frame["promised_delivery_date"] = frame["promised_delivery_date"].map(
        lambda d: d if isinstance(d, date) else None)
    return frame


def _as_list(columns: str | Sequence[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)
