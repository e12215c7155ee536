"""MemoryStorage against the storage conformance suite, and the suite against broken backends.

The second half checks the suite itself: each deliberately broken backend below breaks one
contract, and the conformance test for that contract must fail against it. The racy ones check
then write outside the lock, with the first two threads held until both have checked, so the
lost update happens on every run rather than by luck.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import pytest

from tenant2fa.audit import AuditQuery, AuditRecord
from tenant2fa.enrollment import PendingEnrollment
from tenant2fa.notify import Notification
from tenant2fa.policy import Membership, Standing, TenantPolicy
from tenant2fa.recovery import RecoveryCodeSet
from tenant2fa.storage import Charge, FactorRecord, Storage
from tenant2fa.storage.memory import MemoryStorage
from tenant2fa.testing.conformance import StorageConformance
from tenant2fa.throttle import ThrottleRules


class TestMemoryStorage(StorageConformance):
    @pytest.fixture
    def storage(self) -> Storage:
        # Annotated as the protocol so that mypy checks MemoryStorage implements it.
        return MemoryStorage()


def test_memory_storage_is_a_runtime_storage() -> None:
    assert isinstance(MemoryStorage(), Storage)


# -- broken backends: each must be caught ------------------------------------------------------


class _AuditsRefusedPolicyUpdate(MemoryStorage):
    def update_tenant_policy(
        self,
        policy: TenantPolicy,
        *,
        expected_version: int,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor: Membership | None = None,
    ) -> bool:
        changed = super().update_tenant_policy(
            policy,
            expected_version=expected_version,
            audit=audit,
            notifications=notifications,
            actor=actor,
        )
        if not changed:
            self.append_audit(audit)
        return changed


class _PendingClearsFailures(MemoryStorage):
    def save_pending(self, user_id: str, pending: PendingEnrollment, *, audit: AuditRecord) -> None:
        super().save_pending(user_id, pending, audit=audit)
        with self._lock:
            self._factors[user_id] = dataclasses.replace(self._factors[user_id], failures=0)


class _IgnoresExpiry(MemoryStorage):
    def activate_pending(
        self,
        user_id: str,
        *,
        pending_id: str,
        step: int,
        now: datetime,
        recovery: RecoveryCodeSet,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        pending = self.get_factor(user_id).pending
        if pending is not None:
            now = min(now, pending.created_at)
        return super().activate_pending(
            user_id,
            pending_id=pending_id,
            step=step,
            now=now,
            recovery=recovery,
            audit=audit,
            notifications=notifications,
        )


class _ActivatesUsedStep(MemoryStorage):
    def activate_pending(
        self,
        user_id: str,
        *,
        pending_id: str,
        step: int,
        now: datetime,
        recovery: RecoveryCodeSet,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        # Compares with >= instead of >: the step already accepted is accepted again.
        last = self.get_factor(user_id).last_step
        return super().activate_pending(
            user_id,
            pending_id=pending_id,
            step=step + 1 if step == last else step,
            now=now,
            recovery=recovery,
            audit=audit,
            notifications=notifications,
        )


class _CountsRefusedAttempts(MemoryStorage):
    def charge_attempt(self, user_id: str, *, now: datetime, rules: ThrottleRules) -> Charge:
        charge = super().charge_attempt(user_id, now=now, rules=rules)
        if not charge.allowed:
            with self._lock:
                factor = self._factor(user_id)
                self._factors[user_id] = dataclasses.replace(factor, failures=factor.failures + 1)
        return charge


class _NeverLocksForGood(MemoryStorage):
    def charge_attempt(self, user_id: str, *, now: datetime, rules: ThrottleRules) -> Charge:
        lenient = dataclasses.replace(rules, max_failures=100)
        return super().charge_attempt(user_id, now=now, rules=lenient)


class _ReusableRecoveryCodes(MemoryStorage):
    def consume_recovery_code(
        self,
        user_id: str,
        *,
        digest: bytes,
        now: datetime,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        left = super().consume_recovery_code(
            user_id, digest=digest, now=now, audit=audit, notifications=notifications
        )
        with self._lock:
            codes = self._recovery.get(user_id, {})
            if digest in codes:
                codes[digest] = False
        return left


class _ResetForgetsLastStep(MemoryStorage):
    def reset_factor(
        self,
        user_id: str,
        *,
        floor: datetime,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor_id: str | None = None,
        expected: Sequence[Standing] | None = None,
    ) -> int | None:
        epoch = super().reset_factor(
            user_id,
            floor=floor,
            audit=audit,
            notifications=notifications,
            actor_id=actor_id,
            expected=expected,
        )
        with self._lock:
            self._factors[user_id] = dataclasses.replace(self._factor(user_id), last_step=-1)
        return epoch


class _Truncates32BitSteps(MemoryStorage):
    # Like a 32-bit INTEGER column for last_step.
    def activate_pending(
        self,
        user_id: str,
        *,
        pending_id: str,
        step: int,
        now: datetime,
        recovery: RecoveryCodeSet,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        return super().activate_pending(
            user_id,
            pending_id=pending_id,
            step=step % 2**32,
            now=now,
            recovery=recovery,
            audit=audit,
            notifications=notifications,
        )


class _NewestFirstOnTies(MemoryStorage):
    def audit_records(self, query: AuditQuery) -> list[AuditRecord]:
        everything = super().audit_records(dataclasses.replace(query, limit=10**6, offset=0))
        pairs = sorted(enumerate(everything), key=lambda pair: (pair[1].at, -pair[0]))
        return [r for _, r in pairs][query.offset : query.offset + query.limit]


class _IgnoresActorInUserFilter(MemoryStorage):
    def audit_records(self, query: AuditQuery) -> list[AuditRecord]:
        return [
            r for r in super().audit_records(query) if r.user_id == (query.user_id or r.user_id)
        ]


class _FoldsCase(MemoryStorage):
    def get_factor(self, user_id: str) -> FactorRecord:
        return dataclasses.replace(super().get_factor(user_id.lower()), user_id=user_id)


class _Racy(MemoryStorage):
    """Holds the first two threads after their check until both have checked."""

    def __init__(self) -> None:
        super().__init__()
        self._pair = threading.Barrier(2)
        self._arrivals = 0
        self._arrivals_lock = threading.Lock()

    def _let_a_second_thread_check(self) -> None:
        with self._arrivals_lock:
            self._arrivals += 1
            held = self._arrivals <= 2
        if held:
            self._pair.wait(timeout=30)


class _RacyCodeSuccess(_Racy):
    def record_code_success(
        self, user_id: str, *, step: int, expected_epoch: int, now: datetime, audit: AuditRecord
    ) -> bool:
        factor = self.get_factor(user_id)
        if factor.secret is None or factor.epoch != expected_epoch or step <= factor.last_step:
            return False
        self._let_a_second_thread_check()
        with self._lock:
            self._factors[user_id] = dataclasses.replace(factor, last_step=step, failures=0)
            self._audit.append(audit)
        return True


class _RacyRecoveryCode(_Racy):
    def consume_recovery_code(
        self,
        user_id: str,
        *,
        digest: bytes,
        now: datetime,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        with self._lock:
            unused = dict(self._recovery.get(user_id, {}))
        if unused.get(digest, True):
            return None
        self._let_a_second_thread_check()
        unused[digest] = True
        with self._lock:
            self._recovery[user_id] = unused
            self._audit.append(audit)
        return sum(1 for used in unused.values() if not used)


class _RacyCharge(_Racy):
    def charge_attempt(self, user_id: str, *, now: datetime, rules: ThrottleRules) -> Charge:
        factor = self.get_factor(user_id)
        if factor.failures >= rules.free_failures:
            return Charge(allowed=False, failures=factor.failures)
        self._let_a_second_thread_check()
        failures = factor.failures + 1
        with self._lock:
            self._factors[user_id] = dataclasses.replace(
                factor, failures=failures, last_failure_at=now
            )
        return Charge(allowed=True, failures=failures)


class _RacyActivation(_Racy):
    def activate_pending(
        self,
        user_id: str,
        *,
        pending_id: str,
        step: int,
        now: datetime,
        recovery: RecoveryCodeSet,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        factor = self.get_factor(user_id)
        pending = factor.pending
        if pending is None or pending.pending_id != pending_id or step <= factor.last_step:
            return None
        self._let_a_second_thread_check()
        with self._lock:
            self._factors[user_id] = dataclasses.replace(
                factor, secret=pending.secret, pending=None, epoch=factor.epoch + 1, last_step=step
            )
            self._recovery[user_id] = dict.fromkeys(recovery.digests, False)
            self._audit.append(audit)
        return factor.epoch + 1


_BROKEN: list[tuple[Callable[[], MemoryStorage], str]] = [
    (
        _AuditsRefusedPolicyUpdate,
        "test_update_tenant_policy_with_a_stale_version_returns_false_and_changes_nothing",
    ),
    (
        _PendingClearsFailures,
        "test_save_pending_keeps_active_secret_last_step_failures_and_recovery_codes",
    ),
    (_IgnoresExpiry, "test_activate_pending_at_or_after_expiry_returns_none_and_changes_nothing"),
    (
        _ActivatesUsedStep,
        "test_activate_pending_with_a_step_not_after_last_step_returns_none_and_changes_nothing",
    ),
    (_CountsRefusedAttempts, "test_charge_attempt_refuses_while_waiting_and_counts_nothing"),
    (_CountsRefusedAttempts, "test_charge_attempt_follows_throttle_allowance"),
    (
        _NeverLocksForGood,
        "test_charge_attempt_refuses_for_good_at_max_failures_and_counts_nothing",
    ),
    (
        _ReusableRecoveryCodes,
        "test_consume_recovery_code_twice_fails_the_second_time_and_changes_nothing",
    ),
    (_ResetForgetsLastStep, "test_reset_factor_keeps_used_time_steps_closed"),
    (_Truncates32BitSteps, "test_time_steps_beyond_32_bits_are_stored_exactly"),
    (_NewestFirstOnTies, "test_audit_records_at_the_same_time_keep_insertion_order"),
    (_IgnoresActorInUserFilter, "test_audit_records_filter_by_user_as_subject_or_actor"),
    (_FoldsCase, "test_identifiers_are_compared_exactly"),
    (_RacyCodeSuccess, "test_concurrent_record_code_success_of_one_step_accepts_it_once"),
    (_RacyRecoveryCode, "test_concurrent_consume_of_one_recovery_code_succeeds_once"),
    (_RacyCharge, "test_concurrent_charge_attempts_let_through_exactly_the_free_failures"),
    (_RacyActivation, "test_concurrent_activate_pending_of_one_enrollment_activates_once"),
]


@pytest.mark.parametrize(
    ("backend", "test_name"), _BROKEN, ids=[f"{b.__name__}-{t}" for b, t in _BROKEN]
)
def test_conformance_suite_fails_a_backend_that_breaks_the_contract(
    backend: Callable[[], MemoryStorage], test_name: str
) -> None:
    conformance_test: Callable[[Storage], None] = getattr(StorageConformance(), test_name)
    with pytest.raises(AssertionError):
        conformance_test(backend())
