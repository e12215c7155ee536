"""Properties of the pure core: the login flow against a model, the throttle, the enrollment table.

The model of :func:`tenant2fa.flow.next_step` below is written from DESIGN.md decisions 2, 3, 6, 7
and 11, not from the implementation. The exported strategies of :mod:`tenant2fa.testing.strategies`
feed these tests, and the last section checks that they draw what they promise.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tenant2fa import totp
from tenant2fa.clock import UTC
from tenant2fa.enrollment import (
    TRANSITIONS,
    EnrollmentEvent,
    EnrollmentState,
    PendingEnrollment,
    apply,
    effective_state,
)
from tenant2fa.errors import ConfigurationError, InvalidTransition, NotAMember
from tenant2fa.flow import (
    LOGIN_TRANSITIONS,
    FlowConfig,
    LoginEvent,
    Step,
    StepKind,
    UserFacts,
    next_step,
)
from tenant2fa.policy import TenantPolicy, check_identifier
from tenant2fa.session import LoginSession
from tenant2fa.testing import strategies as t2st
from tenant2fa.throttle import NIST_MAX_FAILURES, ThrottleRules, allowance

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TENANTS = ("A", "B", "C", "D")

# -- generating a login situation -----------------------------------------------------------


def _near(now: datetime, before: timedelta, after: timedelta) -> st.SearchStrategy[datetime]:
    return st.timedeltas(-before, after).map(lambda d: now + d)


@st.composite
def throttle_rules(draw: st.DrawFn) -> ThrottleRules:
    max_failures = draw(st.integers(min_value=1, max_value=NIST_MAX_FAILURES))
    base = draw(st.timedeltas(timedelta(seconds=1), timedelta(minutes=10)))
    return ThrottleRules(
        free_failures=draw(st.integers(min_value=0, max_value=max_failures)),
        base_delay=base,
        max_delay=base + draw(st.timedeltas(timedelta(0), timedelta(hours=6))),
        max_failures=max_failures,
    )


@st.composite
def user_facts(draw: st.DrawFn, now: datetime, rules: ThrottleRules) -> UserFacts:
    failures = draw(
        st.sampled_from([0, 1, rules.free_failures, rules.max_failures])
        | st.integers(min_value=0, max_value=rules.max_failures + 2)
    )
    return UserFacts(
        state=draw(st.sampled_from(EnrollmentState)),
        epoch=draw(st.integers(min_value=0, max_value=3)),
        failures=failures,
        # Around now, including a little in the future (another server's clock, or an NTP step).
        last_failure_at=None
        if failures == 0
        else draw(_near(now, timedelta(hours=3), timedelta(minutes=2))),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Situation:
    """Everything next_step reads."""

    tenant_id: str
    user: UserFacts
    policies: tuple[TenantPolicy, ...]
    login: LoginSession
    now: datetime
    config: FlowConfig

    def step(self) -> Step:
        return next_step(
            tenant_id=self.tenant_id,
            user=self.user,
            policies=self.policies,
            login=self.login,
            now=self.now,
            config=self.config,
        )

    def policy(self, tenant_id: str) -> TenantPolicy:
        return next(p for p in self.policies if p.tenant_id == tenant_id)


@st.composite
def situations(
    draw: st.DrawFn,
    *,
    grace_periods: bool = True,
    challenge_everywhere: bool | None = None,
) -> Situation:
    now = NOW
    ids = draw(st.lists(st.sampled_from(TENANTS), min_size=1, max_size=len(TENANTS), unique=True))
    policies = tuple(
        draw(
            t2st.tenant_policies(
                tenant_id=st.just(t),
                grace_periods=grace_periods,
                activated_at=_near(now, timedelta(hours=2), timedelta(minutes=1)),
            )
        )
        for t in sorted(ids)
    )
    rules = draw(st.just(ThrottleRules()) | throttle_rules())
    user = draw(user_facts(now, rules))
    login = draw(
        t2st.login_sessions(
            user_id=st.just("u1"),
            authenticated_at=_near(now, timedelta(hours=2), timedelta(minutes=1)),
            epoch=st.integers(min_value=0, max_value=3),
        )
    )
    # Identity checks land on both sides of activations and of the re-authentication window.
    login = dataclasses.replace(
        login,
        identity_verified_at=draw(
            st.sampled_from([p.activated_at for p in policies if p.activated_at] or [now])
            | _near(now, timedelta(minutes=40), timedelta(minutes=1))
        ),
    )
    return Situation(
        tenant_id=draw(st.sampled_from(ids)),
        user=user,
        policies=policies,
        login=login,
        now=now,
        config=FlowConfig(
            reauth_window=draw(st.sampled_from([timedelta(minutes=10), timedelta(minutes=2)])),
            challenge_everywhere=(
                draw(st.booleans()) if challenge_everywhere is None else challenge_everywhere
            ),
            throttle=rules,
        ),
    )


# -- the model ------------------------------------------------------------------------------


def model_wait_until(
    user: UserFacts, now: datetime, rules: ThrottleRules
) -> tuple[bool, datetime | None]:
    """(may attempt now, retry time): a wait of base * 2**(n - free), capped, after the
    last failure once ``free`` failures are used up; a hard stop at ``max_failures``."""
    n = user.failures
    if n >= rules.max_failures:
        return False, None
    if n < rules.free_failures or user.last_failure_at is None:
        return True, None
    micro = timedelta(microseconds=1)
    wait_us = min(
        (rules.base_delay // micro) * 2 ** (n - rules.free_failures), rules.max_delay // micro
    )
    until = user.last_failure_at + timedelta(microseconds=wait_us)
    return (now >= until), (None if now >= until else until)


def model_step(s: Situation) -> Step:
    """DESIGN.md 2, 3, 6, 7, 11 as plain rules, first match wins."""
    here = s.policy(s.tenant_id)
    on = [p for p in s.policies if p.two_factor_required]
    names = tuple(sorted(p.tenant_id for p in on))
    may_try, retry_at = model_wait_until(s.user, s.now, s.config.throttle)

    def make(kind: StepKind, **extra: object) -> Step:
        fields: dict[str, object] = {"kind": kind, "tenant_id": s.tenant_id, "required_by": names}
        fields.update(extra)
        return Step(**fields)  # type: ignore[arg-type]

    enrolled = s.user.state in (EnrollmentState.ACTIVE, EnrollmentState.REPLACING)
    if enrolled:
        # Decision 3: a code once per session, only where required (or everywhere if asked).
        wants_code = here.two_factor_required or s.config.challenge_everywhere
        proven = (
            s.login.second_factor_at is not None and s.login.second_factor_epoch == s.user.epoch
        )
        if not wants_code or proven:
            return make(StepKind.DONE)
        return make(StepKind.CHALLENGE) if may_try else make(StepKind.LOCKED, retry_at=retry_at)
    # Decision 2 and 6: enroll when any of the user's tenants requires it, prompted everywhere.
    if not on:
        return make(StepKind.DONE)
    deadline = min(p.activated_at + (p.grace_period or timedelta(0)) for p in on if p.activated_at)
    # A grace period only exists when every requiring tenant grants one.
    grace = s.now < deadline and all(p.grace_period for p in on)
    if grace and s.login.enrollment_deferred_until and s.now < s.login.enrollment_deferred_until:
        return make(StepKind.DONE)
    # Decision 7: identity checked after the newest activation and recently.
    newest = max(p.activated_at for p in on if p.activated_at)
    checked = s.login.identity_verified_at
    fresh = newest < checked <= s.now and s.now - checked <= s.config.reauth_window
    extra: dict[str, object] = {"skippable": grace, "enroll_by": deadline if grace else None}
    if not fresh:
        return make(StepKind.VERIFY_IDENTITY, **extra)
    return make(StepKind.ENROLL, **extra) if may_try else make(StepKind.LOCKED, retry_at=retry_at)


def _unenrolled(state: EnrollmentState) -> EnrollmentState:
    return EnrollmentState.PENDING if state is EnrollmentState.PENDING else EnrollmentState.NONE


def _locked(user: UserFacts, now: datetime, rules: ThrottleRules) -> bool:
    return not model_wait_until(user, now, rules)[0]


# -- next_step ------------------------------------------------------------------------------

_AGO = st.timedeltas(timedelta(microseconds=1), timedelta(hours=3))
_UNENROLLED = st.sampled_from([EnrollmentState.NONE, EnrollmentState.PENDING])
_ENROLLED = st.sampled_from([EnrollmentState.ACTIVE, EnrollmentState.REPLACING])


@given(situations())
def test_next_step_agrees_with_the_model(s: Situation) -> None:
    assert s.step() == model_step(s)


@given(situations())
def test_user_with_no_enrollment_and_no_tenant_requiring_is_done(s: Situation) -> None:
    s = dataclasses.replace(
        s,
        policies=tuple(
            dataclasses.replace(p, two_factor_required=False, grace_period=None) for p in s.policies
        ),
        user=dataclasses.replace(s.user, state=_unenrolled(s.user.state)),
    )
    step = s.step()
    assert step.kind is StepKind.DONE
    assert step.required_by == ()


@given(situations(), st.sampled_from([EnrollmentState.ACTIVE, EnrollmentState.REPLACING]))
def test_enrolled_user_who_proved_a_code_of_the_current_epoch_is_done(
    s: Situation, state: EnrollmentState
) -> None:
    here = dataclasses.replace(s.policy(s.tenant_id), two_factor_required=True, activated_at=s.now)
    s = dataclasses.replace(
        s,
        policies=tuple(here if p.tenant_id == s.tenant_id else p for p in s.policies),
        user=dataclasses.replace(s.user, state=state),
        login=dataclasses.replace(
            s.login, second_factor_at=s.now, second_factor_epoch=s.user.epoch
        ),
    )
    assert s.step().kind is StepKind.DONE


@given(situations(), st.integers(min_value=1, max_value=3))
def test_proof_from_another_epoch_does_not_count(s: Situation, drift: int) -> None:
    """A reset or re-enrollment bumps the epoch: an older proof must not give DONE."""
    here = dataclasses.replace(s.policy(s.tenant_id), two_factor_required=True, activated_at=s.now)
    s = dataclasses.replace(
        s,
        policies=tuple(here if p.tenant_id == s.tenant_id else p for p in s.policies),
        user=dataclasses.replace(s.user, state=EnrollmentState.ACTIVE, epoch=s.user.epoch + drift),
        login=dataclasses.replace(
            s.login, second_factor_at=s.now, second_factor_epoch=s.user.epoch
        ),
    )
    assert s.step().kind in (StepKind.CHALLENGE, StepKind.LOCKED)


@given(
    situations(grace_periods=False),
    st.sampled_from([EnrollmentState.NONE, EnrollmentState.PENDING]),
)
def test_unenrolled_user_with_a_requiring_tenant_and_stale_identity_must_verify_identity(
    s: Situation, state: EnrollmentState
) -> None:
    on = [p for p in s.policies if p.two_factor_required and p.activated_at]
    assume(on)
    newest = max(p.activated_at for p in on if p.activated_at)
    checked = s.login.identity_verified_at
    assume(not (newest < checked <= s.now and s.now - checked <= s.config.reauth_window))
    s = dataclasses.replace(s, user=dataclasses.replace(s.user, state=state))
    assert s.step().kind is StepKind.VERIFY_IDENTITY


@given(situations(), st.data())
def test_locked_user_is_never_offered_a_code_or_enrollment(
    s: Situation, data: st.DataObject
) -> None:
    rules = s.config.throttle
    failures = data.draw(
        st.integers(min_value=max(rules.free_failures, 1), max_value=rules.max_failures + 2)
    )
    s = dataclasses.replace(
        s, user=dataclasses.replace(s.user, failures=failures, last_failure_at=s.now)
    )
    assume(_locked(s.user, s.now, rules))
    step = s.step()
    assert step.kind not in (StepKind.CHALLENGE, StepKind.ENROLL)
    if step.kind is StepKind.LOCKED:
        assert step.retry_at is None or step.retry_at > s.now


@given(situations(challenge_everywhere=False))
def test_tenant_not_requiring_2fa_never_asks_for_a_code(s: Situation) -> None:
    assume(not s.policy(s.tenant_id).two_factor_required)
    assert s.step().kind is not StepKind.CHALLENGE


@given(situations(challenge_everywhere=True), _ENROLLED)
def test_challenge_everywhere_asks_enrolled_users_without_proof_in_every_tenant(
    s: Situation, state: EnrollmentState
) -> None:
    s = dataclasses.replace(
        s,
        user=dataclasses.replace(s.user, state=state),
        login=dataclasses.replace(s.login, second_factor_at=None, second_factor_epoch=None),
    )
    assert s.step().kind in (StepKind.CHALLENGE, StepKind.LOCKED)


@given(
    st.timedeltas(timedelta(seconds=1), timedelta(minutes=9)),
    st.timedeltas(timedelta(0), timedelta(minutes=9)),
    st.sampled_from([EnrollmentState.NONE, EnrollmentState.PENDING]),
)
def test_activation_in_another_tenant_after_the_identity_check_asks_to_verify_identity_here(
    signed_in_ago: timedelta, activated_after: timedelta, state: EnrollmentState
) -> None:
    """The guide's example: B switches 2FA on while the user works in A; A asks for the password."""
    signed_in = NOW - signed_in_ago
    activated = min(signed_in + activated_after, NOW)
    login = LoginSession(
        session_id="s",
        user_id="u1",
        authenticated_at=signed_in,
        method="password",
        identity_verified_at=signed_in,
        identity_method="password",
    )
    policies = (
        TenantPolicy(tenant_id="A", name="Tenant A"),
        TenantPolicy(
            tenant_id="B",
            name="Tenant B",
            two_factor_required=True,
            activated_at=activated,
            version=1,
        ),
    )
    for tenant in ("A", "B"):
        step = next_step(
            tenant_id=tenant,
            user=UserFacts(state=state),
            policies=policies,
            login=login,
            now=NOW,
            config=FlowConfig(),
        )
        assert step.kind is StepKind.VERIFY_IDENTITY
        assert step.required_by == ("B",)
    # Once the identity is checked again, both tenants move on to enrolling.
    again = dataclasses.replace(login, identity_verified_at=NOW)
    if activated < NOW:
        for tenant in ("A", "B"):
            step = next_step(
                tenant_id=tenant,
                user=UserFacts(state=state),
                policies=policies,
                login=again,
                now=NOW,
                config=FlowConfig(),
            )
            assert step.kind is StepKind.ENROLL


