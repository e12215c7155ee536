"""The login flow: given plain facts, what must this login do next? Pure: no I/O, no clock.

:func:`next_step` is the whole decision, and :class:`tenant2fa.TwoFactor.login_step` only gathers
its inputs from storage. It implements DESIGN.md decisions 2, 3, 6 and 7:

- A user must enroll when *any* tenant they belong to requires 2FA, and is prompted at their next
  step in *any* tenant (the guide's Tenant A / Tenant B example).
- Before enrolling, the user's identity must be fresh: checked (password, Google, Microsoft...)
  after the newest activation that applies to them, and within ``reauth_window``.
- An enrolled user is asked for a code once per session in a tenant that requires 2FA (or in every
  tenant with ``challenge_everywhere``); a reset of their 2FA (a new security epoch) voids the proof.
- A user whose failure counter says "wait" gets LOCKED instead of a code prompt.
- A tenant that does not require 2FA asks nothing more than the primary sign-in.
- A login whose identity check is older than ``max_login_age`` (12 hours by default, NIST SP
  800-63B's bound for AAL2 sessions), or older than the user's identity floor (raised by a reset
  of their 2FA or its removal), must verify identity again before anything else, in every tenant;
  a second factor proven longer ago than ``max_login_age`` no longer counts either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING

from tenant2fa.enrollment import EnrollmentState
from tenant2fa.errors import NotAMember
from tenant2fa.throttle import ThrottleRules, allowance

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tenant2fa.policy import TenantPolicy
    from tenant2fa.session import LoginSession

__all__ = [
    "LOGIN_TRANSITIONS",
    "FlowConfig",
    "LoginEvent",
    "Step",
    "StepKind",
    "UserFacts",
    "identity_is_current",
    "identity_is_fresh",
    "next_step",
    "second_factor_counts",
]


class StepKind(enum.Enum):
    """What the host must do next for this login in this tenant."""

    VERIFY_IDENTITY = "verify_identity"
    """Ask for the password again (or a fresh Google/Microsoft sign-in), then ``verify_identity``."""
    ENROLL = "enroll"
    """Show the enrollment page: ``begin_enrollment``, then ``confirm_enrollment``."""
    CHALLENGE = "challenge"
    """Ask for the 6-digit code (``verify_code``) or a recovery code (``use_recovery_code``)."""
    LOCKED = "locked"
    """Too many wrong codes: show "try again at ``retry_at``" (or "ask an owner" if ``None``)."""
    DONE = "done"
    """Nothing more is needed: serve the request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """The next step, with what the host needs to render it.

    - ``required_by``: ids of the user's tenants that require 2FA (sorted).
    - ``skippable``: for VERIFY_IDENTITY/ENROLL inside a grace period, the host may offer "later"
      (``TwoFactor.defer_enrollment``) until ``enroll_by``.
    - ``retry_at``: for LOCKED, when the next attempt is allowed; ``None`` means locked until an
      owner unlocks the user (or resets their 2FA).
    """

    kind: StepKind
    tenant_id: str
    required_by: tuple[str, ...] = ()
    skippable: bool = False
    enroll_by: datetime | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserFacts:
    """What the flow needs to know about the user's account (from storage)."""

    state: EnrollmentState
    epoch: int = 0
    failures: int = 0
    last_failure_at: datetime | None = None
    identity_floor: datetime | None = None
    """Logins whose identity was last checked before this must check it again (see
    :func:`identity_is_current`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowConfig:
    reauth_window: timedelta = timedelta(minutes=10)
    """How old a primary authentication may be and still count as fresh for enrolling."""
    challenge_everywhere: bool = False
    """Ask enrolled users for a code in every tenant, not only those requiring 2FA."""
    throttle: ThrottleRules = ThrottleRules()
    max_login_age: timedelta | None = timedelta(hours=12)
    """How long a login's identity check lasts before it must be repeated (``None``: forever)."""


def identity_is_current(
    login: LoginSession,
    *,
    floor: datetime | None,
    now: datetime,
    max_age: timedelta | None,
) -> bool:
    """True unless the login's latest identity check is older than ``max_age`` or than ``floor``.

    A login that is not current gets VERIFY_IDENTITY wherever it goes: its identity check came
    before a reset (or removal) of the user's 2FA, or it was kept too long.
    """
    checked = login.identity_verified_at
    if floor is not None and checked < floor:
        return False
    return max_age is None or now - checked <= max_age


