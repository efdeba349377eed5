from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, TemplateSyntaxError

from workers.render import (
    MOMENTS,
    SHIPPED_LOCALES,
    ContextError,
    NaiveDatetimeError,
    Renderer,
    SmsTooLongError,
    TemplateMissingError,
)
from workers.render.locales import locale_chain
from workers.render.samples import sample_context, worst_case_context


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("moment", MOMENTS)
def test_every_moment_renders_in_every_locale(renderer: Renderer, moment: str,
                                              locale: str) -> None:
    ctx = sample_context(moment)
    email = renderer.render_email(moment, locale, ctx)
    sms = renderer.render_sms(moment, locale, ctx)
    assert email.locale_used == sms.locale_used == locale
    assert email.subject and "\n" not in email.subject
    assert "#1042" in email.subject or "#1042" in email.text
    assert f'<html lang="{locale}">' in email.html
    assert "<style>" not in email.html and 'style="' in email.html  # CSS was inlined
    assert ctx["unsubscribe_url"] in email.html and ctx["unsubscribe_url"] in email.text
    assert ctx["tracking_url"] in sms.body and "#1042" in sms.body
    for out in (email.subject, email.html, email.text, sms.body):
        assert "{{" not in out and "{%" not in out and ".." not in out.replace("...", "")


@pytest.mark.parametrize(("requested", "used"), [
    ("fr", "en"), ("es-MX", "es"), ("es_mx", "es"), ("pt", "pt-BR"), ("pt-PT", "pt-BR"),
    ("pt_br", "pt-BR"), ("DE", "de"), ("de-AT", "de"), (None, "en"), ("not a locale!", "en"),
])
def test_locale_fallback(renderer: Renderer, requested: str | None, used: str) -> None:
    ctx = sample_context("shipped")
    assert renderer.render_email("shipped", requested, ctx).locale_used == used
    assert renderer.render_sms("shipped", requested, ctx).locale_used == used


def test_locale_chain_order() -> None:
    assert locale_chain("es-MX", ["de", "en", "es", "pt-BR"]) == ["es", "en"]
    assert locale_chain("es-MX", ["en", "es", "es-MX"]) == ["es-MX", "es", "en"]


def _mini_templates(root: Path) -> Path:
    (root / "email" / "en").mkdir(parents=True)
    (root / "sms" / "en").mkdir(parents=True)
    (root / "sms" / "de").mkdir(parents=True)
    (root / "sms" / "en" / "shipped.txt.j2").write_text("{{ shop_name }}: {{ order_id }}\n")
    (root / "sms" / "de" / "delivered.txt.j2").write_text("{{ shop_name }}: zugestellt\n")
    (root / "sms" / "en" / "evil.txt.j2").write_text("{{ order_id.__class__.__mro__ }}\n")
    return root


def test_a_locale_missing_one_moment_falls_back_per_moment(tmp_path: Path) -> None:
    renderer = Renderer(_mini_templates(tmp_path))
    ctx = sample_context("shipped")
    assert renderer.render_sms("shipped", "de", ctx).locale_used == "en"
    assert renderer.render_sms("delivered", "de", ctx).locale_used == "de"


def test_missing_template_in_all_locales_is_a_typed_error(tmp_path: Path,
                                                          renderer: Renderer) -> None:
    mini = Renderer(_mini_templates(tmp_path))
    with pytest.raises(TemplateMissingError) as info:
        mini.render_sms("delivered", "es", sample_context("delivered"))
    assert info.value.tried == ["en"]
    with pytest.raises(TemplateMissingError):
        mini.render_email("shipped", "en", sample_context("shipped"))
    with pytest.raises(TemplateMissingError):
        renderer.render_email("no_such_moment", "en", sample_context("shipped"))
    with pytest.raises(TemplateMissingError):
        renderer.render_sms("../../etc/passwd", "en", sample_context("shipped"))


def test_templates_run_sandboxed(tmp_path: Path) -> None:
    with pytest.raises(SecurityError):
        Renderer(_mini_templates(tmp_path)).render_sms("evil", "en", sample_context("shipped"))


def test_injected_data_shows_as_text(renderer: Renderer) -> None:
    ctx = sample_context("shipped")
    ctx["customer_name"] = "{{ 7*7 }}"
    ctx["shop_name"] = "Tom & Jerry's <b>Shop</b>"
    ctx["items"] = [{"name": "<script>alert(1)</script>", "quantity": 1},
                    {"name": "{% raw %}{{ config }}", "quantity": 2}]
    email = renderer.render_email("shipped", "en", ctx)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "{{ 7*7 }}" in email.html and "49" not in email.html
    assert "{% raw %}{{ config }}" in email.html
    # (the CSS inliner re-serialises the document, so the apostrophe comes back bare)
    assert "Tom &amp; Jerry's &lt;b&gt;Shop&lt;/b&gt;" in email.html
    assert "<b>Shop" not in email.html
    # Text parts are not HTML: the same data appears verbatim, and still unevaluated.
    assert "<script>alert(1)</script>" in email.text and "{{ 7*7 }}" in email.text
    assert email.subject.startswith("Your Tom & Jerry's <b>Shop</b> order")
    sms = renderer.render_sms("shipped", "en", ctx)
    assert "{{ 7*7 }}" in sms.body and "49" not in sms.body


