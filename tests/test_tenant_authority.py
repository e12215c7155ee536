"""Tenant authority (issue 10): no tenant's owner can weaken another tenant's 2FA.

Each attack of the issue is a test here, tried as a newcomer would, through the public API; those
that involve storage run on every backend (memory, SQLite, SQLAlchemy on SQLite, PostgreSQL,
MariaDB). The membership lifecycle, unlocking, the identity floor a reset raises, login expiry
and bounded grace periods are here too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from db_backends import any_backend  # noqa: F401 - a fixture
from tenant2fa import (
    AuditKind,
    Config,
    EnrollmentState,
    InMemoryNotifier,
    InvalidInput,
    Keyring,
    LastOwner,
    LoginSession,
    MemoryStorage,
    NotAMember,
    NotificationKind,
    PermissionDenied,
    Reason,
    RecoveryCodeHasher,
    Role,
    StepKind,
    StepUpRequired,
    Storage,
    TwoFactor,
    UnknownTenant,
)
from tenant2fa.audit import new_audit_record
from tenant2fa.policy import MEMBER_RULES, Action, Membership, check_member_action
from tenant2fa.testing import FakeClock, code_for, pending_code_for

CONFIG = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))


@dataclass
class World:
    """Tenant B (owner olga, 2FA on) and A (owner alice, 2FA off); bob, a member of both, is
    enrolled and signed in with his second factor proven."""

    tf: TwoFactor
    clock: FakeClock
    notifier: InMemoryNotifier
    bob: LoginSession
    recovery_codes: tuple[str, ...]


def _world(storage: Storage, config: Config = CONFIG, grace: timedelta | None = None) -> World:
    clock = FakeClock()
    notifier = InMemoryNotifier()
    tf = TwoFactor(
        storage=storage, keyring=Keyring.generate(), notifier=notifier, clock=clock, config=config
    )
    tf.create_tenant("A", name="Tenant A", owner_id="alice")
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.add_member("A", "bob", actor_id="alice")
    tf.add_member("B", "bob", actor_id="olga")
    tf.set_two_factor("B", actor_id="olga", enabled=True, grace_period=grace)
    clock.advance(seconds=1)
    login = tf.start_session("bob")
    tf.begin_enrollment(login)
    enrolled = tf.confirm_enrollment(login, pending_code_for(tf, "bob"))
    assert enrolled.ok
    clock.advance(seconds=30)
    return World(tf, clock, notifier, enrolled.login, enrolled.recovery_codes)


@pytest.fixture
def world(any_backend: Storage) -> World:  # noqa: F811 - the imported fixture
    return _world(any_backend)


def _mallory_adds_bob(tf: TwoFactor) -> None:
    tf.create_tenant("M", name="Mallory's", owner_id="mallory")
    tf.add_member("M", "bob", actor_id="mallory")


def _records(tf: TwoFactor, kind: AuditKind) -> list[object]:
    return list(tf.audit_log(kinds=frozenset({kind}), limit=1000))


# -- authority over a shared factor ------------------------------------------------------------


@pytest.mark.parametrize("grace", [None, timedelta(days=7)], ids=["on", "in-grace"])
def test_an_owner_of_another_tenant_cannot_reset_or_unlock_a_shared_factor(
    any_backend: Storage,  # noqa: F811
    grace: timedelta | None,
) -> None:
    w = _world(any_backend, grace=grace)
    tf = w.tf
    _mallory_adds_bob(tf)
    with pytest.raises(PermissionDenied):
        tf.reset_two_factor("M", "bob", actor_id="mallory")
    with pytest.raises(PermissionDenied):
        tf.unlock("M", "bob", actor_id="mallory")
    # Nothing changed: Bob's own authenticator still gets him into B, and nothing was audited.
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE
    assert tf.verify_code(tf.start_session("bob"), "B", code_for(tf, "bob")).ok
    assert _records(tf, AuditKind.TWO_FACTOR_RESET) == []
    assert _records(tf, AuditKind.TWO_FACTOR_UNLOCKED) == []


def test_the_refusal_does_not_tell_which_other_tenants_the_user_belongs_to() -> None:
    messages = []
    for other in ("B", "Secret merger"):
        tf = _world_named(other)
        with pytest.raises(PermissionDenied) as refused:
            tf.reset_two_factor("M", "bob", actor_id="mallory")
        messages.append(str(refused.value))
        assert other not in str(refused.value)
        assert "olga" not in str(refused.value)
    assert messages[0] == messages[1]


def _world_named(tenant_name: str) -> TwoFactor:
    clock = FakeClock()
    tf = TwoFactor(storage=MemoryStorage(), keyring=Keyring.generate(), clock=clock, config=CONFIG)
    tf.create_tenant("T", name=tenant_name, owner_id="olga")
    tf.add_member("T", "bob", actor_id="olga")
    tf.set_two_factor("T", actor_id="olga", enabled=True)
    clock.advance(seconds=1)
    login = tf.start_session("bob")
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, pending_code_for(tf, "bob")).ok
    _mallory_adds_bob(tf)
    return tf


def test_an_owner_of_every_requiring_tenant_may_reset(world: World) -> None:
    tf = world.tf
    # A does not require 2FA, so olga (owner of B only) has authority over bob's factor...
    tf.reset_two_factor("B", "bob", actor_id="olga")
    assert tf.user_status("bob").state is EnrollmentState.NONE
    # ...but only through a tenant she owns.
    with pytest.raises(PermissionDenied):
        tf.reset_two_factor("A", "bob", actor_id="olga")


def test_once_another_tenant_requires_2fa_its_owner_is_needed_too(world: World) -> None:
    tf = world.tf
    tf.set_two_factor("A", actor_id="alice", enabled=True, grace_period=timedelta(days=3))
    for owner, tenant in (("olga", "B"), ("alice", "A")):
        with pytest.raises(PermissionDenied):
            tf.reset_two_factor(tenant, "bob", actor_id=owner)
    # An owner of both may; so may the operator.
    tf.add_member("A", "olga", role=Role.OWNER, actor_id="alice")
    tf.reset_two_factor("B", "bob", actor_id="olga")
    assert tf.user_status("bob").state is EnrollmentState.NONE


def test_with_challenge_everywhere_every_tenant_relies_on_the_factor(
    any_backend: Storage,  # noqa: F811
) -> None:
    w = _world(any_backend, config=Config(issuer="Onum", challenge_everywhere=True))
    with pytest.raises(PermissionDenied):
        w.tf.reset_two_factor("B", "bob", actor_id="olga")  # A relies on it too
    w.tf.reset_two_factor("B", "bob", operator="support:jane")


def test_the_operator_resets_under_its_name_and_the_user_is_told_by_whom(world: World) -> None:
    tf = world.tf
    _mallory_adds_bob(tf)
    tf.reset_two_factor("M", "bob", operator="support:jane")
    (record,) = _records(tf, AuditKind.TWO_FACTOR_RESET)
    assert (record.actor_id, record.tenant_id, record.user_id) == ("support:jane", "M", "bob")  # type: ignore[attr-defined]
    assert record.detail["actor_role"] == "operator"  # type: ignore[attr-defined]
    note = world.notifier.for_user("bob")[-1]
    assert (note.kind, note.actor_id, note.actor_role) == (
        NotificationKind.TWO_FACTOR_RESET,
        "support:jane",
        "operator",
    )


def test_who_acts_must_be_named_exactly_once(world: World) -> None:
    tf = world.tf
    for call in (tf.reset_two_factor, tf.unlock, tf.remove_member):
        with pytest.raises(InvalidInput):
            call("B", "bob")
        with pytest.raises(InvalidInput):
            call("B", "bob", actor_id="olga", operator="support:jane")
    with pytest.raises(InvalidInput):
        tf.set_role("B", "bob", Role.ADMIN, actor_id="olga", operator="ops")
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE


# -- unlock ------------------------------------------------------------------------------------


def _wrong(tf: TwoFactor) -> str:
    valid = {code_for(tf, "bob", offset=o) for o in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def _lock_for_good(w: World) -> LoginSession:
    tf, clock = w.tf, w.clock
    login = tf.start_session("bob")
    rules = tf.config.throttle
    while tf.user_status("bob").failures < rules.max_failures:
        status = tf.user_status("bob")
        if status.retry_at is not None:
            clock.set(status.retry_at)
            login = tf.verify_identity(login)
        assert tf.verify_code(login, "B", _wrong(tf)).reason is Reason.INVALID
    clock.advance(seconds=30)
    return tf.verify_identity(login)


def test_unlock_lets_a_user_locked_for_good_back_in_with_the_same_authenticator(
    world: World,
) -> None:
    tf = world.tf
    login = _lock_for_good(world)
    assert tf.verify_code(login, "B", code_for(tf, "bob")).reason is Reason.LOCKED
    assert tf.use_recovery_code(login, "B", world.recovery_codes[0]).reason is Reason.LOCKED
    with pytest.raises(PermissionDenied):
        tf.unlock("B", "bob", actor_id="bob")  # nobody unlocks themselves
    assert tf.unlock("B", "bob", actor_id="olga") is True
    status = tf.user_status("bob")
    assert (status.locked, status.failures, status.state) == (False, 0, EnrollmentState.ACTIVE)
    assert status.recovery_codes_left == len(world.recovery_codes)
    assert tf.verify_code(login, "B", code_for(tf, "bob")).ok
    assert tf.use_recovery_code(login, "B", world.recovery_codes[0]).ok
    (record,) = _records(tf, AuditKind.TWO_FACTOR_UNLOCKED)
    assert (record.actor_id, record.user_id) == ("olga", "bob")  # type: ignore[attr-defined]
    kinds = [n.kind for n in world.notifier.for_user("bob")]
    assert NotificationKind.TWO_FACTOR_UNLOCKED in kinds
    # Nothing to unlock: nothing written.
    assert tf.unlock("B", "bob", actor_id="olga") is False
    assert len(_records(tf, AuditKind.TWO_FACTOR_UNLOCKED)) == 1


# -- membership lifecycle ----------------------------------------------------------------------


def test_a_removed_member_is_gone_at_once_and_no_longer_bound_or_reachable(world: World) -> None:
    tf = world.tf
    login = tf.start_session("bob")  # a new login: no second factor proven yet
    assert tf.login_step(login, "A").kind is StepKind.DONE  # A does not require 2FA
    assert tf.login_step(login, "B").kind is StepKind.CHALLENGE
    tf.remove_member("B", "bob", actor_id="olga")
    with pytest.raises(NotAMember):
        tf.login_step(login, "B")
    with pytest.raises(NotAMember):
        tf.verify_code(login, "B", code_for(tf, "bob"))
    for call in (tf.reset_two_factor, tf.unlock):
        with pytest.raises(NotAMember):
            call("B", "bob", actor_id="olga")
    # Bob's factor is his, and stays; but B's policy no longer binds him anywhere.
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE
    assert tf.login_step(login, "A").kind is StepKind.DONE
    (note,) = [
        n for n in world.notifier.for_user("bob") if n.kind is NotificationKind.MEMBER_REMOVED
    ]
    assert (note.tenant_id, note.actor_id, note.previous_role) == ("B", "olga", "member")


def test_a_fired_owner_loses_every_power_over_the_tenant(world: World) -> None:
    tf = world.tf
    tf.add_member("B", "otto", role=Role.OWNER, actor_id="olga")
    tf.set_role("B", "otto", Role.MEMBER, actor_id="olga")
    with pytest.raises(PermissionDenied):
        tf.set_two_factor("B", actor_id="otto", enabled=False)
    with pytest.raises(PermissionDenied):
        tf.reset_two_factor("B", "bob", actor_id="otto")
    tf.remove_member("B", "otto", operator="support:jane")
    for call in (tf.remove_member, tf.reset_two_factor, tf.unlock):
        with pytest.raises(PermissionDenied):
            call("B", "bob", actor_id="otto")
    assert tf.tenant("B").two_factor_required


def test_a_tenant_never_loses_its_last_owner_and_refusals_write_nothing(world: World) -> None:
    tf = world.tf
    audit_before = len(tf.audit_log(limit=1000))
    outbox_before = len(tf.storage.outbox_items(limit=1000))
    with pytest.raises(LastOwner):
        tf.remove_member("B", "olga", actor_id="olga")
    with pytest.raises(LastOwner):
        tf.set_role("B", "olga", Role.ADMIN, actor_id="olga")
    with pytest.raises(LastOwner):
        tf.remove_member("B", "olga", operator="support:jane")
    assert len(tf.audit_log(limit=1000)) == audit_before
    assert len(tf.storage.outbox_items(limit=1000)) == outbox_before
    assert [(m.user_id, m.role) for m in tf.members("B")] == [
        ("bob", Role.MEMBER),
        ("olga", Role.OWNER),
    ]


def _told(w: World, kind: NotificationKind) -> list[tuple[str, str | None]]:
    return [(n.user_id, n.member_id) for n in w.notifier.sent if n.kind is kind]


def test_ownership_moves_by_promoting_then_stepping_down(world: World) -> None:
    tf = world.tf
    assert tf.set_role("B", "bob", Role.OWNER, actor_id="olga").role is Role.OWNER
    # Bob hears of his new role, olga that bob became an owner; then olga steps down and leaves.
    assert _told(world, NotificationKind.ROLE_CHANGED) == [("bob", None)]
    assert _told(world, NotificationKind.OWNERS_CHANGED) == [("olga", "bob")]
    tf.set_role("B", "olga", Role.MEMBER, actor_id="olga")
    tf.remove_member("B", "olga", actor_id="olga")
    assert [(m.user_id, m.role) for m in tf.members("B")] == [("bob", Role.OWNER)]
    kinds = [r.kind for r in tf.audit_log(tenant_id="B", limit=1000)][-3:]
    assert kinds == [AuditKind.ROLE_CHANGED, AuditKind.ROLE_CHANGED, AuditKind.MEMBER_REMOVED]


def test_admins_cannot_create_remove_or_reset_owners(world: World) -> None:
    tf = world.tf
    tf.add_member("B", "adam", role=Role.ADMIN, actor_id="olga")
    tf.add_member("B", "otto", role=Role.OWNER, actor_id="olga")
    for refused in (
        lambda: tf.add_member("B", "eve", role=Role.OWNER, actor_id="adam"),
        lambda: tf.set_role("B", "bob", Role.OWNER, actor_id="adam"),
        lambda: tf.set_role("B", "otto", Role.MEMBER, actor_id="adam"),
        lambda: tf.remove_member("B", "otto", actor_id="adam"),
        lambda: tf.reset_two_factor("B", "bob", actor_id="adam"),  # not in toggle_roles
        lambda: tf.set_role("B", "adam", Role.OWNER, actor_id="adam"),  # nor make himself one
    ):
        with pytest.raises(PermissionDenied):
            refused()
    # What admins may do: add and remove members and admins, move them between those roles.
    tf.add_member("B", "eve", actor_id="adam")
    tf.set_role("B", "eve", Role.ADMIN, actor_id="adam")
    tf.remove_member("B", "eve", actor_id="adam")
    tf.set_role("B", "adam", Role.MEMBER, actor_id="adam")  # and step down
    with pytest.raises(PermissionDenied):
        tf.remove_member("B", "bob", actor_id="adam")  # no longer an admin


def test_the_other_owners_hear_of_every_owner_added_or_removed(world: World) -> None:
    """An owner planted, or pushed out, by a compromised owner account does not go unnoticed."""
    tf = world.tf
    tf.add_member("B", "otto", role=Role.OWNER, actor_id="olga")
    assert _told(world, NotificationKind.OWNERS_CHANGED) == [("olga", "otto")]
    tf.add_member("B", "eve", role=Role.OWNER, actor_id="otto")
    tf.remove_member("B", "olga", actor_id="otto")
    changes = [
        (n.user_id, n.member_id, n.role, n.previous_role)
        for n in world.notifier.sent
        if n.kind is NotificationKind.OWNERS_CHANGED
    ][1:]
    assert changes == [
        ("olga", "eve", "owner", None),
        ("otto", "eve", "owner", None),
        ("eve", "olga", None, "owner"),
        ("otto", "olga", None, "owner"),
    ]
    tf.add_member("B", "carol", actor_id="otto")  # a plain member: no owner is told
    assert len(_told(world, NotificationKind.OWNERS_CHANGED)) == 5


def test_adding_a_member_needs_an_actor_or_a_named_operator(world: World) -> None:
    """A request without a signed-in user (actor_id=None) must not pass for the host."""
    with pytest.raises(InvalidInput):
        world.tf.add_member("B", "mallory", role=Role.OWNER)
    with pytest.raises(InvalidInput):
        world.tf.add_member("B", "mallory", role=Role.OWNER, actor_id=None)
    assert "mallory" not in [m.user_id for m in world.tf.members("B")]
    world.tf.add_member("B", "carol", operator="signup")
    (record,) = [r for r in world.tf.audit_log(tenant_id="B", limit=1000) if r.user_id == "carol"]
    assert (record.actor_id, record.detail["actor_role"]) == ("signup", "operator")


def test_members_are_told_when_they_are_added(world: World) -> None:
    tf = world.tf
    _mallory_adds_bob(tf)
    note = [n for n in world.notifier.for_user("bob") if n.kind is NotificationKind.MEMBER_ADDED]
    assert [(n.tenant_id, n.actor_id, n.role) for n in note] == [
        ("A", "alice", "member"),
        ("B", "olga", "member"),
        ("M", "mallory", "member"),
    ]
    stored = {
        item.notification.notification_id
        for item in tf.storage.outbox_items(limit=1000)
        if item.notification.kind is NotificationKind.MEMBER_ADDED
    }
    assert {n.notification_id for n in note} <= stored


def test_a_non_member_actor_learns_nothing_about_the_tenants_members(world: World) -> None:
    tf = world.tf
    for call in (tf.remove_member, tf.reset_two_factor, tf.unlock):
        for user in ("bob", "nobody"):
            with pytest.raises(PermissionDenied):
                call("B", user, actor_id="stranger")


@pytest.mark.parametrize(
    ("actor", "action", "target", "new_role"),
    [
        (actor, action, target, new_role)
        for actor, action, target in itertools.product(Role, Action, Role)
        for new_role in (Role if action is Action.CHANGE_ROLE else [None])
    ],
)
def test_member_rules_follow_the_one_table(
    actor: Role, action: Action, target: Role, new_role: Role | None
) -> None:
    """Every (actor role, action, target role[, new role]) against MEMBER_RULES, spelled out."""
    everyone = frozenset(Role)
    below_owner = frozenset({Role.ADMIN, Role.MEMBER})
    expected_sets = {Role.OWNER: everyone, Role.ADMIN: below_owner, Role.MEMBER: frozenset()}
    gated = action in {Action.RESET_TWO_FACTOR, Action.UNLOCK}
    may = target in expected_sets[actor] and (new_role is None or new_role in expected_sets[actor])
    if gated:
        may = may and actor is Role.OWNER  # default toggle_roles
    assert MEMBER_RULES.get((actor, action), frozenset()) == (
        frozenset() if actor is Role.MEMBER else expected_sets[actor]
    )
    acting = Membership(tenant_id="T", user_id="a", role=actor)
    subject = Membership(tenant_id="T", user_id="b", role=target)
    if may:
        check_member_action(action, actor=acting, target=subject, new_role=new_role)
    else:
        with pytest.raises(PermissionDenied):
            check_member_action(action, actor=acting, target=subject, new_role=new_role)


# -- the identity floor and login expiry -------------------------------------------------------


def test_a_login_value_copied_before_a_reset_cannot_enroll_the_copiers_phone(
    world: World,
) -> None:
    tf, clock = world.tf, world.clock
    stolen = tf.verify_identity(tf.start_session("bob"))  # fresh identity, copied by a thief
    clock.advance(seconds=30)
    tf.reset_two_factor("B", "bob", actor_id="olga")
    clock.advance(seconds=30)
    with pytest.raises(StepUpRequired) as refused:
        tf.begin_enrollment(stolen)
    assert refused.value.step is StepKind.VERIFY_IDENTITY
    for tenant in ("A", "B"):  # and it reaches DONE nowhere, not even where 2FA is off
        assert tf.login_step(stolen, tenant).kind is StepKind.VERIFY_IDENTITY
    assert tf.user_status("bob").state is EnrollmentState.NONE
    # Bob, who knows his password, verifies it again and enrolls.
    bob = tf.verify_identity(stolen)
    tf.begin_enrollment(bob)
    assert tf.confirm_enrollment(bob, pending_code_for(tf, "bob")).ok


def test_removing_ones_own_2fa_sends_every_older_login_back_to_verify_identity(
    any_backend: Storage,  # noqa: F811
) -> None:
    w = _world(any_backend)
    tf, clock = w.tf, w.clock
    tf.set_two_factor("B", actor_id="olga", enabled=False)
    other = tf.start_session("bob")  # say, on a laptop left unlocked
    clock.advance(seconds=5)
    remover = tf.verify_identity(w.bob)
    remover = tf.verify_code(remover, "A", code_for(tf, "bob")).login
    remover = tf.remove_two_factor(remover)
    assert tf.login_step(remover, "A").kind is StepKind.DONE
    assert tf.login_step(other, "A").kind is StepKind.VERIFY_IDENTITY


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(hours=12), StepKind.DONE),
        (timedelta(hours=12, seconds=1), StepKind.VERIFY_IDENTITY),
        (timedelta(hours=13), StepKind.VERIFY_IDENTITY),
    ],
)
def test_a_login_value_expires_after_max_login_age(
    any_backend: Storage,  # noqa: F811
    age: timedelta,
    expected: StepKind,
) -> None:
    w = _world(any_backend)
    tf, clock = w.tf, w.clock
    checked = w.bob.identity_verified_at
    clock.set(checked + age)
    assert tf.login_step(w.bob, "B").kind is expected
    assert tf.login_step(w.bob, "A").kind is expected
    if expected is StepKind.VERIFY_IDENTITY:
        with pytest.raises(StepUpRequired):
            tf.verify_code(w.bob, "B", code_for(tf, "bob"))
        # The password alone does not bring the session back: its second factor is as old, and
        # must be proven again too (where 2FA is off, the password is all it takes).
        renewed = tf.verify_identity(w.bob)
        assert tf.login_step(renewed, "B").kind is StepKind.CHALLENGE
        assert tf.login_step(renewed, "A").kind is StepKind.DONE
        assert tf.verify_code(renewed, "B", code_for(tf, "bob")).ok


def test_an_old_proven_login_and_a_phished_password_cannot_replace_the_authenticator(
    world: World,
) -> None:
    """A login value stolen from a session store, kept for a month, plus the password: no DONE
    in B, and no way to enroll the thief's phone or take new recovery codes."""
    tf, clock = world.tf, world.clock
    clock.advance(timedelta(days=30))
    stolen = tf.verify_identity(world.bob)
    assert tf.login_step(stolen, "B").kind is StepKind.CHALLENGE
    with pytest.raises(StepUpRequired) as refused:
        tf.begin_enrollment(stolen)
    assert refused.value.step is StepKind.CHALLENGE
    with pytest.raises(StepUpRequired):
        tf.regenerate_recovery_codes(stolen)


