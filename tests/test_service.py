"""Behaviour of the TwoFactor service that the guide story does not walk through."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import enroll_bob
from tenant2fa import (
    AuditKind,
    AuditQuery,
    Config,
    ConfigurationError,
    EnrollmentState,
    InMemoryNotifier,
    InvalidInput,
    InvalidSession,
    InvalidTransition,
    Keyring,
    MemoryStorage,
    NotAMember,
    Notification,
    NotificationKind,
    PermissionDenied,
    Reason,
    RecoveryCodeHasher,
    Role,
    StepKind,
    StepUpRequired,
    ThrottleRules,
    TwoFactor,
    TwoFactorRequired,
)
from tenant2fa.audit import new_audit_record
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for
from tenant2fa.testing.faults import FaultyStorage, StorageFault

if TYPE_CHECKING:
    from conftest import Enrolled


def _later(clock: FakeClock, seconds: int = 30) -> None:
    clock.advance(seconds=seconds)


# -- the toggle ------------------------------------------------------------------------------


def test_only_owners_toggle_and_a_refused_toggle_changes_and_audits_nothing(
    tf: TwoFactor,
) -> None:
    tf.create_tenant("A", name="Tenant A", owner_id="alice")
    tf.add_member("A", "adam", role=Role.ADMIN, operator="host")
    tf.add_member("A", "bob", operator="host")
    for actor in ("adam", "bob", "stranger"):
        with pytest.raises(PermissionDenied):
            tf.set_two_factor("A", actor_id=actor, enabled=True)
    assert tf.tenant("A").two_factor_required is False
    assert tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED})) == []


def test_each_toggle_writes_one_audit_record_with_actor_old_and_new(
    tf: TwoFactor, clock: FakeClock
) -> None:
    tf.create_tenant("A", name="Tenant A", owner_id="alice")
    tf.set_two_factor("A", actor_id="alice", enabled=True)
    tf.set_two_factor("A", actor_id="alice", enabled=True)  # no change: nothing written
    _later(clock)
    tf.set_two_factor("A", actor_id="alice", enabled=False)
    records = tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED}))
    assert [(r.actor_id, r.tenant_id, r.detail["old"], r.detail["new"]) for r in records] == [
        ("alice", "A", "off", "on"),
        ("alice", "A", "on", "off"),
    ]
    assert records[1].at == clock.now()
    assert tf.tenant("A").version == 2


def test_a_configured_role_set_lets_admins_toggle(clock: FakeClock) -> None:
    tf = TwoFactor(
        storage=MemoryStorage(),
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(toggle_roles=frozenset({Role.OWNER, Role.ADMIN})),
    )
    tf.create_tenant("A", name="A", owner_id="alice")
    tf.add_member("A", "adam", role=Role.ADMIN, operator="host")
    assert tf.set_two_factor("A", actor_id="adam", enabled=True).two_factor_required


def test_only_owners_and_admins_add_members_and_only_owners_add_owners(tf: TwoFactor) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    tf.add_member("A", "adam", role=Role.ADMIN, actor_id="alice")
    tf.add_member("A", "bob", actor_id="adam")
    with pytest.raises(PermissionDenied):
        tf.add_member("A", "mallory", role=Role.OWNER, actor_id="adam")
    with pytest.raises(PermissionDenied):
        tf.add_member("A", "eve", actor_id="bob")
    assert [m.user_id for m in tf.members("A")] == ["adam", "alice", "bob"]


# -- login sessions -----------------------------------------------------------------------------


def test_an_edited_login_session_is_refused_everywhere(enrolled: Enrolled, tf: TwoFactor) -> None:
    fresh = tf.start_session("bob")
    forged = dataclasses.replace(
        fresh, second_factor_at=fresh.authenticated_at, second_factor_epoch=1
    )
    with pytest.raises(InvalidSession):
        tf.login_step(forged, "B")
    with pytest.raises(InvalidSession):
        tf.verify_code(forged, "B", "123456")
    other_user = dataclasses.replace(enrolled.login, user_id="olga")
    with pytest.raises(InvalidSession):
        tf.login_step(other_user, "B")


def test_a_sealed_session_round_trips_and_rejects_tampering_and_other_users(
    enrolled: Enrolled, tf: TwoFactor
) -> None:
    token = tf.seal_session(enrolled.login)
    assert tf.open_session(token) == enrolled.login
    assert tf.open_session(token, user_id="bob") == enrolled.login
    with pytest.raises(InvalidSession):
        tf.open_session(token, user_id="olga")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidSession):
        tf.open_session(flipped)
    stranger = TwoFactor(storage=tf.storage, keyring=Keyring.generate(), clock=tf.clock)
    with pytest.raises(InvalidSession):
        stranger.open_session(token)
    for junk in ("", "not a token", "x" * 10_000):
        with pytest.raises(InvalidSession):
            tf.open_session(junk)


def test_login_step_for_a_tenant_the_user_is_not_in_raises(tf: TwoFactor) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    with pytest.raises(NotAMember):
        tf.login_step(tf.start_session("bob"), "A")


# -- enrollment ------------------------------------------------------------------------------


def test_begin_enrollment_needs_a_fresh_identity(tf: TwoFactor, clock: FakeClock) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    tf.add_member("A", "bob", operator="host")
    login = tf.start_session("bob")
    _later(clock)
    tf.set_two_factor("A", actor_id="alice", enabled=True)
    with pytest.raises(StepUpRequired) as raised:
        tf.begin_enrollment(login)
    assert raised.value.step is StepKind.VERIFY_IDENTITY
    _later(clock)
    login = tf.verify_identity(login, method="microsoft")
    _later(clock, 11 * 60)  # past the 10-minute re-authentication window
    assert tf.login_step(login, "A").kind is StepKind.VERIFY_IDENTITY
    with pytest.raises(StepUpRequired):
        tf.begin_enrollment(login)


def test_a_pending_enrollment_expires_and_then_cannot_be_confirmed(
    tf: TwoFactor, clock: FakeClock
) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    login = tf.start_session("alice")
    provisioning = tf.begin_enrollment(login)
    code = pending_code_for(tf, "alice")
    clock.set(provisioning.expires_at)
    result = tf.confirm_enrollment(login, code)
    assert result.reason is Reason.NOT_PENDING
    assert tf.user_status("alice").state is EnrollmentState.NONE


def test_beginning_again_replaces_the_pending_secret(tf: TwoFactor) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    login = tf.start_session("alice")
    tf.begin_enrollment(login)
    first_tab_code = pending_code_for(tf, "alice")
    second = tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, first_tab_code).reason is Reason.INVALID
    assert tf.storage.get_factor("alice").pending is not None
    assert tf.storage.get_factor("alice").pending.pending_id == second.pending_id  # type: ignore[union-attr]
    assert tf.confirm_enrollment(login, pending_code_for(tf, "alice")).ok


def test_replacing_an_authenticator_needs_a_proven_second_factor_and_keeps_the_old_one_until_confirmed(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    _later(clock)
    password_only = tf.start_session("bob")
    with pytest.raises(StepUpRequired) as raised:
        tf.begin_enrollment(password_only)
    assert raised.value.step is StepKind.CHALLENGE

    _later(clock)
    tf.begin_enrollment(enrolled.login)
    assert tf.user_status("bob").state is EnrollmentState.REPLACING
    pending_code = pending_code_for(tf, "bob")
    # The pending secret cannot log in; the old one still can.
    fresh = tf.start_session("bob")
    if pending_code != code_for(tf, "bob"):
        assert tf.verify_code(fresh, "B", pending_code).reason is Reason.INVALID
    assert tf.verify_code(fresh, "B", code_for(tf, "bob")).ok
    _later(clock)
    confirmed = tf.confirm_enrollment(enrolled.login, pending_code_for(tf, "bob"))
    assert confirmed.ok
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE
    assert set(confirmed.recovery_codes).isdisjoint(enrolled.recovery_codes)


def test_confirming_twice_is_refused_and_nothing_changes(enrolled: Enrolled, tf: TwoFactor) -> None:
    before = tf.storage.get_factor("bob")
    assert tf.confirm_enrollment(enrolled.login, "123456").reason is Reason.NOT_PENDING
    assert tf.storage.get_factor("bob") == before


# -- the flow across tenants and epochs --------------------------------------------------------


def test_switching_on_in_b_prompts_in_a_and_switching_off_keeps_the_enrollment_dormant(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    _later(clock)
    tf.set_two_factor("B", actor_id="olga", enabled=False)
    login = tf.start_session("bob")
    assert tf.login_step(login, "B").kind is StepKind.DONE
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE
    _later(clock)
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    _later(clock)
    fresh = tf.start_session("bob")
    assert tf.login_step(fresh, "B").kind is StepKind.CHALLENGE  # no re-enrollment needed
    assert tf.login_step(fresh, "A").kind is StepKind.DONE  # A does not require it


def test_challenge_everywhere_asks_enrolled_users_in_every_tenant(clock: FakeClock) -> None:
    tf = TwoFactor(
        storage=MemoryStorage(),
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(challenge_everywhere=True, recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    tf.create_tenant("A", name="A", owner_id="alice")
    login = tf.start_session("alice")
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, pending_code_for(tf, "alice")).ok
    _later(clock)
    assert tf.login_step(tf.start_session("alice"), "A").kind is StepKind.CHALLENGE


def test_a_grace_period_lets_users_defer_until_it_ends(tf: TwoFactor, clock: FakeClock) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    tf.add_member("A", "bob", operator="host")
    tf.set_two_factor("A", actor_id="alice", enabled=True, grace_period=timedelta(days=7))
    _later(clock)
    login = tf.start_session("bob")
    step = tf.login_step(login, "A")
    assert step.kind is StepKind.ENROLL
    assert step.skippable
    assert step.enroll_by == tf.tenant("A").activated_at + timedelta(days=7)  # type: ignore[operator]
    login = tf.defer_enrollment(login, "A")
    assert tf.login_step(login, "A").kind is StepKind.DONE
    clock.set(step.enroll_by)
    login = tf.verify_identity(login)
    after = tf.login_step(login, "A")
    assert after.kind is StepKind.ENROLL
    assert not after.skippable
    with pytest.raises(PermissionDenied):
        tf.defer_enrollment(login, "A")


def test_without_a_grace_period_enrolling_cannot_be_deferred(
    tf: TwoFactor, clock: FakeClock
) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    tf.set_two_factor("A", actor_id="alice", enabled=True)
    _later(clock)
    with pytest.raises(PermissionDenied):
        tf.defer_enrollment(tf.start_session("alice"), "A")


# -- reset and removal -------------------------------------------------------------------------


def test_owner_reset_voids_every_proof_notifies_and_the_user_reenrolls(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock, notifier: InMemoryNotifier
) -> None:
    _later(clock)
    tf.reset_two_factor("B", "bob", actor_id="olga")
    assert tf.user_status("bob").state is EnrollmentState.NONE
    # The login that had proven the second factor no longer counts, and its identity check
    # predates the reset: bob verifies his identity again, then enrolls again.
    assert tf.login_step(enrolled.login, "B").kind is StepKind.VERIFY_IDENTITY
    assert tf.login_step(enrolled.login, "A").kind is StepKind.VERIFY_IDENTITY
    assert tf.login_step(tf.verify_identity(enrolled.login), "B").kind is StepKind.ENROLL
    note = notifier.for_user("bob")[-1]
    assert note.kind is NotificationKind.TWO_FACTOR_RESET
    assert note.actor_id == "olga"
    assert note.tenant_name == "Tenant B"
    record = tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_RESET}))[0]
    assert (record.actor_id, record.user_id, record.tenant_id) == ("olga", "bob", "B")
    # Old recovery codes died with the reset.
    _later(clock)
    login = tf.start_session("bob")
    assert tf.use_recovery_code(login, "B", enrolled.recovery_codes[0]).reason is Reason.INVALID
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, pending_code_for(tf, "bob")).ok


def test_reset_is_owner_only_not_for_oneself_and_not_for_nothing(
    enrolled: Enrolled, tf: TwoFactor
) -> None:
    tf.add_member("B", "carol", operator="host")
    with pytest.raises(PermissionDenied):
        tf.reset_two_factor("B", "bob", actor_id="carol")
    with pytest.raises(PermissionDenied):
        tf.reset_two_factor("A", "bob", actor_id="olga")  # olga is not an owner of A
    with pytest.raises(PermissionDenied):
        tf.reset_two_factor("B", "olga", actor_id="olga")
    with pytest.raises(InvalidTransition):
        tf.reset_two_factor("B", "carol", actor_id="olga")
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE


def test_removing_ones_own_2fa_needs_no_requiring_tenant_fresh_identity_and_proof(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock, notifier: InMemoryNotifier
) -> None:
    with pytest.raises(TwoFactorRequired):
        tf.remove_two_factor(enrolled.login)
    tf.set_two_factor("B", actor_id="olga", enabled=False)
    _later(clock)
    with pytest.raises(StepUpRequired):
        tf.remove_two_factor(tf.start_session("bob"))  # password only: no proof
    _later(clock, 11 * 60)
    with pytest.raises(StepUpRequired):
        tf.remove_two_factor(enrolled.login)  # proof, but the identity check is stale
    login = tf.verify_identity(enrolled.login)
    login = tf.remove_two_factor(login)
    assert login.second_factor_at is None
    assert tf.user_status("bob").state is EnrollmentState.NONE
    assert notifier.for_user("bob")[-1].kind is NotificationKind.TWO_FACTOR_REMOVED


def test_regenerating_recovery_codes_kills_the_old_ones_and_other_logins_proofs(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    _later(clock)
    other = tf.start_session("bob")
    other = tf.verify_code(other, "B", code_for(tf, "bob")).login
    assert tf.login_step(other, "B").kind is StepKind.DONE
    login, codes = tf.regenerate_recovery_codes(enrolled.login)
    assert tf.login_step(login, "B").kind is StepKind.DONE
    assert tf.login_step(other, "B").kind is StepKind.CHALLENGE
    fresh = tf.start_session("bob")
    assert tf.use_recovery_code(fresh, "B", enrolled.recovery_codes[0]).reason is Reason.INVALID
    assert tf.use_recovery_code(fresh, "B", codes[0]).ok


# -- throttling ------------------------------------------------------------------------------


def _wrong(tf: TwoFactor, user_id: str) -> str:
    right = code_for(tf, user_id)
    neighbours = {code_for(tf, user_id, offset=o) for o in (-1, 0, 1)}
    candidate = int(right)
    while f"{candidate:06d}" in neighbours:
        candidate = (candidate + 1) % 1_000_000
    return f"{candidate:06d}"


def test_failures_back_off_exponentially_and_lock_at_the_limit(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock, notifier: InMemoryNotifier
) -> None:
    rules = tf.config.throttle
    login = tf.start_session("bob")
    evaluated = 0
    for _ in range(250):
        status = tf.user_status("bob")
        if status.locked and status.retry_at is None:
            break
        if status.retry_at is not None:
            clock.set(status.retry_at)
            login = tf.verify_identity(login)  # days pass: the login would expire
        result = tf.verify_code(login, "B", _wrong(tf, "bob"))
        assert result.reason is Reason.INVALID
        evaluated += 1
        if evaluated > rules.free_failures:
            # Straight after a failure beyond the free ones, the next try is refused unevaluated.
            refused = tf.verify_code(login, "B", code_for(tf, "bob"))
            assert refused.reason is Reason.LOCKED
            if evaluated < rules.max_failures:
                assert refused.retry_at == clock.now() + rules.delay_after(evaluated)
            else:
                assert refused.retry_at is None
    assert evaluated == rules.max_failures
    # Locked for good: even the right code, hours later, is refused and not evaluated.
    clock.advance(timedelta(days=30))
    login = tf.verify_identity(login)
    assert tf.verify_code(login, "B", code_for(tf, "bob")).reason is Reason.LOCKED
    assert tf.use_recovery_code(login, "B", enrolled.recovery_codes[0]).reason is Reason.LOCKED
    step = tf.login_step(login, "B")
    assert step.kind is StepKind.LOCKED
    assert step.retry_at is None
    lock_notes = [n for n in notifier.for_user("bob") if n.kind is NotificationKind.LOCKED_OUT]
    assert len(lock_notes) == 2  # when the back-off starts, and at the hard limit
    assert lock_notes[-1].retry_at is None
    # Only an unlock by the operator lets bob back in (olga does not own A, which bob is in;
    # test_tenant_authority.py has the owners' side), and his authenticator still works.
    clock.advance(seconds=30)
    assert tf.unlock("B", "bob", operator="support:jane")
    assert not tf.user_status("bob").locked
    assert tf.verify_code(login, "B", code_for(tf, "bob")).ok


def test_a_lockout_shows_as_the_locked_step_with_its_retry_time(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    login = tf.start_session("bob")
    for _ in range(tf.config.throttle.free_failures):
        assert tf.verify_code(login, "B", _wrong(tf, "bob")).reason is Reason.INVALID
    step = tf.login_step(login, "B")
    assert step.kind is StepKind.LOCKED
    assert step.retry_at == clock.now() + tf.config.throttle.base_delay
    clock.set(step.retry_at)
    assert tf.login_step(login, "B").kind is StepKind.CHALLENGE


def test_every_code_path_shares_one_counter_and_success_resets_it(
    tf: TwoFactor, clock: FakeClock
) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    tf.set_two_factor("A", actor_id="alice", enabled=True)
    _later(clock)
    login = tf.start_session("alice")
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, "000000").reason in (Reason.INVALID, Reason.OK)
    assert tf.user_status("alice").failures == 1
    result = tf.confirm_enrollment(login, pending_code_for(tf, "alice"))
    assert result.ok
    assert tf.user_status("alice").failures == 0
    _later(clock)
    fresh = tf.start_session("alice")
    tf.verify_code(fresh, "A", _wrong(tf, "alice"))
    tf.use_recovery_code(fresh, "A", "AAAA-AAAA-AAAA-AAAA")
    assert tf.user_status("alice").failures == 2
    # A new login session or a new pending enrollment does not reset the counter.
    tf.begin_enrollment(result.login)
    assert tf.user_status("alice").failures == 2
    assert tf.use_recovery_code(tf.start_session("alice"), "A", result.recovery_codes[0]).ok
    assert tf.user_status("alice").failures == 0


def test_one_users_success_does_not_reset_another_users_counter(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    olga = tf.start_session("olga")
    tf.begin_enrollment(olga)
    assert tf.confirm_enrollment(olga, pending_code_for(tf, "olga")).ok
    _later(clock)
    bob = tf.start_session("bob")
    tf.verify_code(bob, "B", _wrong(tf, "bob"))
    tf.verify_code(bob, "B", _wrong(tf, "bob"))
    assert tf.verify_code(tf.start_session("olga"), "B", code_for(tf, "olga")).ok
    assert tf.user_status("bob").failures == 2


def test_throttle_rules_refuse_more_than_nists_hundred_failures() -> None:
    with pytest.raises(ConfigurationError, match="NIST"):
        ThrottleRules(max_failures=101)


# -- recovery codes ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _CountingHasher(RecoveryCodeHasher):
    calls: list[int] = dataclasses.field(default_factory=list)

    def digest(self, canonical_code: str, salt: bytes) -> bytes:
        self.calls.append(1)
        return RecoveryCodeHasher.digest(self, canonical_code, salt)


def test_a_recovery_code_attempt_costs_one_hash_however_many_codes_are_left(
    clock: FakeClock,
) -> None:
    hasher = _CountingHasher(n=2**4)
    tf = TwoFactor(
        storage=MemoryStorage(),
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(recovery_hasher=hasher, recovery_code_count=10),
    )
    tf.create_tenant("A", name="A", owner_id="alice")
    login = tf.start_session("alice")
    tf.begin_enrollment(login)
    codes = tf.confirm_enrollment(login, pending_code_for(tf, "alice")).recovery_codes
    hasher.calls.clear()
    tf.use_recovery_code(login, "A", "0000-0000-0000-0000")
    assert len(hasher.calls) == 1
    hasher.calls.clear()
    assert tf.use_recovery_code(login, "A", codes[-1]).ok
    assert len(hasher.calls) == 1


def test_recovery_codes_are_single_use_and_the_others_keep_working(
    enrolled: Enrolled, tf: TwoFactor, notifier: InMemoryNotifier
) -> None:
    login = tf.start_session("bob")
    first = tf.use_recovery_code(login, "B", enrolled.recovery_codes[0])
    assert first.ok
    assert first.recovery_codes_left == 9
    assert tf.login_step(first.login, "B").kind is StepKind.DONE
    assert tf.use_recovery_code(login, "B", enrolled.recovery_codes[0]).reason is Reason.INVALID
    # The documented normalisation: case, spaces, dashes and Crockford look-alikes.
    variant = enrolled.recovery_codes[1].lower().replace("-", " ")
    assert tf.use_recovery_code(login, "B", variant).ok
    note = notifier.for_user("bob")[-1]
    assert note.kind is NotificationKind.RECOVERY_CODE_USED
    assert note.recovery_codes_left == 8
    assert len(tf.audit_log(kinds=frozenset({AuditKind.RECOVERY_CODE_USED}))) == 2


def test_recovery_codes_have_80_bits_and_are_stored_only_as_hashes(
    enrolled: Enrolled, tf: TwoFactor
) -> None:
    assert len(enrolled.recovery_codes) == 10
    assert all(len(c.replace("-", "")) == 16 for c in enrolled.recovery_codes)
    storage = tf.storage
    assert isinstance(storage, MemoryStorage)
    salt = storage.get_factor("bob").recovery_salt
    assert salt is not None
    stored = storage._recovery["bob"]
    assert len(stored) == 10
    everything = repr(vars(storage))
    for code in enrolled.recovery_codes:
        canonical = code.replace("-", "")
        assert tf.config.recovery_hasher.digest(canonical, salt) in stored
        assert code not in everything
        assert canonical not in everything


# -- failure handling -----------------------------------------------------------------------------


class _BrokenNotifier:
    def __init__(self) -> None:
        self.tried: list[Notification] = []

    def notify(self, notification: Notification) -> None:
        self.tried.append(notification)
        raise ConnectionError("mail server down")


def test_a_failing_notifier_never_undoes_the_change(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = _BrokenNotifier()
    tf = TwoFactor(
        storage=MemoryStorage(),
        keyring=Keyring.generate(),
        clock=clock,
        notifier=notifier,
        config=Config(recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    tf.create_tenant("A", name="A", owner_id="alice")
    login = tf.start_session("alice")
    tf.begin_enrollment(login)
    with caplog.at_level(logging.WARNING, logger="tenant2fa"):
        assert tf.confirm_enrollment(login, pending_code_for(tf, "alice")).ok
    assert tf.user_status("alice").state is EnrollmentState.ACTIVE
    assert [n.kind for n in notifier.tried] == [NotificationKind.TWO_FACTOR_ENABLED]
    assert "ConnectionError" in caplog.text


@pytest.mark.parametrize("method", ["load_login", "commit_factor"])
def test_verification_fails_closed_on_any_storage_error(
    enrolled: Enrolled, clock: FakeClock, method: str
) -> None:
    faulty = FaultyStorage(MemoryStorage())
    tf = TwoFactor(
        storage=faulty,
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    tf.create_tenant("A", name="A", owner_id="alice")
    tf.set_two_factor("A", actor_id="alice", enabled=True)
    _later(clock)
    login = tf.start_session("alice")
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, pending_code_for(tf, "alice")).ok
    _later(clock)
    fresh = tf.start_session("alice")
    code = code_for(tf, "alice")
    faulty.arm(StorageFault(method=method))
    result = tf.verify_code(fresh, "A", code)
    assert not result.ok
    assert result.reason is Reason.UNAVAILABLE
    assert faulty.tripped
    faulty.arm(None)
    # Nothing was accepted, so once storage is back the same code works exactly once.
    assert tf.verify_code(fresh, "A", code).ok
    assert not tf.verify_code(fresh, "A", code).ok


def test_a_ciphertext_copied_onto_another_users_row_does_not_verify(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    olga = tf.start_session("olga")
    tf.begin_enrollment(olga)
    assert tf.confirm_enrollment(olga, pending_code_for(tf, "olga")).ok
    storage = tf.storage
    assert isinstance(storage, MemoryStorage)
    bob_secret = storage.get_factor("bob").secret
    olga_factor = storage.get_factor("olga")
    storage._factors["olga"] = dataclasses.replace(olga_factor, secret=bob_secret)
    _later(clock)
    bobs_code = code_for(tf, "bob")
    result = tf.verify_code(tf.start_session("olga"), "B", bobs_code)
    assert result.reason is Reason.UNAVAILABLE
    assert not result.ok


def test_rotating_the_keyring_keeps_old_secrets_working(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    rotated = tf.keyring.with_key("k2", Keyring.new_key())
    assert rotated.primary_key_id == "k2"
    tf2 = TwoFactor(storage=tf.storage, keyring=rotated, clock=clock, config=tf.config)
    _later(clock)
    login = tf2.start_session("bob")
    assert tf2.verify_code(login, "B", code_for(tf, "bob")).ok
    # New secrets are sealed with the new key.
    _later(clock)
    tf2.create_tenant("C", name="C", owner_id="carol")
    carol = tf2.start_session("carol")
    tf2.begin_enrollment(carol)
    pending = tf2.storage.get_factor("carol").pending
    assert pending is not None
    assert rotated.key_id_of(pending.secret) == "k2"


@pytest.mark.parametrize("issuer", ["", " Onum", "Onum ", "On:um", "On\num"])
def test_an_issuer_authenticator_apps_cannot_show_is_refused_at_configuration(issuer: str) -> None:
    with pytest.raises(ConfigurationError):
        Config(issuer=issuer)


def test_codes_for_a_user_with_nothing_enrolled_are_invalid_and_never_lock_them(
    tf: TwoFactor, clock: FakeClock
) -> None:
    tf.create_tenant("B", name="B", owner_id="olga")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    _later(clock)
    login = tf.start_session("bob")
    for n in range(tf.config.throttle.max_failures + 10):
        assert tf.verify_code(login, "B", f"{n:06d}").reason is Reason.INVALID
        assert tf.use_recovery_code(login, "B", "AAAA-AAAA-AAAA-AAAA").reason is Reason.INVALID
    assert tf.user_status("bob").failures == 0
    assert tf.login_step(login, "B").kind is StepKind.ENROLL


def test_an_owner_reset_lets_in_a_user_locked_by_confirmation_codes_of_an_expired_secret(
    clock: FakeClock,
) -> None:
    tf = TwoFactor(
        storage=MemoryStorage(),
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(
            throttle=ThrottleRules(free_failures=2, max_failures=3),
            recovery_hasher=RecoveryCodeHasher(n=2**4),
        ),
    )
    tf.create_tenant("B", name="B", owner_id="olga")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    _later(clock)
    login = tf.start_session("bob")
    provisioning = tf.begin_enrollment(login)
    wrong = f"{(int(pending_code_for(tf, 'bob')) + 500_000) % 1_000_000:06d}"
    while not tf.user_status("bob").locked or tf.user_status("bob").retry_at is not None:
        status = tf.user_status("bob")
        if status.retry_at is not None:
            clock.set(status.retry_at)
        assert tf.confirm_enrollment(login, wrong).reason is Reason.INVALID
    clock.set(provisioning.expires_at)
    assert tf.user_status("bob").state is EnrollmentState.NONE
    login = tf.verify_identity(login)
    assert tf.login_step(login, "B").kind is StepKind.LOCKED
    tf.reset_two_factor("B", "bob", actor_id="olga")
    assert tf.user_status("bob").failures == 0
    assert tf.login_step(login, "B").kind is StepKind.ENROLL
    with pytest.raises(InvalidTransition):  # and now there is nothing left to reset
        tf.reset_two_factor("B", "bob", actor_id="olga")


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_whole_flow_works_at_t_20000000000_beyond_32_bits(backend: str, tmp_path: Path) -> None:
    clock = FakeClock()
    clock.set_timestamp(20_000_000_000)  # 2603-10-11 11:33:20 UTC, T = 666666666 > 2**32 / 30
    storage = MemoryStorage() if backend == "memory" else SQLiteStorage(tmp_path / "f.db")
    tf = TwoFactor(
        storage=storage,
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    tf.create_tenant("B", name="B", owner_id="olga")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    _later(clock, 1)
    login = tf.start_session("olga")
    assert tf.login_step(login, "B").kind is StepKind.ENROLL
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, pending_code_for(tf, "olga")).ok
    assert tf.storage.get_factor("olga").last_step == (20_000_000_001 // 30)
    _later(clock)
    fresh = tf.start_session("olga")
    code = code_for(tf, "olga")
    assert tf.verify_code(fresh, "B", code).ok
    assert tf.verify_code(fresh, "B", code).reason is Reason.INVALID


def test_a_replacement_can_only_be_confirmed_by_a_login_that_proved_the_current_authenticator(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    _later(clock)
    tf.begin_enrollment(enrolled.login)  # bob's proven login starts replacing his phone
    password_only = tf.start_session("bob")
    with pytest.raises(StepUpRequired) as raised:
        tf.confirm_enrollment(password_only, pending_code_for(tf, "bob"))
    assert raised.value.step is StepKind.CHALLENGE
    assert tf.user_status("bob").state is EnrollmentState.REPLACING
    assert tf.user_status("bob").failures == 0
    assert tf.confirm_enrollment(enrolled.login, pending_code_for(tf, "bob")).ok


def test_the_audit_log_answers_by_tenant_user_kind_time_range_and_page(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    start = clock.now()
    # olga owns both of bob's tenants, so she may reset him once A requires 2FA too.
    tf.add_member("A", "olga", role=Role.OWNER, actor_id="alice")
    _later(clock, 60)
    middle = clock.now()
    tf.set_two_factor("A", actor_id="alice", enabled=True)
    _later(clock, 60)
    tf.reset_two_factor("B", "bob", actor_id="olga")
    everything = tf.audit_log(limit=1000)
    assert [r.at for r in everything] == sorted(r.at for r in everything)
    assert all(r.at.tzinfo is not None for r in everything)

    switched = tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED}))
    assert [(r.tenant_id, r.actor_id) for r in switched] == [("B", "olga"), ("A", "alice")]
    assert [r.kind for r in tf.audit_log(tenant_id="A", since=middle)] == [
        AuditKind.TWO_FACTOR_SWITCHED
    ]
    about_bob = tf.audit_log(user_id="bob")
    assert AuditKind.TWO_FACTOR_RESET in {r.kind for r in about_bob}
    assert all("bob" in (r.user_id, r.actor_id) for r in about_bob)
    by_olga = tf.audit_log(user_id="olga", kinds=frozenset({AuditKind.TWO_FACTOR_RESET}))
    assert [(r.user_id, r.actor_id) for r in by_olga] == [("bob", "olga")]
    assert tf.audit_log(until=everything[0].at) == []  # the bound is exclusive
    before_middle = tf.audit_log(since=start, until=middle, limit=1000)
    assert before_middle == [r for r in everything if start <= r.at < middle]
    pages = [tf.audit_log(limit=3, offset=offset) for offset in range(0, len(everything), 3)]
    assert [r for page in pages for r in page] == everything
    with pytest.raises(InvalidInput):
        tf.audit_log(AuditQuery(), tenant_id="A")


def test_a_sealed_session_expires_after_its_max_age(
    enrolled: Enrolled, tf: TwoFactor, clock: FakeClock
) -> None:
    token = tf.seal_session(enrolled.login)
    clock.advance(timedelta(hours=12))
    assert tf.open_session(token) == enrolled.login
    clock.advance(seconds=1)
    with pytest.raises(InvalidSession, match="expired"):
        tf.open_session(token)
    assert tf.open_session(token, max_age=timedelta(days=1)) == enrolled.login
    assert tf.open_session(token, max_age=None) == enrolled.login
    clock.set(enrolled.login.authenticated_at - timedelta(minutes=1))  # a token from the future
    with pytest.raises(InvalidSession):
        tf.open_session(token)


class _SwitchesOnBeforeTheRemoval(MemoryStorage):
    """An owner switches 2FA on in tenant B between the removal's read and its write."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def reset_factor(self, user_id: str, **kwargs: object) -> int | None:
        if self.armed:
            self.armed = False
            policy = self.get_tenant("B")
            assert policy is not None
            switched = dataclasses.replace(
                policy, two_factor_required=True, version=policy.version + 1
            )
            assert self.update_tenant_policy(
                switched,
                expected_version=policy.version,
                audit=new_audit_record(AuditKind.TWO_FACTOR_SWITCHED, at=FakeClock().now()),
            )
        return super().reset_factor(user_id, **kwargs)  # type: ignore[arg-type]


def test_removing_ones_own_2fa_is_refused_if_a_tenant_requires_it_by_the_time_it_is_written(
    clock: FakeClock,
) -> None:
    storage = _SwitchesOnBeforeTheRemoval()
    tf = TwoFactor(
        storage=storage,
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    enrolled = enroll_bob(tf, clock)
    tf.set_two_factor("B", actor_id="olga", enabled=False)
    login = tf.verify_identity(enrolled.login)
    storage.armed = True
    with pytest.raises(TwoFactorRequired):
        tf.remove_two_factor(login)
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE
    assert tf.tenant("B").two_factor_required
