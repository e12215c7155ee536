"""A controllable clock for tests."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from tenant2fa.clock import UTC, require_utc

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`~tenant2fa.clock.Clock` that only moves when told to. Thread-safe.

    >>> clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.advance(seconds=30).isoformat()
    '2026-01-01T00:00:30+00:00'
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = require_utc(start) if start is not None else datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forwards or backwards: real clocks step back too)."""
        with self._lock:
            self._now = require_utc(when)

    def set_timestamp(self, seconds: int) -> None:
        """Jump to a Unix time."""
        self.set(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds))

    def advance(self, delta: timedelta | None = None, *, seconds: float = 0) -> datetime:
        """Move forward (or back, with a negative delta); returns the new time."""
        step = (delta or timedelta(0)) + timedelta(seconds=seconds)
        with self._lock:
            self._now += step
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()})"