@given(situations())
def test_step_names_its_tenant_and_every_requiring_tenant(s: Situation) -> None:
    step = s.step()
    assert step.tenant_id == s.tenant_id
    assert step.required_by == tuple(
        sorted(p.tenant_id for p in s.policies if p.two_factor_required)
    )
    assert (step.retry_at is not None) <= (step.kind is StepKind.LOCKED)
    assert step.skippable <= (step.kind in (StepKind.VERIFY_IDENTITY, StepKind.ENROLL))


@given(situations())
def test_tenant_the_user_does_not_belong_to_raises_not_a_member(s: Situation) -> None:
    with pytest.raises(NotAMember):
        dataclasses.replace(s, tenant_id="elsewhere").step()


# -- LOGIN_TRANSITIONS: each event, applied to the facts, moves only as the table says ----------


def _check_move(before: Step, event: LoginEvent, after: Step) -> None:
    if after.kind is before.kind:
        return
    allowed = LOGIN_TRANSITIONS.get((before.kind, event))
    assert allowed is not None, f"{before.kind.name} --{event.name}--> is not in LOGIN_TRANSITIONS"
    assert after.kind in allowed, f"{before.kind.name} --{event.name}--> {after.kind.name}"


def _requiring_here(
    s: Situation,
    *,
    state: EnrollmentState,
    activated_ago: timedelta,
    grace: timedelta | None = None,
    failures: int | None = None,
) -> Situation:
    """``s`` with the current tenant requiring 2FA since ``activated_ago``, every other tenant off,
    the user in ``state``, and no proof or deferral in the login."""
    activated = s.now - activated_ago
    policies = tuple(
        dataclasses.replace(p, two_factor_required=True, activated_at=activated, grace_period=grace)
        if p.tenant_id == s.tenant_id
        else dataclasses.replace(p, two_factor_required=False, grace_period=None)
        for p in s.policies
    )
    user = dataclasses.replace(s.user, state=state)
    if failures is not None:
        user = dataclasses.replace(
            user, failures=failures, last_failure_at=s.now if failures else None
        )
    login = dataclasses.replace(
        s.login, second_factor_at=None, second_factor_epoch=None, enrollment_deferred_until=None
    )
    return dataclasses.replace(s, policies=policies, user=user, login=login)


