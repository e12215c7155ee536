"""The login operations, written once: read one snapshot, decide, write one change.

Each operation is a generator that *yields* the storage requests it needs (:class:`LoadLogin`,
:class:`CommitFactor`, ...) and is *sent* their answers, as httpx's auth flows and h11 do
(sans-I/O): it never touches storage, a clock or the network itself. :class:`~tenant2fa.TwoFactor`
drives them with blocking calls (:func:`drive`); an asynchronous driver awaits the same requests,
so no decision, validation or audit rule is written twice.

A storage failure is thrown into the operation at the request that failed: verification
operations answer it with ``Reason.UNAVAILABLE`` (they fail closed), the others let it out.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from tenant2fa import attempts, enrollment, session, totp
from tenant2fa.audit import AuditKind, AuditRecord
from tenant2fa.config import Config
from tenant2fa.enrollment import EnrollmentEvent, PendingEnrollment
from tenant2fa.errors import (
    InvalidTransition,
    KeyringError,
    NotAMember,
    StepUpRequired,
    StorageError,
    UnknownTenant,
)
from tenant2fa.factor import FactorCommit, FactorRecord, LoginState
from tenant2fa.flow import (
    Step,
    StepKind,
    UserFacts,
    identity_is_current,
    identity_is_fresh,
    next_step,
    second_factor_counts,
)
from tenant2fa.keyring import Keyring
from tenant2fa.notification import Notification, NotificationKind
from tenant2fa.policy import TenantPolicy
from tenant2fa.recovery import RecoveryCodeSet
from tenant2fa.results import EnrollmentResult, Reason, VerifyResult
from tenant2fa.session import LoginSession
from tenant2fa.throttle import Allowance

__all__ = [
    "AppendAudit",
    "CommitFactor",
    "Context",
    "Deliver",
    "GetTenant",
    "LoadLogin",
    "Log",
    "Operation",
    "Request",
    "begin_enrollment",
    "confirm_enrollment",
    "drive",
    "login_step",
    "regenerate_recovery_codes",
    "require_current_identity",
    "require_fresh_identity",
    "use_recovery_code",
    "verify_code",
]

_T = TypeVar("_T")

SECRET_PURPOSE = "totp-secret"  # noqa: S105 - a label for associated data, not a secret
COMMIT_RETRIES = 8
"""How many times an operation reads and decides again when its write finds the record moved."""


# -- what an operation asks of its driver -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadLogin:
    """Answer: :meth:`Storage.load_login(user_id, recovery_codes=...)`'s :class:`LoginState`."""

    user_id: str
    recovery_codes: bool = False


@dataclass(frozen=True, slots=True)
class CommitFactor:
    """Answer: :meth:`Storage.commit_factor(commit)`'s bool."""

    commit: FactorCommit


@dataclass(frozen=True, slots=True)
class AppendAudit:
    """Answer: ``None`` once :meth:`Storage.append_audit(record)` is done."""

    record: AuditRecord


@dataclass(frozen=True, slots=True)
class GetTenant:
    """Answer: :meth:`Storage.get_tenant(tenant_id)`'s policy or ``None``."""

    tenant_id: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Deliver just-committed notifications, best effort (the outbox keeps what fails).
    Answer: ``None``; never fails."""

    notifications: tuple[Notification, ...]


@dataclass(frozen=True, slots=True)
class Log:
    """Log ``message % args`` at ``level`` (a :mod:`logging` level). Answer: ``None``."""

    level: int
    message: str
    args: tuple[object, ...] = ()


Request = LoadLogin | CommitFactor | AppendAudit | GetTenant | Deliver | Log
Operation = Generator[Request, Any, _T]

_ERROR = 40  # logging.ERROR, without importing logging into the decisions
_INFO = 20  # logging.INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What an operation decides with besides the stored state: the time, the configuration,
    the keyring, and a source of fresh random ids (record and notification ids), injected as the
    clock is."""

    now: datetime
    config: Config
    keyring: Keyring
    new_id: Callable[[], str]


def drive(operation: Operation[_T], perform: Callable[[Request], object]) -> _T:
    """Run ``operation`` to its end with ``perform`` answering each request (the blocking
    driver); a :class:`~tenant2fa.errors.StorageError` from ``perform`` is thrown into the
    operation at that request."""
    try:
        request = next(operation)
        while True:
            try:
                answer = perform(request)
            except StorageError as exc:
                request = operation.throw(exc)
            else:
                request = operation.send(answer)
    except StopIteration as done:
        result: _T = done.value
        return result


