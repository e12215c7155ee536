"""Races through the public TwoFactor API on MemoryStorage.

Every test lines its threads up on a :class:`threading.Barrier` and releases them together; the
clock is frozen, so all of them act at the same instant (the worst case for the throttle). The
single-use guarantees must hold whatever the interleaving: one time step, one recovery code, one
activation per pending secret, and never more evaluated guesses than a sequential run allows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from tenant2fa import (
    AuditKind,
    EnrollmentState,
    InMemoryNotifier,
    NotificationKind,
    Reason,
    TwoFactor,
)
from tenant2fa.testing import FakeClock, code_for, pending_code_for, secret_of

if TYPE_CHECKING:
    from conftest import Enrolled

_R = TypeVar("_R")

THREADS = 32
GUESSERS = 50
_WAIT = 30.0


def _all_at_once(count: int, call: Callable[[], _R]) -> list[_R]:
    """``call()`` from ``count`` threads released together; their results (errors re-raised)."""
    barrier = threading.Barrier(count)
    results: list[_R] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=_WAIT)
            result = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test's thread
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=_WAIT)
    assert not any(t.is_alive() for t in threads), "a thread never finished"
    if errors:
        raise errors[0]
    assert len(results) == count
    return results


def _kinds(tf: TwoFactor, kind: AuditKind) -> int:
    return len(tf.audit_log(kinds=frozenset({kind}), limit=1000))


def _sent(notifier: InMemoryNotifier, user_id: str, kind: NotificationKind) -> int:
    return sum(1 for n in notifier.for_user(user_id) if n.kind is kind)


def test_one_valid_code_sent_by_32_threads_at_once_is_accepted_once(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    clock.advance(seconds=30)  # the fixture's confirming code used the current time step
    login = tf.start_session(enrolled.user_id)
    code = code_for(tf, enrolled.user_id)

    results = _all_at_once(THREADS, lambda: tf.verify_code(login, "B", code))

    assert sum(r.ok for r in results) == 1
    assert {r.reason for r in results if not r.ok} <= {Reason.INVALID, Reason.LOCKED}
    assert _kinds(tf, AuditKind.CODE_ACCEPTED) == 1


def test_one_recovery_code_used_by_32_threads_at_once_works_once(
    enrolled: Enrolled, tf: TwoFactor, notifier: InMemoryNotifier
) -> None:
    login = tf.start_session(enrolled.user_id)
    code = enrolled.recovery_codes[0]
    codes_before = tf.user_status(enrolled.user_id).recovery_codes_left

    results = _all_at_once(THREADS, lambda: tf.use_recovery_code(login, "B", code))

    winners = [r for r in results if r.ok]
    assert len(winners) == 1
    assert winners[0].recovery_codes_left == codes_before - 1
    assert {r.reason for r in results if not r.ok} <= {Reason.INVALID, Reason.LOCKED}
    assert tf.user_status(enrolled.user_id).recovery_codes_left == codes_before - 1
    assert _kinds(tf, AuditKind.RECOVERY_CODE_USED) == 1
    assert _sent(notifier, enrolled.user_id, NotificationKind.RECOVERY_CODE_USED) == 1


def test_32_concurrent_confirms_of_one_enrollment_activate_it_once(
    tf: TwoFactor, clock: FakeClock, notifier: InMemoryNotifier
) -> None:
    tf.create_tenant("T", name="Tenant T", owner_id="olga")
    tf.add_member("T", "carol", operator="host")
    tf.set_two_factor("T", actor_id="olga", enabled=True)
    clock.advance(seconds=1)
    login = tf.start_session("carol")
    tf.begin_enrollment(login)
    pending_secret = secret_of(tf, "carol", pending=True)
    code = pending_code_for(tf, "carol")

    results = _all_at_once(THREADS, lambda: tf.confirm_enrollment(login, code))

    winners = [r for r in results if r.ok]
    assert len(winners) == 1
    assert len(winners[0].recovery_codes) == tf.config.recovery_code_count
    assert all(r.recovery_codes == () for r in results if not r.ok)
    assert {r.reason for r in results if not r.ok} <= {
        Reason.NOT_PENDING,
        Reason.INVALID,
        Reason.LOCKED,
    }
    assert _kinds(tf, AuditKind.ENROLLMENT_CONFIRMED) == 1
    assert _sent(notifier, "carol", NotificationKind.TWO_FACTOR_ENABLED) == 1
    status = tf.user_status("carol")
    assert (status.state, status.epoch) == (EnrollmentState.ACTIVE, 1)
    assert secret_of(tf, "carol") == pending_secret
    # The stored recovery codes are the ones the winner was shown. Losers' charged attempts may
    # have left a short wait; the longest possible one is over an hour later.
    clock.advance(timedelta(hours=1, seconds=1))
    used = tf.use_recovery_code(winners[0].login, "T", winners[0].recovery_codes[0])
    assert used.ok, used.reason


def test_50_wrong_codes_at_once_evaluate_no_more_than_the_free_allowance(
    enrolled: Enrolled, tf: TwoFactor, notifier: InMemoryNotifier
) -> None:
    login = tf.start_session(enrolled.user_id)
    valid = {code_for(tf, enrolled.user_id, offset=k) for k in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)
    free = tf.config.throttle.free_failures

    results = _all_at_once(GUESSERS, lambda: tf.verify_code(login, "B", wrong))

    assert not any(r.ok for r in results)
    evaluated = sum(r.reason is Reason.INVALID for r in results)
    refused = sum(r.reason is Reason.LOCKED for r in results)
    assert evaluated + refused == GUESSERS
    assert evaluated <= free
    assert tf.user_status(enrolled.user_id).failures == evaluated
    # With the clock frozen, a sequential run evaluates exactly the free allowance too.
    assert evaluated == free
    assert _kinds(tf, AuditKind.LOCKED_OUT) == 1
    assert _sent(notifier, enrolled.user_id, NotificationKind.LOCKED_OUT) == 1