@given(situations(), _UNENROLLED, _AGO)
def test_verifying_identity_moves_as_the_table_says(
    s: Situation, state: EnrollmentState, ago: timedelta
) -> None:
    s = _requiring_here(s, state=state, activated_ago=ago)
    s = dataclasses.replace(s, login=dataclasses.replace(s.login, identity_verified_at=s.now - ago))
    before = s.step()
    assert before.kind is StepKind.VERIFY_IDENTITY
    after = dataclasses.replace(
        s, login=dataclasses.replace(s.login, identity_verified_at=s.now)
    ).step()
    assert after.kind in (StepKind.ENROLL, StepKind.LOCKED)
    _check_move(before, LoginEvent.IDENTITY_VERIFIED, after)


@given(
    situations(),
    _ENROLLED,
    _AGO,
    st.sampled_from([LoginEvent.CODE_ACCEPTED, LoginEvent.RECOVERY_CODE_ACCEPTED]),
)
def test_accepted_code_moves_a_challenge_to_done(
    s: Situation, state: EnrollmentState, ago: timedelta, event: LoginEvent
) -> None:
    s = _requiring_here(s, state=state, activated_ago=ago, failures=0)
    before = s.step()
    assert before.kind is StepKind.CHALLENGE
    after = dataclasses.replace(
        s,
        login=dataclasses.replace(
            s.login, second_factor_at=s.now, second_factor_epoch=s.user.epoch
        ),
    ).step()
    assert after.kind is StepKind.DONE
    _check_move(before, event, after)


