"""The carrier status tables: every row follows the rules, coverage, today's codes, carrier names."""

from __future__ import annotations

import pytest

from service.tracking import carrier_tables as tables
from service.tracking.taxonomy import CARRIERS, STATUSES, TERMINAL

TERMINAL_CATEGORIES = {"delivered", "return", "cancelled"}
# Codes that are the sender's own "no information" value: unknown is their honest mapping, so they
# are left out of the coverage share.
NO_INFORMATION = {("dhl_ecommerce", "unknown"), ("easypost", "unknown"), ("easypost", "error"),
                  ("easypost", "status_update"), ("gls", "NORECORD"), ("gls", "FINAL")}
# Carriers whose code lists we could not source yet: their tables are empty on purpose.
UNSOURCED = {"ontrac", "lasership"}


def all_rows() -> list[tuple[str, str, tables.CodeRow]]:
    return [(name, code, row) for name, codes in tables.load_codes().items() for code, row in codes.items()]


def test_every_row_follows_the_category_rules() -> None:
    for name, code, row in all_rows():
        assert tables.check_row(row) is None, (name, code)
        assert row.status in tables.CATEGORY_STATUSES[row.category], (name, code)


def test_no_terminal_status_for_a_meaning_that_is_not_final() -> None:
    for name, code, row in all_rows():
        if row.status in TERMINAL:
            assert row.category in TERMINAL_CATEGORIES, (name, code)
    for category, statuses in tables.CATEGORY_STATUSES.items():
        if category not in TERMINAL_CATEGORIES:
            assert not statuses & TERMINAL, category
    assert tables.CATEGORY_STATUSES["ready_for_pickup"] == {"available_for_pickup"}
    assert tables.CATEGORY_STATUSES["informational"] == {"in_transit", "unknown"}


def test_a_return_under_way_is_never_terminal() -> None:
    for name, code, row in all_rows():
        if row.category == "return" and row.status != "returned_to_sender":
            assert row.substatus == "returning", (name, code)


def test_substatuses_are_in_the_vocabulary_of_their_status() -> None:
    assert set(tables.SUBSTATUSES) == set(STATUSES)
    for name, code, row in all_rows():
        assert not row.substatus or row.substatus in tables.SUBSTATUSES[row.status], (name, code)


def test_every_row_names_its_meaning_and_source() -> None:
    for name, code, row in all_rows():
        assert row.meaning and row.source, (name, code)


def test_coverage_is_at_least_95_percent_per_table() -> None:
    for name, codes in tables.load_codes().items():
        if name in UNSOURCED:
            assert not codes, f"{name} has rows now: take it out of UNSOURCED"
            continue
        counted = [row for code, row in codes.items() if (name, code) not in NO_INFORMATION]
        mapped = sum(row.status != "unknown" for row in counted)
        assert counted and mapped / len(counted) >= 0.95, (name, mapped, len(counted))
    assert all(total >= mapped for mapped, total in tables.coverage().values())


def test_lookup_matches_exact_then_upper_then_lower_case() -> None:
    kb = tables.lookup("ups", "kb")
    assert kb is not None and kb.status == "delivered" and kb.substatus == "signature_obtained"
    transit = tables.lookup("dhl", "TRANSIT")
    assert transit is not None and transit.status == "in_transit"
    assert tables.lookup("aftership", "InTransit") == tables.load_codes()["aftership"]["InTransit"]
    assert tables.lookup("ups", "nope") is None
    assert tables.lookup("no-such-carrier", "D") is None


@pytest.mark.parametrize(("name", "slug"), [
    ("U.P.S.", "ups"), ("ups", "ups"), ("United Parcel Service", "ups"), ("ups-mi", "ups"),
    ("Fedex Ground", "fedex"), ("FEDEX SMARTPOST", "fedex"), ("FedEx Home Delivery", "fedex"),
    ("DHL Express", "dhl"), ("dhlexpress", "dhl"), ("dhl-ecommerce", "dhl_ecommerce"),
    ("DHL eCommerce Solutions", "dhl_ecommerce"), ("Royal Mail", "royal_mail"), ("royal-mail", "royal_mail"),
    ("Canada Post", "canada_post"), ("AusPost", "australia_post"), ("GLS US", "gls"),
    ("Amazon Shipping", "amazon"), ("  u s p s ", "usps"), ("nobody express", None), ("", None), (None, None),
])
def test_carrier_slug_ignores_case_and_punctuation(name: str | None, slug: str | None) -> None:
    assert tables.carrier_slug(name) == slug


def test_every_known_carrier_resolves_by_its_slug_and_name() -> None:
    for slug, name in CARRIERS.items():
        assert tables.carrier_slug(slug) == slug
        assert tables.carrier_slug(name) == slug


def test_a_bad_row_is_refused_naming_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {"code": "X1", "status": "delivered", "substatus": "", "category": "ready_for_pickup",
           "meaning": "waiting at a locker", "source": "test"}
    monkeypatch.setattr(tables, "_table_names", lambda: ["bad"])
    monkeypatch.setattr(tables, "_rows", lambda filename, columns: [(3, bad)])
    tables.load_codes.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"bad\.csv line 3: status 'delivered' not allowed"):
            tables.load_codes()
        for field, value, message in [("status", "gone", "unknown status"),
                                      ("category", "whatever", "unknown category"),
                                      ("substatus", "teleported", "substatus 'teleported'")]:
            monkeypatch.setitem(bad, field, value)
            with pytest.raises(ValueError, match=rf"bad\.csv line 3: {message}"):
                tables.load_codes()
            monkeypatch.setitem(bad, field, {"status": "delivered", "category": "delivered",
                                             "substatus": ""}[field])
    finally:
        tables.load_codes.cache_clear()