def test_max_login_age_none_keeps_logins_forever() -> None:
    w = _world(MemoryStorage(), config=Config(issuer="Onum", max_login_age=None))
    w.clock.advance(timedelta(days=400))
    assert w.tf.login_step(w.bob, "B").kind is StepKind.DONE


# -- bounded grace periods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "grace", [timedelta(days=3_000_000), timedelta(days=91), timedelta(seconds=-1)]
)
def test_a_grace_period_beyond_the_cap_is_refused_and_nothing_is_stored(
    world: World, grace: timedelta
) -> None:
    tf = world.tf
    tf.create_tenant("M", name="Mallory's", owner_id="mallory")
    tf.add_member("M", "bob", actor_id="mallory")
    with pytest.raises(InvalidInput):
        tf.set_two_factor("M", actor_id="mallory", enabled=True, grace_period=grace)
    assert not tf.tenant("M").two_factor_required
    # Bob's logins in every tenant are unaffected (no OverflowError anywhere).
    login = tf.start_session("bob")
    assert tf.login_step(login, "B").kind is StepKind.CHALLENGE
    assert tf.login_step(login, "M").kind is StepKind.DONE


def test_a_grace_period_up_to_the_cap_is_kept(world: World) -> None:
    tf = world.tf
    policy = tf.set_two_factor(
        "A", actor_id="alice", enabled=True, grace_period=tf.config.max_grace_period
    )
    assert policy.grace_period == timedelta(days=90)
    assert tf.tenant("A").enrollment_deadline() == world.clock.now() + timedelta(days=90)


