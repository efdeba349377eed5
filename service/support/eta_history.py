"""Why each ETA revision happened: the scans that arrived since the one before, a change
from the shop, a new model, or a re-check as time passed.

Derived from what is stored (each event's `received_at`, each ETA's `predicted_at`): a
refresh reads everything that arrived before it, so the events received between two
predictions are what the second one learnt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.store.etas import EtaRecord
from service.store.shipments import TimelineEvent


@dataclass(frozen=True)
class Cause:
    kind: str  # first | scan | shipment_update | model | recheck
    text: str
    event: TimelineEvent | None = None  # the newest scan that arrived in between
    events: int = 0  # how many arrived in between


def _scan(event: TimelineEvent) -> str:
    text = event.status.replace("_", " ")
    if event.description:
        text += f" ({event.description})"
    return text


def causes(history: list[EtaRecord], timeline: list[TimelineEvent],
           shipment_updated_at: datetime) -> list[Cause]:
    """One cause per ETA of `history` (oldest first)."""
    out = []
    previous: EtaRecord | None = None
    for eta in history:
        since = previous.predicted_at if previous is not None else None
        arrived = sorted((e for e in timeline if e.received_at <= eta.predicted_at
                          and (since is None or e.received_at > since)),
                         key=lambda e: (e.received_at, e.occurred_at, e.id))
        newest = arrived[-1] if arrived else None
        if previous is None:
            text = "First estimate" + (f", after {len(arrived)} scan(s), the latest "
                                       f"{_scan(newest)}" if newest else " (from the label)")
            out.append(Cause("first", text, newest, len(arrived)))
        elif newest is not None:
            more = f" and {len(arrived) - 1} more" if len(arrived) > 1 else ""
            out.append(Cause("scan", f"New scan: {_scan(newest)}{more}", newest, len(arrived)))
        elif since is not None and since < shipment_updated_at <= eta.predicted_at:
            out.append(Cause("shipment_update", "The shop updated the shipment"))
        elif eta.model_version != previous.model_version:
            out.append(Cause("model", f"A new model ({eta.model_version}) was promoted"))
        else:
            out.append(Cause("recheck", "Re-checked as time passed, no new scan"))
        previous = eta
    return out
