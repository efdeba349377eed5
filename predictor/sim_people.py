"""Simulated customers and orders (names, contacts, locales) for the shipment simulator."""

from __future__ import annotations

import numpy as np
import pandas as pd

FIRST_NAMES = ("Ana", "Ben", "Carla", "David", "Emma", "Felipe", "Grace", "Hiro", "Ines",
               "Jonas", "Kira", "Luis", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa",
               "Sam", "Tara", "Uwe", "Vera", "Will", "Ximena", "Yusuf", "Zoe")
LAST_NAMES = ("Alvarez", "Brown", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes",
              "Ito", "Jones", "Kim", "Lopez", "Meyer", "Nguyen", "Ortiz", "Patel", "Quinn",
              "Rossi", "Silva", "Taylor", "Urban", "Vogel", "Walker", "Young", "Zimmer")
LOCALES = ("en", "es", "pt-BR", "de")
LOCALE_SHARE = (0.70, 0.15, 0.10, 0.05)
# Real, in-service US area codes; exchanges are drawn so that libphonenumber accepts the
# number (no N11 exchanges and no fictional 555).
AREA_CODES = ("212", "415", "312", "617", "713", "206", "305", "404", "503", "702", "303",
              "215", "602", "214", "619", "718", "773", "512", "615", "919")
PRODUCTS = (("TSHIRT-BLK-M", "T-shirt, black, M"), ("MUG-CLASSIC", "Classic mug"),
            ("SOCKS-3PK", "Socks, 3-pack"), ("CAP-NAVY", "Cap, navy"),
            ("BOTTLE-750", "Water bottle 750 ml"), ("TOTE-CANVAS", "Canvas tote bag"))


def build_orders(rng: np.random.Generator, order_ids: pd.Series, placed_at: pd.Series,
                 timezones: np.ndarray) -> pd.DataFrame:
    """One order per shipment with a plausible customer; deterministic given ``rng``."""
    n = len(order_ids)
    first = np.array(FIRST_NAMES)[rng.integers(0, len(FIRST_NAMES), n)]
    last = np.array(LAST_NAMES)[rng.integers(0, len(LAST_NAMES), n)]
    area = np.array(AREA_CODES)[rng.integers(0, len(AREA_CODES), n)]
    exchange = rng.integers(200, 1000, n)
    bad = (exchange % 100 == 11) | (exchange == 555)
    exchange[bad] += 1  # x11 → x12, 555 → 556: both ordinary exchanges
    line = rng.integers(0, 10000, n)
    locale = np.array(LOCALES)[rng.choice(len(LOCALES), n, p=LOCALE_SHARE)]
    names = [f"{f} {ln}" for f, ln in zip(first, last, strict=True)]
    emails = [f"{f.lower()}.{ln.lower()}{i}@example.com"
              for i, (f, ln) in enumerate(zip(first, last, strict=True))]
    phones = [f"+1{a}{e:03d}{x:04d}" for a, e, x in zip(area, exchange, line, strict=True)]
    return pd.DataFrame({
        "order_id": order_ids.to_numpy(), "placed_at": placed_at,
        "customer_name": names, "customer_email": emails, "customer_phone": phones,
        "locale": pd.Categorical(locale, categories=LOCALES),
        "timezone": pd.Categorical(timezones),
    })


def order_items(order_index: int) -> list[dict[str, object]]:
    """1–3 line items for an order, derived from its position (stable, no RNG state)."""
    count = 1 + order_index % 3
    items: list[dict[str, object]] = []
    for k in range(count):
        sku, name = PRODUCTS[(order_index * 7 + k * 3) % len(PRODUCTS)]
        items.append({"sku": sku, "name": name, "quantity": 1 + (order_index + k) % 2})
    return items