# -- small decisions shared by the operations --------------------------------------------------


def _audit(
    ctx: Context,
    kind: AuditKind,
    *,
    tenant_id: str | None = None,
    user_id: str | None = None,
    **detail: str,
) -> AuditRecord:
    return AuditRecord(
        record_id=ctx.new_id(),
        at=ctx.now,
        kind=kind,
        tenant_id=tenant_id,
        user_id=user_id,
        actor_id=None,
        detail=MappingProxyType(dict(detail)),
    )


def _note(ctx: Context, kind: NotificationKind, user_id: str, **facts: Any) -> Notification:  # noqa: ANN401
    return Notification(
        notification_id=ctx.new_id(), kind=kind, user_id=user_id, at=ctx.now, **facts
    )


def _sign(ctx: Context, login: LoginSession, **changes: Any) -> LoginSession:  # noqa: ANN401
    return session.sign(login, ctx.keyring, **changes)


def _decrypt(ctx: Context, blob: bytes, user_id: str) -> bytes:
    return ctx.keyring.decrypt(blob, purpose=SECRET_PURPOSE, context=user_id)


def _newest_activation(policies: Iterable[TenantPolicy]) -> datetime | None:
    times = [p.activated_at for p in policies if p.two_factor_required and p.activated_at]
    return max(times) if times else None


def _facts(factor: FactorRecord, now: datetime) -> UserFacts:
    return UserFacts(
        state=factor.state(now),
        epoch=factor.epoch,
        failures=factor.failures,
        last_failure_at=factor.last_failure_at,
        identity_floor=factor.identity_floor,
    )


def _proven(ctx: Context, login: LoginSession, factor: FactorRecord) -> bool:
    return second_factor_counts(
        login, epoch=factor.epoch, now=ctx.now, max_age=ctx.config.max_login_age
    )


def require_fresh_identity(ctx: Context, login: LoginSession, state: LoginState) -> None:
    if not identity_is_fresh(
        login,
        newest_activation=_newest_activation(s.policy for s in state.tenants),
        now=ctx.now,
        window=ctx.config.reauth_window,
        floor=state.factor.identity_floor,
    ):
        raise StepUpRequired(
            StepKind.VERIFY_IDENTITY, "verify your identity again (password or SSO) first"
        )


def require_current_identity(ctx: Context, login: LoginSession, factor: FactorRecord) -> None:
    """A login kept too long, or older than a reset of the user's 2FA, may do nothing but verify
    the user's identity again."""
    if not identity_is_current(
        login, floor=factor.identity_floor, now=ctx.now, max_age=ctx.config.max_login_age
    ):
        raise StepUpRequired(
            StepKind.VERIFY_IDENTITY,
            "this login is too old or predates a reset: verify your identity again first",
        )


def _tenant_of(state: LoginState, tenant_id: str) -> Operation[TenantPolicy]:
    """The policy of ``tenant_id``, after checking that the snapshot's user is a member."""
    standing = state.standing(tenant_id)
    if standing is None:
        # Only on this error path: tell an unknown tenant from one the user is not in.
        if (yield GetTenant(tenant_id)) is None:
            raise UnknownTenant(tenant_id)
        raise NotAMember(tenant_id, state.factor.user_id)
    return standing.policy


_Decided = tuple[FactorCommit | None, _T]
_Decision = Generator[Request, Any, _Decided[_T]]


def _committing(
    user_id: str,
    decide: Callable[[LoginState], _Decision[_T] | _Decided[_T]],
    *,
    recovery_codes: bool = False,
) -> Operation[_T]:
    """Read the user's snapshot, decide, and write the decision (if any) in one
    compare-and-set; if the record moved on meanwhile, read and decide again, a few times, then
    fail (StorageError). Delivers what the write notified."""
    for _ in range(COMMIT_RETRIES):
        state = yield LoadLogin(user_id, recovery_codes)
        decided = decide(state)
        # A decision that needs nothing more is a plain function; one that may ask (the
        # tenant's name, an audit record) is a generator.
        if isinstance(decided, tuple):
            commit, result = decided
        else:
            commit, result = yield from decided
        if commit is None:
            return result
        if (yield CommitFactor(commit)):
            if commit.notifications:
                yield Deliver(commit.notifications)
            return result
    raise StorageError("the user's two-factor record kept changing; try again")