@given(situations(), _UNENROLLED, _AGO)
def test_confirmed_enrollment_moves_enroll_to_done(
    s: Situation, state: EnrollmentState, ago: timedelta
) -> None:
    s = _requiring_here(s, state=state, activated_ago=ago, failures=0)
    s = dataclasses.replace(s, login=dataclasses.replace(s.login, identity_verified_at=s.now))
    before = s.step()
    assert before.kind is StepKind.ENROLL
    epoch = s.user.epoch + 1
    after = dataclasses.replace(
        s,
        user=UserFacts(state=EnrollmentState.ACTIVE, epoch=epoch),
        login=dataclasses.replace(s.login, second_factor_at=s.now, second_factor_epoch=epoch),
    ).step()
    assert after.kind is StepKind.DONE
    _check_move(before, LoginEvent.ENROLLMENT_CONFIRMED, after)


@given(
    situations(),
    _UNENROLLED,
    _AGO,
    # Longer than any _AGO, so that the grace period has not ended yet.
    st.timedeltas(timedelta(hours=3, microseconds=1), timedelta(days=30)),
)
def test_deferring_in_a_grace_period_moves_to_done(
    s: Situation, state: EnrollmentState, ago: timedelta, grace: timedelta
) -> None:
    s = _requiring_here(s, state=state, activated_ago=ago, grace=grace, failures=0)
    before = s.step()
    assert before.kind in (StepKind.VERIFY_IDENTITY, StepKind.ENROLL)
    assert before.skippable
    assert before.enroll_by == s.now - ago + grace
    after = dataclasses.replace(
        s, login=dataclasses.replace(s.login, enrollment_deferred_until=before.enroll_by)
    ).step()
    assert after.kind is StepKind.DONE
    _check_move(before, LoginEvent.ENROLLMENT_DEFERRED, after)


