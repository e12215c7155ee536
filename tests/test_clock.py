"""Time (:mod:`tenant2fa.clock`): the system clock in UTC, aware datetimes only, and deadlines that
saturate at the ends of the calendar instead of overflowing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tenant2fa import Clock, InvalidInput, SystemClock
from tenant2fa.clock import UTC, later, require_utc
from tenant2fa.testing import FakeClock

FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)


def test_the_system_clock_reads_the_current_time_in_utc() -> None:
    clock = SystemClock()
    before = datetime.now(UTC)
    now = clock.now()
    after = datetime.now(UTC)
    assert before <= now <= after
    assert now.tzinfo is UTC
    assert repr(clock) == "SystemClock()"


def test_both_clocks_are_clocks() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(), Clock)
    assert not isinstance(object(), Clock)


def test_a_utc_datetime_is_returned_as_it_is() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert require_utc(moment) is moment


@pytest.mark.parametrize(
    "zone",
    [
        timezone(timedelta(hours=-5)),
        timezone(timedelta(hours=5, minutes=30)),
        timezone(timedelta(0), "GMT"),  # zero offset, but not the UTC object
    ],
    ids=["new-york", "kolkata", "gmt"],
)
def test_an_aware_datetime_in_another_zone_becomes_the_same_instant_in_utc(
    zone: timezone,
) -> None:
    moment = datetime(2026, 3, 8, 7, 30, tzinfo=zone)
    converted = require_utc(moment)
    assert converted == moment
    assert converted.tzinfo is UTC
    assert converted.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (datetime(2026, 1, 1), "when must be timezone-aware (UTC), got a naive datetime"),  # noqa: DTZ001
        ("2026-01-01T00:00:00Z", "when must be a timezone-aware datetime, got str"),
        (1767225600, "when must be a timezone-aware datetime, got int"),
        (None, "when must be a timezone-aware datetime, got NoneType"),
    ],
    ids=["naive", "str", "int", "none"],
)
def test_what_is_not_an_aware_datetime_is_invalid_input(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        require_utc(value, "when")
    assert str(caught.value) == message


def test_the_default_name_in_the_message_is_datetime() -> None:
    with pytest.raises(InvalidInput, match=r"^datetime must be timezone-aware"):
        require_utc(datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    "moment",
    [
        datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-12))),
    ],
    ids=["min-in-utc+14", "max-in-utc-12"],
)
def test_a_moment_with_no_utc_equivalent_is_invalid_input_not_an_overflow(
    moment: datetime,
) -> None:
    with pytest.raises(InvalidInput, match="outside the range of datetime in UTC"):
        require_utc(moment, "now")


def test_later_adds_a_delta() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert later(moment, timedelta(days=90)) == datetime(2026, 4, 1, tzinfo=UTC)
    assert later(moment, -timedelta(days=1)) == datetime(2025, 12, 31, tzinfo=UTC)
    assert later(moment, timedelta(0)) == moment


def test_later_saturates_at_the_end_of_time_for_a_positive_delta() -> None:
    assert later(LAST - timedelta(days=1), timedelta(days=90)) == LAST
    assert later(LAST, timedelta(microseconds=1)) == LAST


def test_later_saturates_at_the_start_of_time_for_a_negative_delta() -> None:
    assert later(FIRST + timedelta(days=1), -timedelta(days=90)) == FIRST
    assert later(FIRST, -timedelta(microseconds=1)) == FIRST
