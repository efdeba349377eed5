"""The moment rules and quiet hours as pure functions."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from service.settings import load_settings
from tests.builders import stored_shipment
from workers.planning.planner import business_hours_between, stalled
from workers.planning.quiet_hours import sms_due_at
from workers.planning.triggers import (
    Moment,
    delay_moment,
    milestone_moments,
    missed_promise,
    revise_shown_date,
)

SCAN = datetime(2026, 11, 3, 10, tzinfo=UTC)


def test_shipped_only_while_nothing_newer_is_known() -> None:
    assert milestone_moments("in_transit", SCAN) == [Moment("shipped")]
    assert milestone_moments("out_for_delivery", SCAN) == [Moment("out_for_delivery")]
    assert milestone_moments("delivered", SCAN) == [Moment("delivered")]
    assert milestone_moments("label_created", None) == []


def test_delay_is_told_only_before_the_promise_passes() -> None:
    promised = date(2026, 11, 6)
    assert delay_moment("in_transit", date(2026, 11, 9), promised, date(2026, 11, 4), 0)
    assert delay_moment("in_transit", date(2026, 11, 9), promised, date(2026, 11, 6), 0)
    assert delay_moment("in_transit", date(2026, 11, 9), promised, date(2026, 11, 7), 0) is None
    assert delay_moment("in_transit", date(2026, 11, 7), promised, date(2026, 11, 4), 1) is None
    assert delay_moment("delivered", date(2026, 11, 9), promised, date(2026, 11, 4), 0) is None
    assert missed_promise("in_transit", promised, date(2026, 11, 7)) == Moment("missed_promise")
    assert missed_promise("delivered", promised, date(2026, 11, 7)) is None


def test_a_flapping_prediction_sends_nothing_and_a_settled_one_sends_once() -> None:
    shown, pending = date(2026, 11, 6), None
    sent = []
    for new in (date(2026, 11, 7), date(2026, 11, 6), date(2026, 11, 7), date(2026, 11, 6)):
        r = revise_shown_date(shown, pending, new, "in_transit")
        shown, pending = r.shown_date, r.pending_date
        sent += [r.moment] if r.moment else []
    assert sent == [] and shown == date(2026, 11, 6)
    for new in (date(2026, 11, 8), date(2026, 11, 8), date(2026, 11, 8)):
        r = revise_shown_date(shown, pending, new, "in_transit")
        shown, pending = r.shown_date, r.pending_date
        sent += [r.moment] if r.moment else []
    assert sent == [Moment("eta_revised", "2026-11-08")] and shown == date(2026, 11, 8)


def test_quiet_hours_defer_to_eight_local_across_a_dst_change() -> None:
    # 23:30 in New York on the night clocks fall back (2026-11-01): next 08:00 EST = 13:00Z.
    late = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    assert sms_due_at(late, "America/New_York", 21, 8) == datetime(2026, 11, 1, 13, tzinfo=UTC)
    noon = datetime(2026, 11, 3, 17, tzinfo=UTC)
    assert sms_due_at(noon, "America/New_York", 21, 8) == noon
    assert sms_due_at(noon, "Asia/Tokyo", 21, 8) == datetime(2026, 11, 3, 23, tzinfo=UTC)


def test_business_hours_skip_sundays_and_holidays() -> None:
    friday = datetime(2026, 11, 6, 12, tzinfo=UTC)
    monday = friday + timedelta(days=3)
    assert business_hours_between(friday, monday, "UTC") == 12 + 24 + 12  # Sunday skipped
    wednesday = datetime(2026, 11, 25, 12, tzinfo=UTC)  # Thanksgiving is Nov 26
    assert business_hours_between(wednesday, wednesday + timedelta(days=2), "UTC") == 24


def test_stalled_thresholds_per_carrier_and_service() -> None:
    settings = load_settings(stalled_transit_hours_by_service={"usps:economy": 96})
    base = {"status": "in_transit", "first_scan_at": SCAN, "label_created_at": SCAN,
            "last_event_at": SCAN, "service_level": "economy"}
    later = SCAN + timedelta(days=3)  # Tue 10:00 -> Fri 10:00: 72 business hours
    assert stalled(stored_shipment(**base, carrier="ups"), later, "UTC", settings
                   ) == Moment("stalled")
    assert stalled(stored_shipment(**base, carrier="usps"), later, "UTC", settings) is None


def test_business_days_follow_the_destination_country() -> None:
    """3 October is a public holiday in Germany, an ordinary Saturday in the US."""
    saturday = datetime(2026, 10, 3, tzinfo=UTC)
    assert business_hours_between(saturday, saturday + timedelta(days=1), "UTC", "DE") == 0
    assert business_hours_between(saturday, saturday + timedelta(days=1), "UTC", "US") == 24
    settings = load_settings()
    quiet = {"status": "in_transit", "first_scan_at": saturday - timedelta(days=1),
             "last_event_at": saturday - timedelta(days=1)}
    # Friday 00:00 to Sunday 00:00: 48 business hours in the US (stalled), 24 in Germany.
    at = saturday + timedelta(days=1)
    assert stalled(stored_shipment(**quiet, destination_country="US"), at, "UTC", settings
                   ) == Moment("stalled")
    assert stalled(stored_shipment(**quiet, destination_country="DE",
                                   destination_postal_code="10115"), at, "UTC", settings) is None


def test_a_date_one_day_earlier_is_not_news() -> None:
    shown = date(2026, 11, 8)
    for _ in range(3):
        r = revise_shown_date(shown, None, date(2026, 11, 7), "in_transit")
        assert r.moment is None and r.shown_date == shown
    r = revise_shown_date(shown, date(2026, 11, 5), date(2026, 11, 5), "in_transit")
    assert r.moment == Moment("eta_revised", "2026-11-05")


def test_a_destination_country_is_looked_up_without_loading_every_holiday_calendar() -> None:
    # The first plan in a worker decides the calendar country on its event loop: it must not
    # import the holidays package's 280 country modules (seconds of CPU, 8 MB) to do so.
    probe = ("import sys; from service.zones import calendar_country as c; "
             "print(c('DE', 'US'), c('BR', 'US'), c('ZZ', 'US'), c(None, 'US'), "
             "sum(m.startswith('holidays.countries.') for m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert found[:4] == ["DE", "BR", "US", "US"]
    assert int(found[4]) < 10


def test_a_zip_s_zone_from_the_feature_table_is_the_zone_its_record_gives() -> None:
    # Customers' zones (quiet hours, local dates) come from the ETA features' ZIP table
    # where it has the ZIP, the package's slow search only for the rest: the same zone
    # either way, for every state (and ZIP+4 forms).
    from predictor.lanes import zip_table
    from service.zones import _searched_zip_zone, zip_zone

    codes = sorted(zip_table())[::97]
    assert len(codes) > 400
    for code in codes:
        assert zip_zone(code) == _searched_zip_zone(code), code
    assert zip_zone("02139-4307") == zip_zone("02139") == "America/New_York"
    assert zip_zone("96201") == _searched_zip_zone("96201")  # a military ZIP: the search
    assert zip_zone("not a zip") is None