@given(situations(), st.sampled_from(EnrollmentState), _AGO)
def test_one_more_failure_moves_only_to_locked(
    s: Situation, state: EnrollmentState, ago: timedelta
) -> None:
    s = _requiring_here(s, state=state, activated_ago=ago)
    s = dataclasses.replace(s, login=dataclasses.replace(s.login, identity_verified_at=s.now))
    before = s.step()
    assume(before.kind in (StepKind.CHALLENGE, StepKind.ENROLL))
    after = dataclasses.replace(
        s, user=dataclasses.replace(s.user, failures=s.user.failures + 1, last_failure_at=s.now)
    ).step()
    _check_move(before, LoginEvent.TOO_MANY_FAILURES, after)


@given(situations(), st.sampled_from(EnrollmentState), _AGO, st.data())
def test_waiting_out_a_lock_moves_as_the_table_says(
    s: Situation, state: EnrollmentState, ago: timedelta, data: st.DataObject
) -> None:
    rules = s.config.throttle
    assume(max(rules.free_failures, 1) < rules.max_failures)
    failures = data.draw(
        st.integers(min_value=max(rules.free_failures, 1), max_value=rules.max_failures - 1)
    )
    s = _requiring_here(s, state=state, activated_ago=ago, failures=failures)
    s = dataclasses.replace(s, login=dataclasses.replace(s.login, identity_verified_at=s.now))
    before = s.step()
    assert before.kind is StepKind.LOCKED
    assert before.retry_at is not None
    after = dataclasses.replace(s, now=before.retry_at).step()
    assert after.kind is not StepKind.LOCKED
    _check_move(before, LoginEvent.RETRY_TIME_PASSED, after)


