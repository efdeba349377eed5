"""The order lookup page's rules: what counts as a match, and how often one may try."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from redis.asyncio import Redis

from service.store.orders import Order
from service.store.shipments import Shipment


def order_numbers(typed: str) -> list[str]:
    """The order ids a customer may mean: as typed, and without a leading '#'."""
    value = typed.strip()
    return list(dict.fromkeys(v for v in (value, value.lstrip("#").strip()) if v))


def _postcode(value: str) -> str:
    return "".join(value.split()).replace("-", "").upper()


def same_postcode(typed: str, stored: str) -> bool:
    """Postcodes equal but for case, spaces and dashes; a ZIP matches its ZIP+4."""
    a, b = _postcode(typed), _postcode(stored)
    if not a or not b:
        return False
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return len(short) == 5 and len(long) == 9 and short.isdigit() and long.startswith(short)


def matches(order: Order, shipments: Sequence[Shipment], contact: str) -> bool:
    """The customer proved they know the order: its e-mail (any case) or a shipment's
    destination postcode."""
    contact = contact.strip()
    if "@" in contact:
        return bool(order.customer_email) and contact.lower() == str(
            order.customer_email).lower()
    return any(s.destination_postal_code and same_postcode(contact, s.destination_postal_code)
               for s in shipments)


async def allowed(redis: Redis, namespace: str, keys: Sequence[str], limit: int,
                  window_s: int, now: datetime) -> bool:
    """Count one attempt against each key (a client address, an order number) in the current
    window of business time; False once any has had `limit` attempts."""
    bucket = int(now.timestamp()) // window_s
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        name = f"{namespace}:lookup:{key}:{bucket}"
        pipe.incr(name)
        pipe.expire(name, window_s * 2)
    counts = await pipe.execute()
    return all(int(count) <= limit for count in counts[::2])
