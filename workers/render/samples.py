"""Sample render contexts: realistic ones for previews and benchmarks, worst cases for tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

# A fixed instant so previews and tests are reproducible; nothing here reads the clock.
SAMPLE_NOW = datetime(2026, 3, 3, 15, 30, tzinfo=UTC)


def sample_context(moment: str, *, now: datetime = SAMPLE_NOW, order_id: str = "#1042",
                   timezone: str = "America/Los_Angeles") -> dict[str, Any]:
    """A realistic context for `moment`: what a mid-sized shop would really send."""
    ctx: dict[str, Any] = {
        "customer_name": "Maria",
        "order_id": order_id,
        "shop_name": "Northwind Coffee",
        "carrier_name": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "timezone": timezone,
        "eta_earliest": now + timedelta(days=1),
        "eta_latest": now + timedelta(days=3),
        "promised_date": date(2026, 3, 5),
        "occurred_at": now - timedelta(hours=2),
        "event_location": "Oakland, CA",
        "tracking_url": "https://track.northwind.example/t/8fK2mQ9x",
        "unsubscribe_url": "https://track.northwind.example/u/8fK2mQ9x?c=email",
        "items": [{"name": "Ethiopia Yirgacheffe, 1 kg", "quantity": 2},
                  {"name": "Ceramic pour-over dripper", "quantity": 1}],
    }
    return _for_moment(moment, ctx, now)


def worst_case_context(moment: str, *, unicode_name: bool = False,
                       now: datetime = SAMPLE_NOW) -> dict[str, Any]:
    """Long-but-real values everywhere an SMS has a variable; `unicode_name` forces UCS-2."""
    ctx = sample_context(moment, now=now, timezone="Europe/Berlin")
    ctx.update({
        "customer_name": ("Zoë-Łucja 🎉 Wolfeschlegelsteinhausen" if unicode_name
                          else "Maximiliana Wolfeschlegelsteinhausen"),
        "order_id": "#SO-20260915-004213",
        "shop_name": "Hinterland Outdoor Supply Co.",
        "carrier_name": "DHL Paket International",
        "tracking_number": "00340434161094042557",
        "event_location": "Frankfurt am Main Paketzentrum",
        "tracking_url": "https://pcst.io/t/8fK2mQ9x",
        # Two days that cross a month boundary make the longest interval format.
        "eta_earliest": datetime(2026, 9, 29, 10, tzinfo=UTC),
        "eta_latest": datetime(2026, 10, 2, 16, tzinfo=UTC),
        "pickup_until": date(2026, 9, 30),
        "occurred_at": datetime(2026, 9, 28, 17, 45, tzinfo=UTC),
    })
    return _for_moment(moment, ctx, now)


def _for_moment(moment: str, ctx: dict[str, Any], now: datetime) -> dict[str, Any]:
    if moment in ("predicted_delay", "eta_revised", "missed_promise"):
        ctx["previous_eta_earliest"] = ctx["eta_earliest"] - timedelta(days=3)
        ctx["previous_eta_latest"] = ctx["eta_latest"] - timedelta(days=3)
    if moment == "available_for_pickup":
        ctx.setdefault("pickup_until", (now + timedelta(days=7)).date())
        ctx["event_location"] = ctx["event_location"] or "UPS Access Point, 5th St"
    if moment == "exception":
        ctx["status_detail"] = "Address incomplete - apartment number missing"
    return ctx