def _rejection(
    ctx: Context,
    kind: AuditKind,
    factor: FactorRecord,
    tenant: TenantPolicy | None,
    why: str,
) -> FactorCommit:
    """The write of a failed attempt: one more failure counted, the rejection audited and,
    where the count starts a wait or a lock, the user told, all in one commit."""
    failed = attempts.charged(factor, now=ctx.now)
    tenant_id = tenant.tenant_id if tenant else None
    records = [_audit(ctx, kind, tenant_id=tenant_id, user_id=factor.user_id, reason=why)]
    notes: tuple[Notification, ...] = ()
    lockout = attempts.lockout_after(failed.failures, now=ctx.now, rules=ctx.config.throttle)
    if lockout is not None:
        notes = (
            _note(
                ctx,
                NotificationKind.LOCKED_OUT,
                factor.user_id,
                tenant_id=tenant_id,
                tenant_name=tenant.name if tenant else None,
                retry_at=lockout.retry_at,
            ),
        )
        records.append(
            _audit(
                ctx,
                AuditKind.LOCKED_OUT,
                tenant_id=tenant_id,
                user_id=factor.user_id,
                failures=str(failed.failures),
                until=lockout.retry_at.isoformat() if lockout.retry_at else "owner unlock",
            )
        )
    return FactorCommit(
        factor=failed,
        expected_revision=factor.revision,
        at=ctx.now,
        audit=tuple(records),
        notifications=notes,
    )


_Result = TypeVar("_Result", VerifyResult, EnrollmentResult)


def _locked(kind: type[_Result], login: LoginSession, refused: Allowance) -> _Result:
    """The answer to an attempt the throttle refused: not evaluated, nothing counted."""
    return kind(ok=False, reason=Reason.LOCKED, login=login, retry_at=refused.retry_at)


def _unenrolled(ctx: Context, kind: AuditKind, user_id: str, tenant_id: str) -> Operation[None]:
    """Audit a code for a user with nothing to check it against. Nothing is counted, so that no
    one can lock out a user who has not enrolled yet."""
    yield AppendAudit(
        _audit(ctx, kind, tenant_id=tenant_id, user_id=user_id, reason="not-enrolled")
    )


def _matching_digest(digest: bytes, unused: Sequence[bytes]) -> bytes | None:
    """The stored digest equal to ``digest``, compared in constant time with every one of them
    (how many are compared, and where the match is, does not show in the time taken)."""
    found = None
    for candidate in unused:
        if hmac.compare_digest(digest, candidate):
            found = candidate
    return found


def _failed_closed(name: str, user_id: str, exc: Exception) -> Log:
    return Log(_ERROR, "%s for %r failed closed: %s", (name, user_id, exc))


# -- the operations ----------------------------------------------------------------------------


def login_step(ctx: Context, login: LoginSession, tenant_id: str) -> Operation[Step]:
    """What ``login`` must do next in ``tenant_id`` (one read)."""
    state = yield LoadLogin(login.user_id)
    return next_step(
        tenant_id=tenant_id,
        user=_facts(state.factor, ctx.now),
        policies=[s.policy for s in state.tenants],
        login=login,
        now=ctx.now,
        config=ctx.config.flow,
    )


def begin_enrollment(
    ctx: Context, login: LoginSession, pending: PendingEnrollment
) -> Operation[None]:
    """Store ``pending`` (made by the caller from a fresh secret) as the user's pending
    enrollment, if the login may begin one."""
    audit = _audit(
        ctx, AuditKind.ENROLLMENT_BEGUN, user_id=login.user_id, pending_id=pending.pending_id
    )

    def decide(state: LoginState) -> _Decided[None]:
        factor = state.factor
        require_fresh_identity(ctx, login, state)
        current = factor.state(ctx.now)
        enrollment.apply(current, EnrollmentEvent.BEGIN)
        if current.is_enrolled and not _proven(ctx, login, factor):
            raise StepUpRequired(StepKind.CHALLENGE, "enter a code from the current authenticator")
        saved = attempts.pending_saved(factor, pending)
        commit = FactorCommit(
            factor=saved, expected_revision=factor.revision, at=ctx.now, audit=(audit,)
        )
        return commit, None

    yield from _committing(login.user_id, decide)