@given(situations(), _UNENROLLED, _AGO, st.timedeltas(timedelta(0), timedelta(hours=2)))
def test_identity_going_stale_moves_enroll_to_verify_identity(
    s: Situation, state: EnrollmentState, ago: timedelta, later: timedelta
) -> None:
    s = _requiring_here(s, state=state, activated_ago=ago, failures=0)
    s = dataclasses.replace(s, login=dataclasses.replace(s.login, identity_verified_at=s.now))
    before = s.step()
    assert before.kind is StepKind.ENROLL
    stale = s.now + s.config.reauth_window + timedelta(microseconds=1) + later
    after = dataclasses.replace(s, now=stale).step()
    assert after.kind is StepKind.VERIFY_IDENTITY
    _check_move(before, LoginEvent.IDENTITY_WENT_STALE, after)


# -- throttle.allowance -----------------------------------------------------------------------


@given(
    throttle_rules(),
    st.integers(min_value=0, max_value=NIST_MAX_FAILURES + 5),
    st.integers(min_value=0, max_value=NIST_MAX_FAILURES + 5),
    _near(NOW, timedelta(hours=8), timedelta(minutes=5)),
)
def test_more_failures_never_allow_an_earlier_attempt(
    rules: ThrottleRules, a: int, b: int, last: datetime
) -> None:
    fewer, more = sorted((a, b))
    few = allowance(failures=fewer, last_failure_at=last, now=NOW, rules=rules)
    many = allowance(failures=more, last_failure_at=last, now=NOW, rules=rules)
    assert few.allowed or not many.allowed
    if not few.allowed and few.retry_at is not None:
        assert many.locked_for_good or (many.retry_at is not None and many.retry_at >= few.retry_at)
    assert rules.delay_after(fewer) <= rules.delay_after(more)


@given(throttle_rules(), st.integers(min_value=0, max_value=10_000), st.booleans())
def test_never_allowed_at_or_after_max_failures(
    rules: ThrottleRules, extra: int, ever: bool
) -> None:
    last = NOW - timedelta(days=365) if ever else None
    result = allowance(
        failures=rules.max_failures + extra, last_failure_at=last, now=NOW, rules=rules
    )
    assert not result.allowed
    assert result.locked_for_good
    assert result.retry_at is None


