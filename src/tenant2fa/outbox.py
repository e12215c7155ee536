"""The outbox: notifications stored in the same atomic step as the change they report. Pure.

A security change (2FA enabled, a reset, a recovery code used, a lockout, a toggle) and its
notifications are written together, so a crash can lose neither one without the other. A
:class:`~tenant2fa.dispatch.Dispatcher` later claims pending notifications, hands them to the
host's notifier, and marks them delivered, or schedules a retry with exponential back-off; a
notifier failure never touches the change itself. Each notification has a stable id, which
notifiers put in the message (the SMTP notifier's Message-ID) so that a delivery repeated after a
crash can be recognised downstream.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tenant2fa.errors import ConfigurationError
from tenant2fa.notify import Notification, NotificationKind

__all__ = [
    "DeliveryRules",
    "OutboxItem",
    "OutboxState",
    "decode_notification",
    "encode_notification",
]


class OutboxState(enum.Enum):
    PENDING = "pending"
    """Waiting for (another) delivery attempt."""
    DELIVERED = "delivered"
    """The notifier accepted it."""
    ABANDONED = "abandoned"
    """Every attempt failed; the dispatcher gave up (see ``last_error``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """A notification in the outbox, with its delivery bookkeeping."""

    notification: Notification
    state: OutboxState
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRules:
    """Retry policy: back-off ``base_delay * 2 ** (attempts - 1)`` up to ``max_delay``; give up
    after ``max_attempts``. ``lease`` is how long a claimed notification is reserved for one
    dispatcher before another may take it over (longer than a notifier call can take)."""

    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)
    max_attempts: int = 12
    lease: timedelta = timedelta(minutes=2)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.base_delay <= timedelta(0) or self.max_delay < self.base_delay:
            raise ConfigurationError("need 0 < base_delay <= max_delay")
        if self.lease <= timedelta(0):
            raise ConfigurationError("lease must be positive")

    def retry_delay(self, attempts: int) -> timedelta:
        """How long to wait after the ``attempts``-th failed attempt."""
        exponent = min(max(attempts - 1, 0), 32)
        delay: timedelta = self.base_delay * (2**exponent)
        return min(delay, self.max_delay)


_DATETIME_FIELDS = frozenset(
    f.name for f in dataclasses.fields(Notification) if "datetime" in str(f.type)
)


def encode_notification(notification: Notification) -> str:
    """A JSON text of ``notification`` (it holds no secret, so it may be stored as is)."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(notification):
        value = getattr(notification, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, enum.Enum):
            value = value.value
        data[f.name] = value
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def decode_notification(text: str) -> Notification:
    """The notification :func:`encode_notification` wrote. Unknown keys (from a newer version)
    are ignored; missing optional ones take their defaults."""
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(Notification)}
    values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
    values["kind"] = NotificationKind(values["kind"])
    for name in _DATETIME_FIELDS:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    return Notification(**values)