def confirm_enrollment(
    ctx: Context,
    login: LoginSession,
    code: str,
    codes: tuple[str, ...],
    recovery: RecoveryCodeSet,
) -> Operation[EnrollmentResult]:
    """Activate the pending secret with ``code`` (well-formed); ``codes`` become the recovery
    codes (``recovery`` holds their digests)."""
    user_id = login.user_id
    counter = totp.time_step(ctx.now, ctx.config.totp.period)

    def decide(state: LoginState) -> _Decided[EnrollmentResult]:
        factor = state.factor
        require_current_identity(ctx, login, factor)
        pending = factor.pending
        if pending is None or pending.is_expired(ctx.now):
            return None, EnrollmentResult(ok=False, reason=Reason.NOT_PENDING, login=login)
        if factor.secret is not None and not _proven(ctx, login, factor):
            # A replacement (begun by any login of the user) replaces the authenticator only for
            # a login that has proven the current one.
            raise StepUpRequired(
                StepKind.CHALLENGE, "enter a code from the current authenticator first"
            )
        refused = attempts.refusal(factor, now=ctx.now, rules=ctx.config.throttle)
        if refused is not None:
            return None, _locked(EnrollmentResult, login, refused)
        secret = _decrypt(ctx, pending.secret, user_id)
        step = totp.matching_step(secret, code, counter, ctx.config.totp)
        active = None
        if step is not None:
            active = attempts.activating(factor, step=step, now=ctx.now, recovery=recovery)
        if active is None:
            why = "enroll" if step is None else "enroll-replayed"
            rejected = _rejection(ctx, AuditKind.CODE_REJECTED, factor, None, why)
            return rejected, EnrollmentResult(ok=False, reason=Reason.INVALID, login=login)
        commit = FactorCommit(
            factor=active,
            expected_revision=factor.revision,
            at=ctx.now,
            recovery=recovery,
            audit=(
                _audit(
                    ctx,
                    AuditKind.ENROLLMENT_CONFIRMED,
                    user_id=user_id,
                    pending_id=pending.pending_id,
                    replaced="yes" if factor.secret is not None else "no",
                ),
            ),
            notifications=(_note(ctx, NotificationKind.TWO_FACTOR_ENABLED, user_id),),
        )
        proven = _sign(ctx, login, second_factor_at=ctx.now, second_factor_epoch=active.epoch)
        return commit, EnrollmentResult(
            ok=True, reason=Reason.OK, login=proven, recovery_codes=codes
        )

    try:
        result = yield from _committing(user_id, decide)
    except (StorageError, KeyringError) as exc:
        yield _failed_closed("confirm_enrollment", user_id, exc)
        return EnrollmentResult(ok=False, reason=Reason.UNAVAILABLE, login=login)
    if result.ok:
        yield Log(_INFO, "user %r enabled two-factor authentication", (user_id,))
    return result


def verify_code(
    ctx: Context, login: LoginSession, tenant_id: str, code: str
) -> Operation[VerifyResult]:
    """Check a well-formed ``code`` from the user's authenticator for ``login`` in
    ``tenant_id``: one read, and one write that counts the attempt with its outcome."""
    user_id = login.user_id
    counter = totp.time_step(ctx.now, ctx.config.totp.period)

    def decide(state: LoginState) -> _Decision[VerifyResult]:
        tenant = yield from _tenant_of(state, tenant_id)
        factor = state.factor
        require_current_identity(ctx, login, factor)
        if factor.secret is None:
            # Nothing to guess: answer as for a wrong code.
            yield from _unenrolled(ctx, AuditKind.CODE_REJECTED, user_id, tenant_id)
            return None, VerifyResult(ok=False, reason=Reason.INVALID, login=login)
        refused = attempts.refusal(factor, now=ctx.now, rules=ctx.config.throttle)
        if refused is not None:
            return None, _locked(VerifyResult, login, refused)
        secret = _decrypt(ctx, factor.secret, user_id)
        step = totp.matching_step(secret, code, counter, ctx.config.totp)
        accepted = None if step is None else attempts.accepting_code(factor, step=step)
        if accepted is None:
            why = "invalid" if step is None else "replayed"
            rejected = _rejection(ctx, AuditKind.CODE_REJECTED, factor, tenant, why)
            return rejected, VerifyResult(ok=False, reason=Reason.INVALID, login=login)
        commit = FactorCommit(
            factor=accepted,
            expected_revision=factor.revision,
            at=ctx.now,
            audit=(_audit(ctx, AuditKind.CODE_ACCEPTED, tenant_id=tenant_id, user_id=user_id),),
        )
        proven = _sign(ctx, login, second_factor_at=ctx.now, second_factor_epoch=factor.epoch)
        return commit, VerifyResult(ok=True, reason=Reason.OK, login=proven)

    try:
        return (yield from _committing(user_id, decide))
    except (StorageError, KeyringError) as exc:
        yield _failed_closed("verify_code", user_id, exc)
        return VerifyResult(ok=False, reason=Reason.UNAVAILABLE, login=login)


