"""Delivering the outbox: claim pending notifications, hand them to the notifier, record the outcome.

Run it inline (the default: :class:`~tenant2fa.TwoFactor` delivers the notifications of a change
right after the change commits, best effort), in a background thread
(:meth:`Dispatcher.start`), or from cron (``python -m tenant2fa outbox dispatch``). Several
dispatchers may run at once, in any number of processes: storage leases each notification to one
of them at a time, so each is delivered once. If a dispatcher dies after the notifier accepted a
message but before recording it, the lease runs out and another dispatcher delivers it again;
notifiers pass the notification id on (the SMTP notifier's Message-ID) so that such a repeat can be
recognised downstream.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenant2fa.clock import Clock, SystemClock, later, require_utc
from tenant2fa.errors import StorageError
from tenant2fa.outbox import DeliveryRules, OutboxState

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta

    from tenant2fa.notify import Notifier
    from tenant2fa.storage import Storage

__all__ = ["DispatchReport", "Dispatcher"]

_log = logging.getLogger("tenant2fa.dispatch")
_MAX_ERROR = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchReport:
    """What one :meth:`Dispatcher.dispatch` call did."""

    delivered: int = 0
    retrying: int = 0
    abandoned: int = 0
    lost: int = 0
    """Claims that ran out before the outcome could be recorded (another dispatcher took over)."""

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.abandoned + self.lost


class Dispatcher:
    """Delivers pending notifications from ``storage`` through ``notifier``."""

    def __init__(
        self,
        storage: Storage,
        notifier: Notifier,
        *,
        clock: Clock | None = None,
        rules: DeliveryRules | None = None,
        batch: int = 100,
    ) -> None:
        self.storage = storage
        self.notifier = notifier
        self.clock: Clock = clock or SystemClock()
        self.rules = rules or DeliveryRules()
        self.batch = batch
        self.claimant = "dispatcher-" + secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Dispatcher({self.storage!r}, {self.notifier!r})"

    def dispatch(self, *, ids: Sequence[str] | None = None) -> DispatchReport:
        """Deliver what is due now (only ``ids``, if given), one batch. Never raises for a
        notifier failure: the notification is rescheduled with back-off, or abandoned after
        ``rules.max_attempts``. Raises :class:`~tenant2fa.errors.StorageError` if storage fails."""
        now = require_utc(self.clock.now(), "clock.now()")
        items = self.storage.claim_notifications(
            now=now, claimant=self.claimant, lease=self.rules.lease, limit=self.batch, ids=ids
        )
        delivered = retrying = abandoned = lost = 0
        for item in items:
            note = item.notification
            error: str | None = None
            try:
                self.notifier.notify(note)
            except Exception as exc:  # noqa: BLE001 - any notifier failure is retried later
                error = f"{type(exc).__name__}: {str(exc)[:_MAX_ERROR]}"
            finished = require_utc(self.clock.now(), "clock.now()")
            if error is None:
                state, next_at = OutboxState.DELIVERED, None
            elif item.attempts >= self.rules.max_attempts:
                state, next_at = OutboxState.ABANDONED, None
            else:
                state, next_at = (
                    OutboxState.PENDING,
                    later(finished, self.rules.retry_delay(item.attempts)),
                )
            recorded = self.storage.finish_notification(
                note.notification_id,
                claimant=self.claimant,
                state=state,
                now=finished,
                next_attempt_at=next_at,
                error=error,
            )
            if not recorded:
                lost += 1
            elif state is OutboxState.DELIVERED:
                delivered += 1
            elif state is OutboxState.PENDING:
                retrying += 1
                _log.warning(
                    "notification %s (%s) failed, attempt %d, retrying at %s: %s",
                    note.notification_id,
                    note.kind.value,
                    item.attempts,
                    next_at,
                    error,
                )
            else:
                abandoned += 1
                _log.error(
                    "notification %s (%s) abandoned after %d attempts: %s",
                    note.notification_id,
                    note.kind.value,
                    item.attempts,
                    error,
                )
        return DispatchReport(
            delivered=delivered, retrying=retrying, abandoned=abandoned, lost=lost
        )

    def dispatch_all(self) -> DispatchReport:
        """Call :meth:`dispatch` until nothing due is left; the totals."""
        total = DispatchReport()
        while True:
            report = self.dispatch()
            total = DispatchReport(
                delivered=total.delivered + report.delivered,
                retrying=total.retrying + report.retrying,
                abandoned=total.abandoned + report.abandoned,
                lost=total.lost + report.lost,
            )
            if report.attempted < self.batch:
                return total

    # -- background thread -----------------------------------------------------------------

    def start(self, *, interval: timedelta) -> None:
        """Dispatch every ``interval`` in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the dispatcher thread is already running")
        self._stop.clear()
        seconds = interval.total_seconds()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.dispatch_all()
                except StorageError as exc:
                    _log.error("outbox dispatch failed; will retry: %s", exc)
                except Exception:  # noqa: BLE001 - the thread must outlive one bad batch
                    _log.exception("outbox dispatch failed unexpectedly; will retry")
                self._stop.wait(seconds)

        self._thread = threading.Thread(target=loop, name="tenant2fa-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float | None = 10) -> None:
        """Stop the background thread (after its current batch)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
