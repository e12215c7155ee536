"""MemoryStorage against the storage conformance suite, and the suite against broken backends.

The second half checks the suite itself: each deliberately broken backend below breaks one
contract, and the conformance test for that contract must fail against it. The racy one checks
the revision and then writes outside the lock, with the first two threads held until both have
checked, so the lost update happens on every run rather than by luck.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import pytest

from tenant2fa.audit import AuditQuery, AuditRecord
from tenant2fa.notify import Notification
from tenant2fa.policy import Membership, Standing, TenantPolicy
from tenant2fa.storage import FactorCommit, FactorRecord, LoginState, Storage
from tenant2fa.storage.memory import MemoryStorage
from tenant2fa.testing.conformance import StorageConformance


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


def _rebased(commit: FactorCommit, revision: int) -> FactorCommit:
    """``commit`` as if decided at ``revision``."""
    factor = dataclasses.replace(commit.factor, revision=revision + 1)
    return dataclasses.replace(commit, factor=factor, expected_revision=revision)


class _DropsTheFloorOnCommit(MemoryStorage):
    def commit_factor(self, commit: FactorCommit) -> bool:
        factor = dataclasses.replace(commit.factor, identity_floor=None)
        return super().commit_factor(dataclasses.replace(commit, factor=factor))


class _IgnoresTheRevision(MemoryStorage):
    def commit_factor(self, commit: FactorCommit) -> bool:
        with self._lock:
            stored = self._factor(commit.factor.user_id).revision
        return super().commit_factor(_rebased(commit, stored))


class _AuditsRefusedCommits(MemoryStorage):
    def commit_factor(self, commit: FactorCommit) -> bool:
        written = super().commit_factor(commit)
        if not written:
            for record in commit.audit:
                self.append_audit(record)
        return written


class _ReusableRecoveryCodes(MemoryStorage):
    def commit_factor(self, commit: FactorCommit) -> bool:
        return super().commit_factor(dataclasses.replace(commit, use_recovery_code=None))


class _AddsRecoveryCodes(MemoryStorage):
    def commit_factor(self, commit: FactorCommit) -> bool:
        with self._lock:
            old = dict(self._recovery.get(commit.factor.user_id, {}))
        written = super().commit_factor(commit)
        if written and commit.recovery is not None:
            with self._lock:
                self._recovery[commit.factor.user_id].update(old)
        return written


class _ShowsUsedCodes(MemoryStorage):
    def load_login(self, user_id: str, *, recovery_codes: bool = False) -> LoginState:
        state = super().load_login(user_id, recovery_codes=recovery_codes)
        if not recovery_codes:
            return state
        with self._lock:
            every = tuple(self._recovery.get(user_id, {}))
        return dataclasses.replace(state, recovery_digests=every)


class _TenantsUnordered(MemoryStorage):
    def load_login(self, user_id: str, *, recovery_codes: bool = False) -> LoginState:
        state = super().load_login(user_id, recovery_codes=recovery_codes)
        return dataclasses.replace(state, tenants=state.tenants[::-1])


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


class _UnlockKeepsTheRevision(MemoryStorage):
    def unlock_factor(
        self,
        user_id: str,
        *,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor_id: str | None = None,
        expected: Sequence[Standing] | None = None,
    ) -> bool:
        with self._lock:
            revision = self._factor(user_id).revision
        unlocked = super().unlock_factor(
            user_id, audit=audit, notifications=notifications, actor_id=actor_id, expected=expected
        )
        with self._lock:
            self._factors[user_id] = dataclasses.replace(self._factor(user_id), revision=revision)
        return unlocked


class _Truncates32BitSteps(MemoryStorage):
    # Like a 32-bit INTEGER column for last_step.
    def commit_factor(self, commit: FactorCommit) -> bool:
        factor = dataclasses.replace(commit.factor, last_step=commit.factor.last_step % 2**32)
        return super().commit_factor(dataclasses.replace(commit, factor=factor))


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


class _RacyCommit(MemoryStorage):
    """Checks the revision, then writes outside the lock, with the first two threads held
    after their check until both have checked: the lost update happens on every run."""

    def __init__(self) -> None:
        super().__init__()
        self._pair = threading.Barrier(2)
        self._arrivals = 0
        self._arrivals_lock = threading.Lock()

    def commit_factor(self, commit: FactorCommit) -> bool:
        user_id = commit.factor.user_id
        if self.get_factor(user_id).revision != commit.expected_revision:
            return False
        if threading.current_thread() is not threading.main_thread():  # the racing threads
            with self._arrivals_lock:
                self._arrivals += 1
                held = self._arrivals <= 2
            if held:
                self._pair.wait(timeout=30)
        with self._lock:
            # Written as if the check still held, nothing checked again.
            self._factors[user_id] = commit.factor
            codes = self._recovery.setdefault(user_id, {})
            if commit.use_recovery_code is not None:
                codes[commit.use_recovery_code] = True
            if commit.recovery is not None:
                self._recovery[user_id] = dict.fromkeys(commit.recovery.digests, False)
            self._audit.extend(commit.audit)
        return True


_BROKEN: list[tuple[Callable[[], MemoryStorage], str]] = [
    (
        _AuditsRefusedPolicyUpdate,
        "test_update_tenant_policy_with_a_stale_version_returns_false_and_changes_nothing",
    ),
    (
        _DropsTheFloorOnCommit,
        "test_commit_factor_of_a_new_user_stores_the_record_whole_with_audit_and_notifications",
    ),
    (
        _IgnoresTheRevision,
        "test_commit_factor_from_a_stale_revision_returns_false_and_changes_nothing",
    ),
    (
        _AuditsRefusedCommits,
        "test_commit_factor_from_a_stale_revision_returns_false_and_changes_nothing",
    ),
    (_ReusableRecoveryCodes, "test_commit_factor_marks_exactly_the_used_recovery_code_used"),
    (_AddsRecoveryCodes, "test_commit_factor_with_recovery_codes_replaces_all_of_them"),
    (
        _ShowsUsedCodes,
        "test_load_login_holds_the_factor_as_get_factor_does_and_the_unused_codes",
    ),
    (
        _TenantsUnordered,
        "test_load_login_holds_the_users_tenants_in_id_order_with_roles_and_policies",
    ),
    (_ResetForgetsLastStep, "test_reset_factor_keeps_used_time_steps_closed"),
    (_UnlockKeepsTheRevision, "test_every_other_write_of_the_factor_moves_its_revision"),
    (_Truncates32BitSteps, "test_time_steps_beyond_32_bits_are_stored_exactly"),
    (_NewestFirstOnTies, "test_audit_records_at_the_same_time_keep_insertion_order"),
    (_IgnoresActorInUserFilter, "test_audit_records_filter_by_user_as_subject_or_actor"),
    (_FoldsCase, "test_identifiers_are_compared_exactly"),
    (_RacyCommit, "test_concurrent_acceptance_of_one_time_step_accepts_it_once"),
    (_RacyCommit, "test_concurrent_consume_of_one_recovery_code_succeeds_once"),
    (_RacyCommit, "test_concurrent_charge_attempts_let_through_exactly_the_free_failures"),
    (_RacyCommit, "test_concurrent_activation_of_one_pending_enrollment_activates_once"),
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