def second_factor_counts(
    login: LoginSession, *, epoch: int, now: datetime, max_age: timedelta | None
) -> bool:
    """True if the login proved the second factor under the user's current security ``epoch``
    and, with ``max_age``, not longer ago than that: after ``max_login_age`` a login must prove
    both factors again, not only the password (NIST SP 800-63B: the session ends)."""
    proven = login.second_factor_at
    if proven is None or login.second_factor_epoch != epoch:
        return False
    return max_age is None or now - proven <= max_age


def identity_is_fresh(
    login: LoginSession,
    *,
    newest_activation: datetime | None,
    now: datetime,
    window: timedelta,
    floor: datetime | None = None,
) -> bool:
    """True if the login's latest primary check is after ``newest_activation``, not before
    ``floor``, and recent (within ``window``): fresh enough to enroll or change 2FA."""
    checked = login.identity_verified_at
    if newest_activation is not None and checked <= newest_activation:
        return False
    if floor is not None and checked < floor:
        return False
    return timedelta(0) <= now - checked <= window


def next_step(
    *,
    tenant_id: str,
    user: UserFacts,
    policies: Sequence[TenantPolicy],
    login: LoginSession,
    now: datetime,
    config: FlowConfig,
) -> Step:
    """The next step of ``login`` in ``tenant_id``.

    ``policies`` are the policies of every tenant the user belongs to; it must include
    ``tenant_id`` (else :class:`NotAMember` is raised).
    """
    current: TenantPolicy | None = None
    requiring: list[TenantPolicy] = []
    for policy in policies:
        if policy.tenant_id == tenant_id:
            current = policy
        if policy.two_factor_required:
            requiring.append(policy)
    if current is None:
        raise NotAMember(tenant_id, login.user_id)
    required_by = tuple(sorted(p.tenant_id for p in requiring))

    if not identity_is_current(
        login, floor=user.identity_floor, now=now, max_age=config.max_login_age
    ):
        return Step(kind=StepKind.VERIFY_IDENTITY, tenant_id=tenant_id, required_by=required_by)

    if user.state.is_enrolled:
        if not (current.two_factor_required or config.challenge_everywhere) or (
            second_factor_counts(login, epoch=user.epoch, now=now, max_age=config.max_login_age)
        ):
            return Step(kind=StepKind.DONE, tenant_id=tenant_id, required_by=required_by)
        retry = _locked(user, now, config.throttle)
        if retry is not None:
            return Step(
                kind=StepKind.LOCKED,
                tenant_id=tenant_id,
                required_by=required_by,
                retry_at=retry[0],
            )
        return Step(kind=StepKind.CHALLENGE, tenant_id=tenant_id, required_by=required_by)

    if not requiring:
        return Step(kind=StepKind.DONE, tenant_id=tenant_id, required_by=required_by)

    deadlines = [d for d in (p.enrollment_deadline() for p in requiring) if d is not None]
    enroll_by = min(deadlines) if deadlines else None
    # Only a grace period makes enrolling skippable: a tenant without one, activated "in the
    # future" by a clock ahead of ours, must not open a window for deferring.
    in_grace = enroll_by is not None and now < enroll_by and all(p.grace_period for p in requiring)
    deferred = login.enrollment_deferred_until
    if in_grace and deferred is not None and now < deferred:
        return Step(kind=StepKind.DONE, tenant_id=tenant_id, required_by=required_by)

    activations = [p.activated_at for p in requiring if p.activated_at is not None]
    fresh = identity_is_fresh(
        login,
        newest_activation=max(activations) if activations else None,
        now=now,
        window=config.reauth_window,
        floor=user.identity_floor,
    )
    kind = StepKind.ENROLL if fresh else StepKind.VERIFY_IDENTITY
    retry = None if kind is StepKind.VERIFY_IDENTITY else _locked(user, now, config.throttle)
    if retry is not None:
        return Step(
            kind=StepKind.LOCKED, tenant_id=tenant_id, required_by=required_by, retry_at=retry[0]
        )
    return Step(
        kind=kind,
        tenant_id=tenant_id,
        required_by=required_by,
        skippable=in_grace,
        enroll_by=enroll_by if in_grace else None,
    )


