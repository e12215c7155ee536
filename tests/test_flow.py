"""The login flow's building blocks (:mod:`tenant2fa.flow`), example by example: when an identity
check is current or fresh, when a second-factor proof counts, and the identity floor a reset of
the user's 2FA raises. tests/test_flow_properties.py checks :func:`next_step` against a model.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tenant2fa import LoginSession, NotAMember
from tenant2fa.clock import UTC
from tenant2fa.enrollment import EnrollmentState
from tenant2fa.flow import (
    FlowConfig,
    StepKind,
    UserFacts,
    identity_is_current,
    identity_is_fresh,
    next_step,
    second_factor_counts,
)
from tenant2fa.policy import TenantPolicy

CHECKED = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _login(
    *, checked: datetime = CHECKED, proven: datetime | None = None, epoch: int | None = None
) -> LoginSession:
    return LoginSession(
        session_id="s",
        user_id="bob",
        authenticated_at=checked,
        method="password",
        identity_verified_at=checked,
        identity_method="password",
        second_factor_at=proven,
        second_factor_epoch=epoch,
    )


# -- is the identity check current? -------------------------------------------------------


def test_an_identity_check_is_current_until_max_age_inclusive() -> None:
    login = _login()
    assert identity_is_current(login, floor=None, now=CHECKED, max_age=12 * HOUR)
    assert identity_is_current(login, floor=None, now=CHECKED + 12 * HOUR, max_age=12 * HOUR)
    assert not identity_is_current(
        login, floor=None, now=CHECKED + 12 * HOUR + timedelta(microseconds=1), max_age=12 * HOUR
    )


def test_without_max_age_an_identity_check_is_current_for_ever() -> None:
    assert identity_is_current(
        _login(), floor=None, now=CHECKED + timedelta(days=10_000), max_age=None
    )


def test_an_identity_check_before_the_floor_is_no_longer_current() -> None:
    login = _login()
    # The floor is when the user's 2FA was reset: checks made before it no longer count.
    assert not identity_is_current(login, floor=CHECKED + HOUR, now=CHECKED + HOUR, max_age=None)
    assert identity_is_current(login, floor=CHECKED, now=CHECKED + HOUR, max_age=None)
    assert identity_is_current(login, floor=CHECKED - HOUR, now=CHECKED + HOUR, max_age=None)


# -- does the second factor count? --------------------------------------------------------


def test_a_second_factor_proven_in_the_current_epoch_counts_until_max_age() -> None:
    login = _login(proven=CHECKED, epoch=2)
    assert second_factor_counts(login, epoch=2, now=CHECKED + HOUR, max_age=12 * HOUR)
    assert second_factor_counts(login, epoch=2, now=CHECKED + 12 * HOUR, max_age=12 * HOUR)
    assert not second_factor_counts(
        login, epoch=2, now=CHECKED + 12 * HOUR + timedelta(seconds=1), max_age=12 * HOUR
    )
    assert second_factor_counts(login, epoch=2, now=CHECKED + 1000 * HOUR, max_age=None)


def test_a_second_factor_from_another_epoch_or_never_proven_does_not_count() -> None:
    assert not second_factor_counts(
        _login(proven=CHECKED, epoch=1), epoch=2, now=CHECKED, max_age=None
    )
    assert not second_factor_counts(_login(), epoch=0, now=CHECKED, max_age=None)
    # An epoch without a time is not a proof either.
    assert not second_factor_counts(_login(epoch=0), epoch=0, now=CHECKED, max_age=None)


# -- is the identity check fresh enough to enroll? ----------------------------------------


def test_a_fresh_check_is_after_the_newest_activation_and_within_the_window() -> None:
    window = timedelta(minutes=10)
    login = _login()
    assert identity_is_fresh(
        login, newest_activation=CHECKED - HOUR, now=CHECKED + window, window=window
    )
    assert identity_is_fresh(login, newest_activation=None, now=CHECKED, window=window)
    # Made at the very instant of the activation: it predates the switch, not after it.
    assert not identity_is_fresh(login, newest_activation=CHECKED, now=CHECKED, window=window)
    assert not identity_is_fresh(
        login, newest_activation=None, now=CHECKED + window + timedelta(seconds=1), window=window
    )
    # A check "from the future" (a clock stepped back) is not fresh either.
    assert not identity_is_fresh(
        login, newest_activation=None, now=CHECKED - timedelta(seconds=1), window=window
    )


def test_a_check_before_the_identity_floor_is_not_fresh() -> None:
    window = timedelta(minutes=10)
    login = _login()
    assert not identity_is_fresh(
        login, newest_activation=None, now=CHECKED, window=window, floor=CHECKED + HOUR
    )
    assert identity_is_fresh(
        login, newest_activation=None, now=CHECKED, window=window, floor=CHECKED
    )


# -- next_step at the edges ---------------------------------------------------------------


def _policy(tenant_id: str, *, required: bool) -> TenantPolicy:
    return TenantPolicy(
        tenant_id=tenant_id,
        name=tenant_id,
        two_factor_required=required,
        activated_at=CHECKED - HOUR if required else None,
    )


def test_next_step_in_a_tenant_the_user_is_not_in_is_not_a_member() -> None:
    with pytest.raises(NotAMember) as caught:
        next_step(
            tenant_id="C",
            user=UserFacts(state=EnrollmentState.NONE),
            policies=[_policy("A", required=False), _policy("B", required=True)],
            login=_login(),
            now=CHECKED,
            config=FlowConfig(),
        )
    assert (caught.value.tenant_id, caught.value.user_id) == ("C", "bob")


@pytest.mark.parametrize("state", list(EnrollmentState))
def test_a_login_checked_before_the_identity_floor_verifies_identity_everywhere(
    state: EnrollmentState,
) -> None:
    user = UserFacts(state=state, identity_floor=CHECKED + timedelta(seconds=1))
    for tenant_id in ("A", "B"):
        step = next_step(
            tenant_id=tenant_id,
            user=user,
            policies=[_policy("A", required=False), _policy("B", required=True)],
            login=_login(proven=CHECKED, epoch=0),
            now=CHECKED + timedelta(minutes=1),
            config=FlowConfig(),
        )
        assert step.kind is StepKind.VERIFY_IDENTITY
        assert step.required_by == ("B",)


def test_after_verifying_again_past_the_floor_an_unenrolled_user_may_enroll() -> None:
    floor = CHECKED + timedelta(seconds=1)
    step = next_step(
        tenant_id="A",
        user=UserFacts(state=EnrollmentState.NONE, identity_floor=floor),
        policies=[_policy("A", required=False), _policy("B", required=True)],
        login=_login(checked=floor),
        now=floor + timedelta(minutes=1),
        config=FlowConfig(),
    )
    assert step.kind is StepKind.ENROLL
