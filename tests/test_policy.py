"""Tenant policy (:mod:`tenant2fa.policy`): who may do what to whom, identifiers, grace periods and
the two-factor toggle, decided from plain values.

The rule table is checked against the rules as docs/concepts.md states them, written out here
independently: owners act on everyone, admins on admins and members, members on nobody; resetting
and unlocking also need a role that may switch 2FA (owners, by default); anyone may leave; nobody
resets or unlocks themselves.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from tenant2fa.clock import UTC
from tenant2fa.errors import InvalidInput, NotAMember, PermissionDenied
from tenant2fa.policy import (
    MAX_GRACE_PERIOD,
    MAX_IDENTIFIER_LENGTH,
    MEMBER_RULES,
    Action,
    Actor,
    Membership,
    Role,
    Standing,
    TenantPolicy,
    check_factor_authority,
    check_grace_period,
    check_identifier,
    check_may_toggle,
    check_member_action,
    switch_two_factor,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GATED = {Action.RESET_TWO_FACTOR, Action.UNLOCK}


def _member(user_id: str, role: Role, tenant_id: str = "T") -> Membership:
    return Membership(tenant_id=tenant_id, user_id=user_id, role=role)


def _may_act_on(actor: Role, target: Role) -> bool:
    """The rules as the docs state them, not as the table spells them."""
    if actor is Role.OWNER:
        return True
    if actor is Role.ADMIN:
        return target is not Role.OWNER
    return False


def _denied(action: Action, **kwargs: object) -> str:
    with pytest.raises(PermissionDenied) as caught:
        check_member_action(action, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# -- the rule table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor_role", "action", "target_role"),
    list(itertools.product(Role, Action, Role)),
    ids=lambda v: v.name.lower(),
)
def test_acting_on_another_member_follows_the_documented_rules(
    actor_role: Role, action: Action, target_role: Role
) -> None:
    actor = _member("actor", actor_role)
    target = _member("target", target_role)
    expected = _may_act_on(actor_role, target_role) and (
        action not in GATED or actor_role is Role.OWNER
    )
    if expected:
        check_member_action(action, actor=actor, target=target)
    else:
        message = _denied(action, actor=actor, target=target)
        assert message.startswith(f"a tenant {actor_role.value} may not ")


def test_the_table_names_each_role_and_action_it_allows_and_nothing_for_members() -> None:
    assert {role for role, _ in MEMBER_RULES} == {Role.OWNER, Role.ADMIN}
    for (role, _action), targets in MEMBER_RULES.items():
        assert targets == {t for t in Role if _may_act_on(role, t)}


def test_a_role_without_any_rule_for_the_action_is_told_what_it_may_not_do() -> None:
    message = _denied(
        Action.ADD_MEMBER, actor=_member("m", Role.MEMBER), target=_member("n", Role.MEMBER)
    )
    assert message == "a tenant member may not add members"


def test_an_admin_may_not_reset_or_unlock_anyone_unless_admins_may_switch_two_factor() -> None:
    admin, member = _member("a", Role.ADMIN), _member("m", Role.MEMBER)
    assert (
        _denied(Action.RESET_TWO_FACTOR, actor=admin, target=member)
        == "a tenant admin may not reset two-factor authentication"
    )
    assert _denied(Action.UNLOCK, actor=admin, target=member) == (
        "a tenant admin may not unlock members"
    )
    both = frozenset({Role.OWNER, Role.ADMIN})
    check_member_action(Action.RESET_TWO_FACTOR, actor=admin, target=member, gated_roles=both)
    check_member_action(Action.UNLOCK, actor=admin, target=member, gated_roles=both)
    # Still within the table: an admin never acts on an owner.
    owner = _member("o", Role.OWNER)
    assert (
        _denied(Action.RESET_TWO_FACTOR, actor=admin, target=owner, gated_roles=both)
        == "a tenant admin may not reset owners"
    )


def test_a_role_change_needs_both_the_old_and_the_new_role_within_reach() -> None:
    owner, admin = _member("o", Role.OWNER), _member("a", Role.ADMIN)
    member = _member("m", Role.MEMBER)
    check_member_action(Action.CHANGE_ROLE, actor=owner, target=member, new_role=Role.OWNER)
    check_member_action(Action.CHANGE_ROLE, actor=admin, target=member, new_role=Role.ADMIN)
    assert (
        _denied(Action.CHANGE_ROLE, actor=admin, target=member, new_role=Role.OWNER)
        == "a tenant admin may not make owners"
    )
    assert (
        _denied(Action.CHANGE_ROLE, actor=admin, target=owner, new_role=Role.MEMBER)
        == "a tenant admin may not change the role of owners"
    )


@pytest.mark.parametrize("role", list(Role))
def test_anyone_may_leave_a_tenant(role: Role) -> None:
    me = _member("me", role)
    check_member_action(Action.REMOVE_MEMBER, actor=me, target=me)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", [Action.RESET_TWO_FACTOR, Action.UNLOCK])
def test_nobody_resets_or_unlocks_their_own_factor(role: Role, action: Action) -> None:
    me = _member("me", role)
    assert _denied(action, actor=me, target=me) == (
        "nobody can reset or unlock their own two-factor authentication"
    )


def test_a_non_member_or_a_member_of_another_tenant_may_do_nothing() -> None:
    target = _member("m", Role.MEMBER, tenant_id="T")
    expected = "you are not a member of this tenant with the right role"
    assert _denied(Action.REMOVE_MEMBER, actor=None, target=target) == expected
    elsewhere = _member("o", Role.OWNER, tenant_id="other")
    assert _denied(Action.REMOVE_MEMBER, actor=elsewhere, target=target) == expected


# -- actors and identifiers ----------------------------------------------------------------


def test_an_actor_is_a_member_or_an_operator_and_is_audited_under_that_name() -> None:
    member = Actor.of("bob", None)
    assert (member.user_id, member.operator, member.audit_id) == ("bob", None, "bob")
    operator = Actor.of(None, "support:jane")
    assert (operator.user_id, operator.operator, operator.audit_id) == (
        None,
        "support:jane",
        "support:jane",
    )


@pytest.mark.parametrize(("actor_id", "operator"), [(None, None), ("bob", "cli:root")])
def test_an_actor_needs_exactly_one_of_actor_id_and_operator(
    actor_id: str | None, operator: str | None
) -> None:
    with pytest.raises(InvalidInput, match="not both"):
        Actor.of(actor_id, operator)


@pytest.mark.parametrize(("actor_id", "operator"), [("", None), (None, "x\n")])
def test_an_actor_name_must_be_an_identifier(actor_id: str | None, operator: str | None) -> None:
    with pytest.raises(InvalidInput):
        Actor.of(actor_id, operator)


@pytest.mark.parametrize(
    "value", ["a", "user@example.com", "Ünïcödé 用户", "x" * MAX_IDENTIFIER_LENGTH]
)
def test_an_identifier_of_1_to_255_printable_characters_is_taken_as_it_is(value: str) -> None:
    assert check_identifier(value, "user_id") is value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "user_id must be a str, got int"),
        (b"bob", "user_id must be a str, got bytes"),
        ("", "user_id must be 1 to 255 characters long"),
        ("x" * (MAX_IDENTIFIER_LENGTH + 1), "user_id must be 1 to 255 characters long"),
        ("bob\ud800", "user_id must not contain lone surrogates: they have no UTF-8 form"),
        ("\udfff", "user_id must not contain lone surrogates: they have no UTF-8 form"),
        ("bob\x00", "user_id must not contain control characters"),
        ("line\nbreak", "user_id must not contain control characters"),
    ],
)
def test_an_unusable_identifier_is_invalid_input_naming_the_argument(
    value: object, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_identifier(value, "user_id")
    assert str(caught.value) == message


# -- the tenant policy and its toggle ------------------------------------------------------


def test_the_enrollment_deadline_is_the_activation_plus_the_grace_period_while_2fa_is_on() -> None:
    off = TenantPolicy(tenant_id="T", name="T")
    assert off.enrollment_deadline() is None
    never_activated = TenantPolicy(tenant_id="T", name="T", two_factor_required=True)
    assert never_activated.enrollment_deadline() is None
    on = switch_two_factor(off, enabled=True, now=NOW)
    assert on.enrollment_deadline() == NOW
    grace = switch_two_factor(off, enabled=True, now=NOW, grace_period=timedelta(days=7))
    assert grace.enrollment_deadline() == NOW + timedelta(days=7)
    # Switched off again, the old activation is kept for the record but sets no deadline.
    assert switch_two_factor(grace, enabled=False, now=NOW).enrollment_deadline() is None


def test_a_deadline_past_the_end_of_time_saturates_instead_of_overflowing() -> None:
    late = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
    policy = TenantPolicy(
        tenant_id="T",
        name="T",
        two_factor_required=True,
        activated_at=late,
        grace_period=timedelta(days=90),
    )
    assert policy.enrollment_deadline() == datetime.max.replace(tzinfo=UTC)


def test_switching_on_records_the_activation_and_bumps_the_version() -> None:
    policy = TenantPolicy(tenant_id="T", name="Tenant T", version=4)
    on = switch_two_factor(policy, enabled=True, now=NOW, grace_period=timedelta(days=3))
    assert on == TenantPolicy(
        tenant_id="T",
        name="Tenant T",
        two_factor_required=True,
        activated_at=NOW,
        grace_period=timedelta(days=3),
        version=5,
    )
    assert policy.version == 4  # a new value; the old one is untouched


def test_switching_off_keeps_the_activation_clears_the_grace_period_and_bumps_the_version() -> None:
    on = switch_two_factor(
        TenantPolicy(tenant_id="T", name="T"),
        enabled=True,
        now=NOW,
        grace_period=timedelta(days=3),
    )
    off = switch_two_factor(on, enabled=False, now=NOW + timedelta(hours=1))
    assert (off.two_factor_required, off.activated_at, off.grace_period, off.version) == (
        False,
        NOW,
        None,
        2,
    )


@pytest.mark.parametrize("grace_period", [None, timedelta(0), timedelta(days=1), MAX_GRACE_PERIOD])
def test_a_grace_period_from_zero_to_the_maximum_is_accepted(
    grace_period: timedelta | None,
) -> None:
    check_grace_period(grace_period, MAX_GRACE_PERIOD)
    on = switch_two_factor(
        TenantPolicy(tenant_id="T", name="T"), enabled=True, now=NOW, grace_period=grace_period
    )
    assert on.grace_period == grace_period


@pytest.mark.parametrize(
    ("grace_period", "message"),
    [
        (7, "grace_period must be a timedelta or None"),
        ("P7D", "grace_period must be a timedelta or None"),
        (timedelta(seconds=-1), "grace_period must be between 0 and 90 days"),
        (MAX_GRACE_PERIOD + timedelta(seconds=1), "grace_period must be between 0 and 90 days"),
    ],
)
def test_any_other_grace_period_is_invalid_input_and_switches_nothing(
    grace_period: object, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_grace_period(grace_period, MAX_GRACE_PERIOD)
    assert str(caught.value) == message
    with pytest.raises(InvalidInput):
        switch_two_factor(
            TenantPolicy(tenant_id="T", name="T"),
            enabled=True,
            now=NOW,
            grace_period=grace_period,  # type: ignore[arg-type]
        )


def test_the_grace_period_cap_is_the_one_given() -> None:
    check_grace_period(timedelta(days=400), timedelta(days=400))
    with pytest.raises(InvalidInput, match="between 0 and 30 days"):
        check_grace_period(timedelta(days=31), timedelta(days=30))


def test_only_a_member_with_an_allowed_role_may_switch_two_factor() -> None:
    check_may_toggle(_member("o", Role.OWNER), {Role.OWNER})
    check_may_toggle(_member("a", Role.ADMIN), [Role.OWNER, Role.ADMIN])
    for membership, allowed in [
        (None, {Role.OWNER}),
        (_member("a", Role.ADMIN), {Role.OWNER}),
        (_member("m", Role.MEMBER), {Role.OWNER, Role.ADMIN}),
    ]:
        with pytest.raises(PermissionDenied, match="only a tenant owner"):
            check_may_toggle(membership, allowed)


# -- authority over a factor shared by several tenants -------------------------------------


def _standing(tenant_id: str, *, required: bool, actor_role: Role | None) -> Standing:
    policy = TenantPolicy(tenant_id=tenant_id, name=tenant_id, two_factor_required=required)
    return Standing(policy=policy, role=Role.MEMBER, actor_role=actor_role)


def _authority(standings: list[Standing], *, actor: Actor | None = None, **kwargs: object) -> None:
    check_factor_authority(
        Action.RESET_TWO_FACTOR,
        tenant_id="A",
        user_id="bob",
        actor=actor or Actor(user_id="olga"),
        standings=standings,
        **kwargs,  # type: ignore[arg-type]
    )


def test_an_owner_of_every_tenant_relying_on_the_factor_may_reset_it() -> None:
    _authority(
        [
            _standing("A", required=False, actor_role=Role.OWNER),
            _standing("B", required=True, actor_role=Role.OWNER),
            # C does not require 2FA: it does not rely on bob's factor, so olga needs no role there.
            _standing("C", required=False, actor_role=None),
        ]
    )


def test_an_owner_of_one_tenant_may_not_reset_a_factor_another_tenant_relies_on() -> None:
    for missing_role in (None, Role.MEMBER, Role.ADMIN):
        with pytest.raises(PermissionDenied) as caught:
            _authority(
                [
                    _standing("A", required=False, actor_role=Role.OWNER),
                    _standing("B", required=True, actor_role=missing_role),
                ]
            )
        # One message whichever tenant is missing: it does not reveal the user's other tenants.
        assert "needs an owner of each tenant that requires it" in str(caught.value)
        assert "B" not in str(caught.value)


def test_with_challenge_everywhere_every_tenant_of_the_user_relies_on_the_factor() -> None:
    standings = [
        _standing("A", required=False, actor_role=Role.OWNER),
        _standing("C", required=False, actor_role=None),
    ]
    _authority(standings)
    with pytest.raises(PermissionDenied):
        _authority(standings, challenge_everywhere=True)


def test_the_tenant_acted_through_must_grant_the_authority_even_without_2fa() -> None:
    with pytest.raises(PermissionDenied):
        _authority([_standing("A", required=False, actor_role=Role.ADMIN)])
    _authority(
        [_standing("A", required=False, actor_role=Role.ADMIN)],
        gated_roles=frozenset({Role.OWNER, Role.ADMIN}),
    )


def test_an_operator_needs_no_role_anywhere() -> None:
    _authority(
        [
            _standing("A", required=True, actor_role=None),
            _standing("B", required=True, actor_role=None),
        ],
        actor=Actor(operator="cli:root"),
    )


def test_nobody_may_reset_their_own_shared_factor_even_as_owner_everywhere() -> None:
    with pytest.raises(PermissionDenied, match="their own"):
        _authority(
            [_standing("A", required=True, actor_role=Role.OWNER)], actor=Actor(user_id="bob")
        )


def test_a_user_who_is_not_in_the_tenant_is_not_a_member_there() -> None:
    with pytest.raises(NotAMember) as caught:
        _authority([_standing("B", required=True, actor_role=Role.OWNER)])
    assert (caught.value.tenant_id, caught.value.user_id) == ("A", "bob")