def _locked(user: UserFacts, now: datetime, rules: ThrottleRules) -> tuple[datetime | None] | None:
    """``(retry_at,)`` if the user's failures make them wait now (``retry_at`` ``None``: until an
    owner unlocks them), else ``None``."""
    allowed = allowance(
        failures=user.failures, last_failure_at=user.last_failure_at, now=now, rules=rules
    )
    return None if allowed.allowed else (allowed.retry_at,)


class LoginEvent(enum.Enum):
    """What moves a login from one step to the next (the edges of the login diagram)."""

    IDENTITY_VERIFIED = "verify_identity"
    ENROLLMENT_CONFIRMED = "confirm_enrollment (right code)"
    ENROLLMENT_DEFERRED = "defer_enrollment (grace period)"
    CODE_ACCEPTED = "verify_code (right code)"
    RECOVERY_CODE_ACCEPTED = "use_recovery_code (unused code)"
    TOO_MANY_FAILURES = "wrong codes reach the throttle"
    RETRY_TIME_PASSED = "retry_at passes"
    IDENTITY_WENT_STALE = "reauth window passes"
    LOGIN_EXPIRED = "max_login_age passes"
    UNLOCKED = "an owner unlocks the user"


_K = StepKind
_L = LoginEvent

LOGIN_TRANSITIONS: Mapping[tuple[StepKind, LoginEvent], frozenset[StepKind]] = MappingProxyType(
    {
        # An expired login checked again goes back to where it was (DONE, or a code prompt).
        (_K.VERIFY_IDENTITY, _L.IDENTITY_VERIFIED): frozenset(
            {_K.ENROLL, _K.LOCKED, _K.CHALLENGE, _K.DONE}
        ),
        # The identity check went stale between begin_enrollment and the confirming code: the
        # code still proves the authenticator that becomes active.
        (_K.VERIFY_IDENTITY, _L.ENROLLMENT_CONFIRMED): frozenset({_K.DONE}),
        (_K.VERIFY_IDENTITY, _L.ENROLLMENT_DEFERRED): frozenset({_K.DONE}),
        (_K.ENROLL, _L.ENROLLMENT_CONFIRMED): frozenset({_K.DONE}),
        (_K.ENROLL, _L.ENROLLMENT_DEFERRED): frozenset({_K.DONE}),
        (_K.ENROLL, _L.TOO_MANY_FAILURES): frozenset({_K.LOCKED}),
        (_K.ENROLL, _L.IDENTITY_WENT_STALE): frozenset({_K.VERIFY_IDENTITY}),
        (_K.CHALLENGE, _L.CODE_ACCEPTED): frozenset({_K.DONE}),
        (_K.CHALLENGE, _L.RECOVERY_CODE_ACCEPTED): frozenset({_K.DONE}),
        (_K.CHALLENGE, _L.TOO_MANY_FAILURES): frozenset({_K.LOCKED}),
        (_K.LOCKED, _L.RETRY_TIME_PASSED): frozenset({_K.CHALLENGE, _K.ENROLL, _K.VERIFY_IDENTITY}),
        (_K.LOCKED, _L.UNLOCKED): frozenset({_K.CHALLENGE, _K.ENROLL, _K.VERIFY_IDENTITY}),
        (_K.DONE, _L.LOGIN_EXPIRED): frozenset({_K.VERIFY_IDENTITY}),
        (_K.CHALLENGE, _L.LOGIN_EXPIRED): frozenset({_K.VERIFY_IDENTITY}),
        (_K.ENROLL, _L.LOGIN_EXPIRED): frozenset({_K.VERIFY_IDENTITY}),
        (_K.LOCKED, _L.LOGIN_EXPIRED): frozenset({_K.VERIFY_IDENTITY}),
    }
)
"""The login flow's moves within one tenant while the tenant policies stay put.

Policy changes (an owner switching 2FA on or off, a reset, a membership removed) can move any step
to any other; those are re-evaluated at the next :func:`next_step`. The stateful tests check every host action against
this table, and the docs' diagram is drawn from it.
"""
