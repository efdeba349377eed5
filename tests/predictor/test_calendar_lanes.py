"""Business days, delivery dates in the customer's timezone, and ZIP geography."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np

from predictor import calendar, lanes


def test_sundays_and_federal_holidays_are_not_business_days() -> None:
    assert not calendar.is_business_day(date(2024, 7, 7))  # Sunday
    assert not calendar.is_business_day(date(2024, 7, 4))  # Independence Day
    assert not calendar.is_business_day(date(2024, 11, 28))  # Thanksgiving
    assert calendar.is_business_day(date(2024, 7, 6))  # Saturday deliveries happen


def test_next_business_day_skips_sunday_and_holiday() -> None:
    assert calendar.next_business_day(date(2024, 7, 3)) == date(2024, 7, 5)
    assert calendar.next_business_day(date(2024, 12, 24)) == date(2024, 12, 26)
    # Saturday 31 Aug → Sunday → Labor Day Monday → Tuesday.
    assert calendar.next_business_day(date(2024, 8, 31)) == date(2024, 9, 3)


def test_add_and_count_business_days() -> None:
    assert calendar.add_business_days(date(2024, 11, 27), 2) == date(2024, 11, 30)
    assert calendar.business_days_between(date(2024, 11, 25), date(2024, 12, 2)) == 5


def test_brazilian_holidays_for_olist() -> None:
    assert not calendar.is_business_day(date(2017, 11, 15), country="BR")
    assert calendar.is_business_day(date(2017, 11, 15), country="US")


def test_hours_remaining_become_a_local_business_date() -> None:
    # 02:00 UTC Saturday is still Friday evening in Los Angeles.
    as_of = datetime(2024, 7, 6, 2, 0, tzinfo=UTC)
    assert calendar.delivery_date_from_hours(as_of, 1, "America/Los_Angeles") == date(2024, 7, 5)
    assert calendar.delivery_date_from_hours(as_of, 1, "America/New_York") == date(2024, 7, 5)
    assert calendar.delivery_date_from_hours(as_of, 6, "America/New_York") == date(2024, 7, 6)
    # Landing on a Sunday rolls to Monday: nothing is delivered on Sunday.
    assert calendar.delivery_date_from_hours(as_of, 40, "America/New_York") == date(2024, 7, 8)


def test_vectorised_local_conversion_handles_dst() -> None:
    utc = np.array(["2024-03-10T06:30", "2024-03-10T07:30", "2024-11-03T05:30",
                    "2024-11-03T06:30"], dtype="datetime64[ns]")
    zones = np.array(["America/New_York"] * 4, dtype=object)
    local = calendar.utc_to_local(utc, zones)
    assert [str(x)[:16] for x in local] == ["2024-03-10T01:30", "2024-03-10T03:30",
                                             "2024-11-03T01:30", "2024-11-03T01:30"]


def test_zip_lookup_distance_and_lane() -> None:
    info = lanes.zip_info("10001")
    assert info is not None and info.state == "NY" and info.timezone == "America/New_York"
    assert 3900 < lanes.distance_km("10001", "90001") < 4000
    assert lanes.lane_key("60638", "94105") == "606>CA"
    assert lanes.zip_timezone("94105") == "America/Los_Angeles"
    assert lanes.zip_timezone("01310-100", "BR") == "America/Sao_Paulo"


def test_unknown_zip_is_unknown_not_an_error() -> None:
    assert lanes.zip_info("00000") is None
    assert math.isnan(lanes.distance_km("00000", "10001"))
    assert lanes.lane_key(None, "10001") == "unknown"
    assert lanes.distance_band(math.nan) == "unknown"
    assert lanes.distance_band(1000.0) == "800-1500km"
