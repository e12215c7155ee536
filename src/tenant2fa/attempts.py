"""What an attempt at a code changes in a user's factor, decided on one snapshot of it.

Pure: no storage, no clock, no randomness. The service reads a snapshot
(:meth:`~tenant2fa.storage.Storage.load_login`), asks these functions for the new record, and
writes it with :meth:`~tenant2fa.storage.Storage.commit_factor`, which refuses if the stored
record moved on meanwhile (the service then reads and decides again). Every new record carries
the next revision.

The throttle is decided here too: an attempt is allowed by :func:`refusal` on the snapshot's
counter, and its failure is charged in the same write that records its outcome, so the count and
the outcome can never part.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from tenant2fa.throttle import Allowance, allowance

if TYPE_CHECKING:
    from datetime import datetime

    from tenant2fa.enrollment import PendingEnrollment
    from tenant2fa.factor import FactorRecord
    from tenant2fa.recovery import RecoveryCodeSet
    from tenant2fa.throttle import ThrottleRules

__all__ = [
    "accepting_code",
    "activating",
    "charged",
    "codes_replaced",
    "lockout_after",
    "pending_saved",
    "recovering",
    "refusal",
]


def _next(factor: FactorRecord, **changes: object) -> FactorRecord:
    return dataclasses.replace(factor, revision=factor.revision + 1, **changes)  # type: ignore[arg-type]


def refusal(factor: FactorRecord, *, now: datetime, rules: ThrottleRules) -> Allowance | None:
    """Why an attempt at ``now`` may not be evaluated (the user waits), or ``None`` if it may."""
    decided = allowance(
        failures=factor.failures, last_failure_at=factor.last_failure_at, now=now, rules=rules
    )
    return None if decided.allowed else decided


def charged(factor: FactorRecord, *, now: datetime) -> FactorRecord:
    """The record after a failed attempt at ``now``: one more failure counted."""
    return _next(factor, failures=factor.failures + 1, last_failure_at=now)


def lockout_after(failures: int, *, now: datetime, rules: ThrottleRules) -> Allowance | None:
    """If the failure that brought the count to ``failures`` (at ``now``) starts a wait or locks
    the user for good, the allowance it leaves (tell the user); else ``None``."""
    if failures <= 0 or failures not in (rules.free_failures, rules.max_failures):
        return None
    return allowance(failures=failures, last_failure_at=now, now=now, rules=rules)


def accepting_code(factor: FactorRecord, *, step: int) -> FactorRecord | None:
    """The record after a correct code of time ``step``: the step is used and the counter
    cleared. ``None`` if there is no active secret, or the step is not after the last one used
    (a replay): then the attempt fails and is :func:`charged`."""
    if factor.secret is None or step <= factor.last_step:
        return None
    return _next(factor, last_step=step, failures=0, last_failure_at=None)


def recovering(factor: FactorRecord, *, codes_left: int) -> FactorRecord:
    """The record after one unused recovery code is used: the counter cleared, ``codes_left``
    unused codes remain."""
    return _next(factor, failures=0, last_failure_at=None, recovery_codes_left=codes_left)


def activating(
    factor: FactorRecord, *, step: int, now: datetime, recovery: RecoveryCodeSet
) -> FactorRecord | None:
    """The record after the pending secret is confirmed with a code of time ``step`` at ``now``:
    it becomes the active secret (a new epoch), with ``recovery`` as the recovery codes and the
    counter cleared. ``None`` if no pending enrollment is open at ``now`` or the step is not
    after the last one used."""
    pending = factor.pending
    if pending is None or pending.is_expired(now) or step <= factor.last_step:
        return None
    return _next(
        factor,
        secret=pending.secret,
        activated_at=now,
        last_step=step,
        pending=None,
        epoch=factor.epoch + 1,
        failures=0,
        last_failure_at=None,
        recovery_salt=recovery.salt,
        recovery_codes_left=len(recovery.digests),
    )


def pending_saved(factor: FactorRecord, pending: PendingEnrollment) -> FactorRecord:
    """The record with ``pending`` as its pending enrollment (replacing any); nothing else
    changes."""
    return _next(factor, pending=pending)


def codes_replaced(factor: FactorRecord, recovery: RecoveryCodeSet) -> FactorRecord:
    """The record with ``recovery`` as its recovery codes, in a new epoch (logins that proved
    the old epoch prove it again)."""
    return _next(
        factor,
        epoch=factor.epoch + 1,
        recovery_salt=recovery.salt,
        recovery_codes_left=len(recovery.digests),
    )