def use_recovery_code(
    ctx: Context, login: LoginSession, tenant_id: str, canonical: str
) -> Operation[VerifyResult]:
    """Complete the second factor with the recovery code ``canonical`` (normalized)."""
    user_id = login.user_id
    digests: dict[bytes, bytes] = {}  # salt -> digest: hashed once, even if decided again

    def decide(state: LoginState) -> _Decision[VerifyResult]:
        tenant = yield from _tenant_of(state, tenant_id)
        factor = state.factor
        require_current_identity(ctx, login, factor)
        salt = factor.recovery_salt
        if factor.secret is None or salt is None:
            yield from _unenrolled(ctx, AuditKind.RECOVERY_CODE_REJECTED, user_id, tenant_id)
            return None, VerifyResult(ok=False, reason=Reason.INVALID, login=login)
        refused = attempts.refusal(factor, now=ctx.now, rules=ctx.config.throttle)
        if refused is not None:
            return None, _locked(VerifyResult, login, refused)
        if salt not in digests:
            digests[salt] = ctx.config.recovery_hasher.digest(canonical, salt)
        unused = state.recovery_digests or ()
        found = _matching_digest(digests[salt], unused)
        if found is None:
            rejected = _rejection(ctx, AuditKind.RECOVERY_CODE_REJECTED, factor, tenant, "invalid")
            return rejected, VerifyResult(ok=False, reason=Reason.INVALID, login=login)
        left = len(unused) - 1
        commit = FactorCommit(
            factor=attempts.recovering(factor, codes_left=left),
            expected_revision=factor.revision,
            at=ctx.now,
            use_recovery_code=found,
            audit=(
                _audit(ctx, AuditKind.RECOVERY_CODE_USED, tenant_id=tenant_id, user_id=user_id),
            ),
            notifications=(
                _note(
                    ctx,
                    NotificationKind.RECOVERY_CODE_USED,
                    user_id,
                    tenant_id=tenant_id,
                    tenant_name=tenant.name,
                    recovery_codes_left=left,
                ),
            ),
        )
        proven = _sign(ctx, login, second_factor_at=ctx.now, second_factor_epoch=factor.epoch)
        return commit, VerifyResult(
            ok=True, reason=Reason.OK, login=proven, recovery_codes_left=left
        )

    try:
        return (yield from _committing(user_id, decide, recovery_codes=True))
    except StorageError as exc:
        yield _failed_closed("use_recovery_code", user_id, exc)
        return VerifyResult(ok=False, reason=Reason.UNAVAILABLE, login=login)


def regenerate_recovery_codes(
    ctx: Context, login: LoginSession, recovery: RecoveryCodeSet
) -> Operation[int]:
    """Replace the user's recovery codes by ``recovery``; the new epoch."""
    audit = _audit(ctx, AuditKind.RECOVERY_CODES_REGENERATED, user_id=login.user_id)
    note = _note(ctx, NotificationKind.RECOVERY_CODES_REGENERATED, login.user_id)

    def decide(state: LoginState) -> _Decided[int]:
        factor = state.factor
        require_fresh_identity(ctx, login, state)
        if not factor.state(ctx.now).is_enrolled:
            raise InvalidTransition(factor.state(ctx.now), EnrollmentEvent.CONFIRM)
        if not _proven(ctx, login, factor):
            raise StepUpRequired(StepKind.CHALLENGE, "enter a code from your authenticator first")
        replaced = attempts.codes_replaced(factor, recovery)
        commit = FactorCommit(
            factor=replaced,
            expected_revision=factor.revision,
            at=ctx.now,
            recovery=recovery,
            audit=(audit,),
            notifications=(note,),
        )
        return commit, replaced.epoch

    return (yield from _committing(login.user_id, decide))