def test_subject_cannot_carry_a_header_break(renderer: Renderer) -> None:
    ctx = sample_context("shipped")
    ctx["shop_name"] = "Evil\r\nBcc: victim@example.com"
    assert "\n" not in renderer.render_email("shipped", "en", ctx).subject


def test_dates_are_in_the_customers_timezone_and_locale(renderer: Renderer) -> None:
    ctx = sample_context("delivered")
    ctx["occurred_at"] = datetime(2026, 3, 5, 3, 0, tzinfo=UTC)  # 19:00 on the 4th in LA
    ctx["timezone"] = "America/Los_Angeles"
    en = renderer.render_email("delivered", "en", ctx).text
    assert re.search(r"on Wednesday, March 4, 2026, 7:00\sPM", en)
    de = renderer.render_email("delivered", "de", ctx).text
    assert "am Mittwoch, 4. März 2026, 19:00 zugestellt" in de
    es = renderer.render_email("delivered", "es", ctx).text
    assert "miércoles, 4 de marzo de 2026" in es
    ctx["timezone"] = "Europe/Berlin"
    assert "Thursday, March 5, 2026" in renderer.render_email("delivered", "en", ctx).text
    sms = renderer.render_sms("delivered", "en", {**ctx, "timezone": "America/Los_Angeles"})
    assert "Wed, Mar 4, 7:00 PM" in sms.body  # narrow no-break space smart-encoded


def test_a_window_and_plain_dates(renderer: Renderer) -> None:
    ctx = sample_context("shipped")
    ctx.update(eta_earliest=date(2026, 3, 4), eta_latest=date(2026, 3, 6), timezone="Asia/Tokyo")
    assert "Expected delivery: Wed, Mar 4 - Fri, Mar 6" in renderer.render_email(
        "shipped", "en", ctx).text.replace("\u2009", " ").replace("\u2013", "-")
    ctx["eta_latest"] = ctx["eta_earliest"]
    assert "Expected delivery: Wednesday, March 4, 2026." in renderer.render_email(
        "shipped", "en", ctx).text


def test_naive_datetimes_and_missing_data_are_refused(renderer: Renderer) -> None:
    ctx = sample_context("delivered")
    ctx["occurred_at"] = datetime(2026, 3, 5, 3, 0)  # noqa: DTZ001 - deliberately naive
    with pytest.raises(NaiveDatetimeError):
        renderer.render_email("delivered", "en", ctx)
    ctx = sample_context("delivered")
    del ctx["tracking_url"]
    with pytest.raises(ContextError, match="tracking_url"):
        renderer.render_sms("delivered", "en", ctx)


@pytest.mark.parametrize("unicode_name", [False, True], ids=["gsm7", "ucs2-name"])
@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("moment", MOMENTS)
def test_every_sms_fits_two_segments_with_worst_case_data(
        renderer: Renderer, moment: str, locale: str, unicode_name: bool) -> None:
    ctx = worst_case_context(moment, unicode_name=unicode_name)
    sms = renderer.render_sms(moment, locale, ctx)
    assert sms.segments <= 2
    assert ctx["tracking_url"] in sms.body and ctx["order_id"] in sms.body


def test_sms_shrinks_gracefully_then_gives_up(renderer: Renderer) -> None:
    ctx = worst_case_context("shipped", unicode_name=True)
    sms = renderer.render_sms("shipped", "en", ctx)
    assert sms.shortened and "Wolfeschlegelsteinhausen" not in sms.body
    full = renderer.render_sms("shipped", "en", sample_context("shipped"))
    assert not full.shortened and "Hi Maria" in full.body
    strict = Renderer(max_sms_segments=1)
    ctx["order_id"] = "#" + "9" * 200
    with pytest.raises(SmsTooLongError):
        strict.render_sms("shipped", "en", ctx)


def test_a_worker_compiles_every_template_before_its_first_send(tmp_path: Path) -> None:
    """`warm` (a worker's start) compiles them all: a template that does not compile stops
    the start instead of the first customer's message."""
    shipped = Renderer()
    assert shipped.warm() == len(list(shipped.templates_dir.rglob("*.j2")))
    broken = tmp_path / "sms" / "en"
    broken.mkdir(parents=True)
    (broken / "shipped.txt.j2").write_text("Hi {{ customer_name ")
    with pytest.raises(TemplateSyntaxError):
        Renderer(tmp_path).warm()
