"""The template context is one typed class, and the templates use exactly what it carries."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from jinja2 import meta

from workers.render import MOMENTS, Renderer
from workers.render.context import RENDERER_KEYS, Item, MessageContext

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FIELDS = {f.name for f in dataclasses.fields(MessageContext)}


def _message_templates() -> list[Path]:
    return sorted(p for channel in ("email", "sms") for p in (TEMPLATES / channel).rglob("*.j2"))


def test_every_name_a_template_uses_is_in_the_context() -> None:
    renderer = Renderer()
    unknown = {}
    for path in _message_templates():
        source = path.read_text()
        names = meta.find_undeclared_variables(renderer.env.parse(source))
        extra = names - FIELDS - RENDERER_KEYS
        if extra:
            unknown[str(path.relative_to(TEMPLATES))] = sorted(extra)
    assert unknown == {}


def test_every_context_field_is_used_by_some_template() -> None:
    renderer = Renderer()
    used: set[str] = set()
    for path in _message_templates():
        used |= meta.find_undeclared_variables(renderer.env.parse(path.read_text()))
    assert FIELDS - used == {"timezone"}  # the renderer's date filters use that one


def _full() -> MessageContext:
    return MessageContext(
        order_id="#1042", shop_name="Northwind", carrier_name="UPS", tracking_number="1Z9",
        tracking_url="https://t.example/t/x", unsubscribe_url="https://t.example/u/x",
        customer_name="Ada", status_detail="Held at depot",
        timezone="Europe/Berlin",
        eta_earliest=datetime(2026, 11, 7, 9, tzinfo=UTC),
        eta_latest=datetime(2026, 11, 9, 9, tzinfo=UTC),
        previous_eta_earliest=datetime(2026, 11, 4, 9, tzinfo=UTC),
        previous_eta_latest=datetime(2026, 11, 5, 9, tzinfo=UTC),
        promised_date=date(2026, 11, 6), occurred_at=datetime(2026, 11, 3, 9, tzinfo=UTC),
        event_location="Leipzig", pickup_until=date(2026, 11, 10),
        items=(Item(name="Mug", quantity=2),))


@pytest.mark.parametrize("locale", ["en", "es", "de", "pt-BR"])
def test_every_template_renders_with_a_full_and_a_minimal_context(locale: str) -> None:
    """StrictUndefined: a template naming something the context lacks fails here."""
    renderer = Renderer()
    full = _full()
    minimal = MessageContext(**{f.name: getattr(full, f.name) for f in
                                dataclasses.fields(MessageContext)
                                if f.default is dataclasses.MISSING
                                and f.default_factory is dataclasses.MISSING})
    for moment in MOMENTS:
        for context in (full, minimal):
            email = renderer.render_email(moment, locale, context)
            assert email.subject and full.tracking_url in email.text
            assert full.tracking_url in renderer.render_sms(moment, locale, context).body