@given(
    throttle_rules(),
    st.integers(min_value=0, max_value=10**6),
    _near(NOW, timedelta(hours=8), timedelta(0)),
)
def test_delay_is_capped_at_max_delay(rules: ThrottleRules, failures: int, last: datetime) -> None:
    assert timedelta(0) <= rules.delay_after(failures) <= rules.max_delay
    result = allowance(failures=failures, last_failure_at=last, now=NOW, rules=rules)
    if result.retry_at is not None:
        assert result.retry_at - last <= rules.max_delay


@given(throttle_rules(), st.data())
def test_attempt_allowed_exactly_once_the_delay_has_passed(
    rules: ThrottleRules, data: st.DataObject
) -> None:
    assume(max(rules.free_failures, 1) < rules.max_failures)
    failures = data.draw(
        st.integers(min_value=max(rules.free_failures, 1), max_value=rules.max_failures - 1)
    )
    last = data.draw(_near(NOW, timedelta(hours=8), timedelta(minutes=5)))
    result = allowance(failures=failures, last_failure_at=last, now=NOW, rules=rules)
    due = last + rules.delay_after(failures)
    assert result.allowed == (due <= NOW)
    assert result.retry_at == (None if result.allowed else due)


@given(throttle_rules(), st.data())
def test_free_failures_are_free_whatever_the_clocks_say(
    rules: ThrottleRules, data: st.DataObject
) -> None:
    """Fewer than ``free_failures`` failures never make a user wait, even when the last failure was
    stamped by a clock ahead of this one (another server, or an NTP step back)."""
    assume(rules.free_failures > 0)
    failures = data.draw(st.integers(min_value=0, max_value=rules.free_failures - 1))
    last = data.draw(st.none() | _near(NOW, timedelta(hours=1), timedelta(hours=1)))
    assert allowance(failures=failures, last_failure_at=last, now=NOW, rules=rules).allowed


@given(
    st.integers(min_value=-5, max_value=NIST_MAX_FAILURES + 5),
    st.integers(min_value=-5, max_value=NIST_MAX_FAILURES + 5),
    st.timedeltas(timedelta(seconds=-5), timedelta(minutes=5)),
    st.timedeltas(timedelta(seconds=-5), timedelta(hours=2)),
)
def test_throttle_rules_outside_the_nist_bounds_are_refused(
    free: int, maximum: int, base: timedelta, cap: timedelta
) -> None:
    valid = (
        1 <= maximum <= NIST_MAX_FAILURES and 0 <= free <= maximum and timedelta(0) < base <= cap
    )
    if valid:
        ThrottleRules(free_failures=free, max_failures=maximum, base_delay=base, max_delay=cap)
    else:
        with pytest.raises(ConfigurationError):
            ThrottleRules(free_failures=free, max_failures=maximum, base_delay=base, max_delay=cap)


# -- enrollment.apply ---------------------------------------------------------------------------

_PAIRS = list(itertools.product(EnrollmentState, EnrollmentEvent))


@pytest.mark.parametrize(("state", "event"), _PAIRS)
def test_apply_allows_exactly_the_moves_in_the_table(
    state: EnrollmentState, event: EnrollmentEvent
) -> None:
    if (state, event) in TRANSITIONS:
        assert apply(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidTransition) as raised:
            apply(state, event)
        assert (raised.value.state, raised.value.event) == (state, event)


def test_enrollment_table_has_the_designed_moves() -> None:
    """DESIGN.md decision 8 and bar.md 0.5: pending before active, a new begin never drops the
    active secret, reset goes back to nothing from anywhere but nothing."""
    S, E = EnrollmentState, EnrollmentEvent  # noqa: N806 - short aliases for a table
    assert {s for (s, e) in TRANSITIONS if e is E.BEGIN} == set(S)
    assert {s for (s, e) in TRANSITIONS if e is E.CONFIRM} == {S.PENDING, S.REPLACING}
    assert {s for (s, e) in TRANSITIONS if e is E.RESET} == {S.PENDING, S.ACTIVE, S.REPLACING}
    assert all(TRANSITIONS[(s, E.RESET)] is S.NONE for s in (S.PENDING, S.ACTIVE, S.REPLACING))
    assert all(TRANSITIONS[(s, E.BEGIN)].is_enrolled == s.is_enrolled for s in S)


