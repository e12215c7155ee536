"""Time: the only place that reads the system clock.

Everything else receives ``now`` as an aware UTC :class:`~datetime.datetime`, from a :class:`Clock`
injected into :class:`tenant2fa.TwoFactor`. Tests use :class:`tenant2fa.testing.FakeClock`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

from tenant2fa.errors import InvalidInput

__all__ = ["UTC", "Clock", "SystemClock", "later", "require_utc"]

UTC = timezone.utc
_LAST = datetime.max.replace(tzinfo=UTC)
_FIRST = datetime.min.replace(tzinfo=UTC)


@runtime_checkable
class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """Return the current time as an aware datetime in UTC."""
        ...


class SystemClock:
    """The real clock: :func:`datetime.now` in UTC. Never affected by ``TZ`` or DST."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def require_utc(value: object, name: str = "datetime") -> datetime:
    """Return ``value`` converted to UTC; raise :class:`InvalidInput` if it is naive, not a
    :class:`~datetime.datetime`, or has no UTC equivalent (``datetime.min`` in UTC+14).

    Naive datetimes are refused rather than guessed at: a local-time guess is exactly the DST bug
    that makes other TOTP libraries accept an hour-old code.
    """
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a timezone-aware datetime, got {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None:
        raise InvalidInput(f"{name} must be timezone-aware (UTC), got a naive datetime")
    if offset == timedelta(0) and value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} lies outside the range of datetime in UTC") from None


def later(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturating at the ends of :class:`~datetime.datetime`'s range.

    Deadlines computed from stored values (an activation plus a grace period, a failure plus a
    back-off delay) must never raise: a clock set to the year 9999, or a value written by an older
    version, then gives "never" (or "always") instead of an :class:`OverflowError`.
    """
    try:
        return moment + delta
    except OverflowError:
        return _LAST if delta > timedelta(0) else _FIRST