def test_a_huge_stored_grace_period_raises_nothing_in_any_tenant(
    any_backend: Storage,  # noqa: F811
) -> None:
    """A value written by an older version (or by hand) cannot make login_step raise."""
    w = _world(any_backend)
    tf = w.tf
    tf.create_tenant("M", name="Mallory's", owner_id="mallory")
    tf.add_member("M", "carol", actor_id="mallory")
    current = tf.tenant("M")
    huge = type(current)(
        tenant_id="M",
        name=current.name,
        two_factor_required=True,
        activated_at=w.clock.now(),
        grace_period=timedelta(days=3_000_000),
        version=current.version + 1,
    )
    record = new_audit_record(AuditKind.TWO_FACTOR_SWITCHED, at=w.clock.now(), tenant_id="M")
    assert any_backend.update_tenant_policy(huge, expected_version=current.version, audit=record)
    w.clock.advance(seconds=1)
    carol = tf.start_session("carol")
    step = tf.login_step(carol, "M")
    assert step.kind is StepKind.ENROLL
    assert step.skippable
    assert step.enroll_by is not None
    assert step.enroll_by.year == 9999


def test_bad_input_to_the_new_calls_gets_a_clear_error_and_writes_nothing(world: World) -> None:
    tf = world.tf
    tf.add_member("B", "adam", role=Role.ADMIN, actor_id="olga")
    audit_before = len(tf.audit_log(limit=1000))
    outbox_before = len(tf.storage.outbox_items(limit=1000))
    members_before = {t: tf.members(t) for t in ("A", "B")}
    factor_before = tf.user_status("bob")
    cases: list[tuple[type[Exception], Callable[[], object]]] = [
        (UnknownTenant, lambda: tf.remove_member("Z", "bob", actor_id="olga")),
        (UnknownTenant, lambda: tf.set_role("Z", "bob", Role.ADMIN, operator="ops")),
        (UnknownTenant, lambda: tf.unlock("Z", "bob", operator="ops")),
        (UnknownTenant, lambda: tf.reset_two_factor("Z", "bob", actor_id="olga")),
        (NotAMember, lambda: tf.remove_member("B", "nobody", actor_id="olga")),
        (NotAMember, lambda: tf.set_role("B", "nobody", Role.ADMIN, actor_id="olga")),
        (NotAMember, lambda: tf.unlock("B", "nobody", actor_id="olga")),
        (NotAMember, lambda: tf.reset_two_factor("B", "nobody", operator="ops")),
        (LastOwner, lambda: tf.set_role("B", "olga", Role.MEMBER, actor_id="olga")),
        (PermissionDenied, lambda: tf.remove_member("B", "olga", actor_id="adam")),
        (PermissionDenied, lambda: tf.set_role("B", "olga", Role.ADMIN, actor_id="adam")),
        (PermissionDenied, lambda: tf.remove_member("B", "adam", actor_id="bob")),
        (PermissionDenied, lambda: tf.unlock("B", "bob", actor_id="adam")),
        (InvalidInput, lambda: tf.set_role("B", "bob", "owner", actor_id="olga")),  # type: ignore[arg-type]
        (InvalidInput, lambda: tf.remove_member("B", "", actor_id="olga")),
        (InvalidInput, lambda: tf.unlock("B", "bob", operator="\x00")),
        (InvalidInput, lambda: tf.add_member("B", "eve", role="admin", actor_id="olga")),  # type: ignore[arg-type]
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
    assert len(tf.audit_log(limit=1000)) == audit_before
    assert len(tf.storage.outbox_items(limit=1000)) == outbox_before
    assert {t: tf.members(t) for t in ("A", "B")} == members_before
    assert tf.user_status("bob") == factor_before


# -- a decision and its write are one step ------------------------------------------------------


class _Interleaved(MemoryStorage):
    """Memory storage that runs ``meanwhile`` (another request) once, just before the named
    write: what the service read and decided on has changed when its write arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: dict[str, Callable[[], object]] = {}

    def _before(self, name: str) -> None:
        other = self.meanwhile.pop(name, None)
        if other is not None:
            other()

    def remove_membership(self, *args: Any, **kwargs: Any) -> None:
        self._before("remove_membership")
        super().remove_membership(*args, **kwargs)

    def reset_factor(self, *args: Any, **kwargs: Any) -> int | None:
        self._before("reset_factor")
        return super().reset_factor(*args, **kwargs)

    def unlock_factor(self, *args: Any, **kwargs: Any) -> bool:
        self._before("unlock_factor")
        return super().unlock_factor(*args, **kwargs)

    def update_tenant_policy(self, *args: Any, **kwargs: Any) -> bool:
        self._before("update_tenant_policy")
        return super().update_tenant_policy(*args, **kwargs)


def test_an_owner_removed_while_switching_2fa_off_switches_nothing() -> None:
    storage = _Interleaved()
    w = _world(storage)
    tf = w.tf
    tf.add_member("B", "otto", role=Role.OWNER, actor_id="olga")
    storage.meanwhile["update_tenant_policy"] = lambda: tf.remove_member(
        "B", "otto", actor_id="olga"
    )
    with pytest.raises(PermissionDenied):
        tf.set_two_factor("B", actor_id="otto", enabled=False)
    assert tf.tenant("B").two_factor_required
    assert tf.login_step(tf.start_session("bob"), "B").kind is StepKind.CHALLENGE


def test_an_owner_demoted_while_removing_someone_removes_nobody() -> None:
    storage = _Interleaved()
    w = _world(storage)
    tf = w.tf
    tf.add_member("B", "otto", role=Role.OWNER, actor_id="olga")
    storage.meanwhile["remove_membership"] = lambda: tf.set_role(
        "B", "otto", Role.MEMBER, actor_id="olga"
    )
    with pytest.raises(PermissionDenied):
        tf.remove_member("B", "bob", actor_id="otto")
    assert "bob" in [m.user_id for m in tf.members("B")]


@pytest.mark.parametrize("call", ["reset_two_factor", "unlock"])
def test_a_tenant_switching_on_during_a_reset_or_unlock_takes_the_authority_away(
    call: str,
) -> None:
    storage = _Interleaved()
    w = _world(storage)
    tf = w.tf
    tf.verify_code(tf.start_session("bob"), "B", _wrong(tf))  # something to unlock
    write = "reset_factor" if call == "reset_two_factor" else "unlock_factor"
    # olga owns B; bob's other tenant, A, starts requiring 2FA while olga's call is under way.
    storage.meanwhile[write] = lambda: tf.set_two_factor("A", actor_id="alice", enabled=True)
    with pytest.raises(PermissionDenied):
        getattr(tf, call)("B", "bob", actor_id="olga")
    status = tf.user_status("bob")
    assert (status.state, status.failures) == (EnrollmentState.ACTIVE, 1)