@given(st.lists(st.sampled_from(EnrollmentEvent), max_size=40))
def test_no_sequence_of_moves_enrolls_a_user_without_confirming_a_pending_secret(
    events: list[EnrollmentEvent],
) -> None:
    state = EnrollmentState.NONE
    for event in events:
        try:
            new = apply(state, event)
        except InvalidTransition:
            continue  # refused and nothing changed
        if new.is_enrolled and not state.is_enrolled:
            assert event is EnrollmentEvent.CONFIRM
            assert state is EnrollmentState.PENDING
        if state.is_enrolled and new.is_enrolled is False:
            assert event is EnrollmentEvent.RESET
        state = new


@given(st.booleans(), st.none() | st.timedeltas(timedelta(minutes=-20), timedelta(minutes=20)))
def test_effective_state_counts_only_a_live_pending_secret(
    has_active: bool, offset: timedelta | None
) -> None:
    pending = None
    if offset is not None:
        pending = PendingEnrollment(
            pending_id="p",
            secret=b"x",
            created_at=NOW - timedelta(minutes=30),
            expires_at=NOW + offset,
        )
    state = effective_state(has_active=has_active, pending=pending, now=NOW)
    assert state.is_enrolled == has_active
    live = offset is not None and offset > timedelta(0)
    assert (state in (EnrollmentState.PENDING, EnrollmentState.REPLACING)) == live


# -- the exported strategies draw what they promise --------------------------------------------


@given(t2st.malformed_codes())
def test_malformed_code_strategy_draws_only_non_codes(raw: object) -> None:
    assert totp.normalize_code(raw, 6) is None


@given(st.sampled_from([6, 8]), st.data())
def test_well_formed_code_strategy_draws_codes(digits: int, data: st.DataObject) -> None:
    raw = data.draw(t2st.well_formed_codes(digits))
    assert totp.normalize_code(raw, digits) == raw.replace(" ", "")


@given(st.sampled_from([6, 8]), st.data())
def test_malformed_code_strategy_respects_the_digit_count(digits: int, data: st.DataObject) -> None:
    assert totp.normalize_code(data.draw(t2st.malformed_codes(digits)), digits) is None


@given(t2st.tenant_ids(), t2st.user_ids())
def test_id_strategies_draw_ids_every_call_accepts(tenant_id: str, user_id: str) -> None:
    assert check_identifier(tenant_id, "tenant_id") == tenant_id
    assert check_identifier(user_id, "user_id") == user_id
    uri = totp.provisioning_uri(b"k" * 20, account_name=user_id, issuer="Onum")
    assert uri.startswith("otpauth://totp/Onum:")


@given(t2st.tenant_policies())
def test_policy_strategy_draws_policies_a_sequence_of_toggles_can_leave(
    policy: TenantPolicy,
) -> None:
    if policy.two_factor_required:
        assert policy.activated_at is not None
        assert policy.version % 2 == 1
    else:
        assert policy.grace_period is None
        assert policy.version % 2 == 0
        assert (policy.activated_at is None) == (policy.version == 0)
    if policy.activated_at is not None:
        assert policy.activated_at.utcoffset() == timedelta(0)
    assert policy.grace_period is None or policy.grace_period >= timedelta(0)


@given(t2st.clock_moves())
def test_clock_move_strategy_stays_within_its_documented_range(move: timedelta) -> None:
    assert timedelta(seconds=-90) <= move <= timedelta(hours=48)


@given(t2st.login_sessions())
def test_login_session_strategy_keeps_times_in_order(login: LoginSession) -> None:
    assert login.authenticated_at <= login.identity_verified_at
    assert login.second_factor_at is None or login.authenticated_at <= login.second_factor_at
    assert (login.second_factor_at is None) == (login.second_factor_epoch is None)
    assert login.tag == ""
