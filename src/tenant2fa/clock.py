"""Time: the only place that reads the system clock.

Everything else receives ``now`` as an aware UTC :class:`~datetime.datetime`, from a :class:`Clock`
injected into :class:`tenant2fa.TwoFactor`. Tests use :class:`tenant2fa.testing.FakeClock`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

from tenant2fa.errors import InvalidInput

__all__ = ["UTC", "Clock", "SystemClock", "require_utc"]

UTC = timezone.utc


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


def require_utc(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` converted to UTC; raise :class:`InvalidInput` if it is naive.

    Naive datetimes are refused rather than guessed at: a local-time guess is exactly the DST bug
    that makes other TOTP libraries accept an hour-old code.
    """
    offset = value.utcoffset()
    if offset is None:
        raise InvalidInput(f"{name} must be timezone-aware (UTC), got a naive datetime")
    if offset == timedelta(0) and value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)
