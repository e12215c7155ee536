"""`TwoFactor`: the facade a host application calls. The only orchestrator of I/O.

Each call reads from storage, asks the pure core (:mod:`~tenant2fa.flow`,
:mod:`~tenant2fa.enrollment`, :mod:`~tenant2fa.throttle`, :mod:`~tenant2fa.totp`) for a decision,
writes the outcome with one atomic storage operation, then notifies. Replay protection, throttling
and constant-time comparison are always applied here.

Verification calls fail closed: a storage or decryption error gives ``Reason.UNAVAILABLE``, never
``ok``. Administrative calls raise :class:`~tenant2fa.errors.StorageError` instead.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tenant2fa import enrollment, session, totp
from tenant2fa.audit import AuditKind, AuditQuery, AuditRecord, new_audit_record
from tenant2fa.clock import Clock, SystemClock, require_utc
from tenant2fa.config import Config
from tenant2fa.dispatch import Dispatcher
from tenant2fa.enrollment import EnrollmentEvent, EnrollmentState, PendingEnrollment
from tenant2fa.errors import (
    ConfigurationError,
    Conflict,
    InvalidInput,
    InvalidSession,
    InvalidTransition,
    KeyringError,
    NotAMember,
    PermissionDenied,
    StepUpRequired,
    StorageError,
    TwoFactorRequired,
    UnknownTenant,
)
from tenant2fa.flow import Step, StepKind, UserFacts, identity_is_fresh, next_step
from tenant2fa.notify import Notification, NotificationKind
from tenant2fa.outbox import DeliveryRules
from tenant2fa.policy import (
    Membership,
    Role,
    TenantPolicy,
    check_identifier,
    check_may_toggle,
    switch_two_factor,
)
from tenant2fa.recovery import generate_recovery_codes, normalize_recovery_code
from tenant2fa.results import (
    EnrollmentResult,
    Provisioning,
    Reason,
    RotationReport,
    UserStatus,
    VerifyResult,
)
from tenant2fa.session import LoginSession
from tenant2fa.throttle import allowance

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from tenant2fa.keyring import Keyring
    from tenant2fa.notify import Notifier
    from tenant2fa.storage import FactorRecord, SealedSecrets, Storage

__all__ = ["TwoFactor"]

_log = logging.getLogger("tenant2fa")

_SECRET_PURPOSE = "totp-secret"  # noqa: S105 - a label for associated data, not a secret
_MAX_METHOD_LENGTH = 64
_POLICY_RETRIES = 5


def _check_method(method: object) -> str:
    if not isinstance(method, str) or not 1 <= len(method) <= _MAX_METHOD_LENGTH:
        raise InvalidInput("method must be a short non-empty str such as 'password' or 'google'")
    if not method.isprintable():
        raise InvalidInput("method must not contain control characters")
    return method


class TwoFactor:
    """Multi-tenant TOTP two-factor authentication.

    ``storage`` keeps the state, ``keyring`` encrypts secrets and tags login sessions, ``clock``
    gives the time (the system clock by default; inject :class:`tenant2fa.testing.FakeClock` in
    tests).

    Notifications to users are written to the storage's outbox in the same atomic step as the
    change they report. With a ``notifier`` and ``deliver_inline=True`` (the default) they are
    delivered right after the change commits, best effort; whatever fails is retried by a
    :class:`~tenant2fa.dispatch.Dispatcher` (a background thread, or cron), following
    ``delivery``. With ``deliver_inline=False`` only such a dispatcher delivers them.
    """

    def __init__(
        self,
        *,
        storage: Storage,
        keyring: Keyring,
        notifier: Notifier | None = None,
        clock: Clock | None = None,
        config: Config | None = None,
        deliver_inline: bool = True,
        delivery: DeliveryRules | None = None,
    ) -> None:
        self.storage = storage
        self.keyring = keyring
        self.notifier = notifier
        self.clock: Clock = clock or SystemClock()
        self.config = config or Config()
        self.deliver_inline = deliver_inline
        self.delivery = delivery or DeliveryRules()

    def __repr__(self) -> str:
        return f"TwoFactor(storage={self.storage!r}, keyring={self.keyring!r})"

    # -- helpers ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return require_utc(self.clock.now(), "clock.now()")

    def _login(self, login: object) -> LoginSession:
        return session.verify_tag(login, self.keyring)

    def _sign(self, login: LoginSession) -> LoginSession:
        return session.sign(login, self.keyring)

    def _tenant(self, tenant_id: str) -> TenantPolicy:
        policy = self.storage.get_tenant(check_identifier(tenant_id, "tenant_id"))
        if policy is None:
            raise UnknownTenant(tenant_id)
        return policy

    def _member(self, tenant_id: str, user_id: str) -> TenantPolicy:
        """The tenant's policy, after checking that ``user_id`` is a member."""
        tenant = self._tenant(tenant_id)
        membership = self.storage.get_membership(tenant_id, check_identifier(user_id, "user_id"))
        if membership is None:
            raise NotAMember(tenant_id, user_id)
        return tenant

    @staticmethod
    def _note(kind: NotificationKind, user_id: str, now: datetime, **facts: object) -> Notification:
        return Notification(
            notification_id=secrets.token_hex(16),
            kind=kind,
            user_id=user_id,
            at=now,
            **facts,  # type: ignore[arg-type]
        )

    def dispatcher(self) -> Dispatcher:
        """A :class:`~tenant2fa.dispatch.Dispatcher` for this service's storage, notifier and
        clock (to run in a background thread: ``tf.dispatcher().start(interval=...)``)."""
        if self.notifier is None:
            raise ConfigurationError("a dispatcher needs a notifier")
        return Dispatcher(self.storage, self.notifier, clock=self.clock, rules=self.delivery)

    def _deliver(self, notes: Iterable[Notification]) -> None:
        """Best-effort delivery of just-committed notifications; failures stay in the outbox."""
        ids = [n.notification_id for n in notes]
        if not ids or self.notifier is None or not self.deliver_inline:
            return
        try:
            self.dispatcher().dispatch(ids=ids)
        except StorageError as exc:
            _log.warning("inline delivery postponed (the outbox keeps it): %s", exc)

    def _decrypt(self, blob: bytes, user_id: str) -> bytes:
        return self.keyring.decrypt(blob, purpose=_SECRET_PURPOSE, context=user_id)

    def _facts(self, factor: FactorRecord, now: datetime) -> UserFacts:
        return UserFacts(
            state=factor.state(now),
            epoch=factor.epoch,
            failures=factor.failures,
            last_failure_at=factor.last_failure_at,
        )

    def _newest_activation(self, policies: Iterable[TenantPolicy]) -> datetime | None:
        times = [p.activated_at for p in policies if p.two_factor_required and p.activated_at]
        return max(times) if times else None

    def _require_fresh_identity(self, login: LoginSession, now: datetime) -> None:
        policies = self.storage.tenants_of_user(login.user_id)
        if not identity_is_fresh(
            login,
            newest_activation=self._newest_activation(policies),
            now=now,
            window=self.config.reauth_window,
        ):
            raise StepUpRequired(
                StepKind.VERIFY_IDENTITY, "verify your identity again (password or SSO) first"
            )

    @staticmethod
    def _second_factor_proven(login: LoginSession, factor: FactorRecord) -> bool:
        return login.second_factor_at is not None and login.second_factor_epoch == factor.epoch

    def _lockout_notice(
        self, user_id: str, failures: int, now: datetime, tenant_id: str | None
    ) -> None:
        rules = self.config.throttle
        if failures not in (rules.free_failures, rules.max_failures) or failures == 0:
            return
        state = allowance(failures=failures, last_failure_at=now, now=now, rules=rules)
        tenant = self.storage.get_tenant(tenant_id) if tenant_id else None
        note = self._note(
            NotificationKind.LOCKED_OUT,
            user_id,
            now,
            tenant_id=tenant_id,
            tenant_name=tenant.name if tenant else None,
            retry_at=state.retry_at,
        )
        self.storage.append_audit(
            new_audit_record(
                AuditKind.LOCKED_OUT,
                at=now,
                tenant_id=tenant_id,
                user_id=user_id,
                failures=str(failures),
                until=state.retry_at.isoformat() if state.retry_at else "owner reset",
            ),
            notifications=[note],
        )
        self._deliver([note])

    def _reject(
        self,
        kind: AuditKind,
        login: LoginSession,
        tenant_id: str | None,
        now: datetime,
        failures: int,
        why: str,
    ) -> None:
        self.storage.append_audit(
            new_audit_record(kind, at=now, tenant_id=tenant_id, user_id=login.user_id, reason=why)
        )
        self._lockout_notice(login.user_id, failures, now, tenant_id)

    # -- tenants ----------------------------------------------------------------------------

    def create_tenant(self, tenant_id: str, *, name: str, owner_id: str) -> TenantPolicy:
        """Create a tenant with 2FA off and ``owner_id`` as its first owner.

        Raises :class:`~tenant2fa.errors.TenantExists` if the id is taken.
        """
        check_identifier(tenant_id, "tenant_id")
        check_identifier(owner_id, "owner_id")
        check_identifier(name, "name")
        now = self._now()
        policy = TenantPolicy(tenant_id=tenant_id, name=name)
        owner = Membership(tenant_id=tenant_id, user_id=owner_id, role=Role.OWNER)
        self.storage.create_tenant(
            policy,
            owner,
            new_audit_record(
                AuditKind.TENANT_CREATED, at=now, tenant_id=tenant_id, actor_id=owner_id, name=name
            ),
        )
        return policy

    def tenant(self, tenant_id: str) -> TenantPolicy:
        """The tenant's policy. Raises :class:`~tenant2fa.errors.UnknownTenant`."""
        return self._tenant(tenant_id)

    def add_member(
        self,
        tenant_id: str,
        user_id: str,
        *,
        role: Role = Role.MEMBER,
        actor_id: str | None = None,
    ) -> Membership:
        """Add ``user_id`` to the tenant with ``role``.

        ``actor_id`` names the member doing it (an owner or admin; only owners may add owners);
        ``None`` means the host application itself, e.g. a sign-up flow or an operator.
        """
        check_identifier(user_id, "user_id")
        self._tenant(tenant_id)
        if actor_id is not None:
            actor = self.storage.get_membership(tenant_id, check_identifier(actor_id, "actor_id"))
            allowed = {Role.OWNER} if role is Role.OWNER else {Role.OWNER, Role.ADMIN}
            if actor is None or actor.role not in allowed:
                raise PermissionDenied("only an owner or admin may add members")
        membership = Membership(tenant_id=tenant_id, user_id=user_id, role=role)
        self.storage.add_membership(
            membership,
            new_audit_record(
                AuditKind.MEMBER_ADDED,
                at=self._now(),
                tenant_id=tenant_id,
                user_id=user_id,
                actor_id=actor_id,
                role=role.value,
            ),
        )
        return membership

    def members(self, tenant_id: str) -> list[Membership]:
        """The tenant's members, ordered by user id."""
        self._tenant(tenant_id)
        return self.storage.list_memberships(tenant_id)

    def set_two_factor(
        self,
        tenant_id: str,
        *,
        actor_id: str,
        enabled: bool,
        grace_period: timedelta | None = None,
    ) -> TenantPolicy:
        """Switch the tenant's two-factor authentication on or off. Owners only.

        Raises :class:`~tenant2fa.errors.PermissionDenied` (changing nothing) unless ``actor_id``
        has a role in ``config.toggle_roles``. Writes the tenant's policy row and one audit record,
        never the users: each user is evaluated at their next :meth:`login_step`. Setting the
        current value again changes nothing and writes nothing.
        """
        check_may_toggle(
            self.storage.get_membership(
                check_identifier(tenant_id, "tenant_id"), check_identifier(actor_id, "actor_id")
            ),
            self.config.toggle_roles,
        )
        for _ in range(_POLICY_RETRIES):
            current = self._tenant(tenant_id)
            if current.two_factor_required == enabled and (
                not enabled or current.grace_period == grace_period
            ):
                return current
            now = self._now()
            new = switch_two_factor(current, enabled=enabled, now=now, grace_period=grace_period)
            audit = new_audit_record(
                AuditKind.TWO_FACTOR_SWITCHED,
                at=now,
                tenant_id=tenant_id,
                actor_id=actor_id,
                old="on" if current.two_factor_required else "off",
                new="on" if enabled else "off",
                **({"grace_period": str(grace_period)} if enabled and grace_period else {}),
            )
            # Every owner hears of it, so that a toggle by a compromised owner account is noticed.
            owners = self.storage.list_memberships(tenant_id, role=Role.OWNER)
            notes = [
                self._note(
                    NotificationKind.TENANT_TWO_FACTOR_CHANGED,
                    owner.user_id,
                    now,
                    tenant_id=tenant_id,
                    tenant_name=current.name,
                    actor_id=actor_id,
                    two_factor_on=enabled,
                )
                for owner in owners
            ]
            if self.storage.update_tenant_policy(
                new, expected_version=current.version, audit=audit, notifications=notes
            ):
                _log.info("tenant %r two-factor %s by %r", tenant_id, audit.detail["new"], actor_id)
                self._deliver(notes)
                return new
        raise Conflict(f"tenant {tenant_id!r} policy kept changing; try again")

    # -- login sessions ---------------------------------------------------------------------

    def start_session(self, user_id: str, *, method: str = "password") -> LoginSession:
        """A new login session for a primary sign-in the host has just checked.

        ``method`` names how (``"password"``, ``"google"``, ``"microsoft"``...). No second factor
        is proven yet: call :meth:`login_step` to learn what comes next.
        """
        check_identifier(user_id, "user_id")
        _check_method(method)
        now = self._now()
        login = LoginSession(
            session_id=secrets.token_urlsafe(16),
            user_id=user_id,
            authenticated_at=now,
            method=method,
            identity_verified_at=now,
            identity_method=method,
        )
        self.storage.append_audit(
            new_audit_record(AuditKind.SESSION_STARTED, at=now, user_id=user_id, method=method)
        )
        return self._sign(login)

    def login_step(self, login: LoginSession, tenant_id: str) -> Step:
        """What this login must do next in ``tenant_id``: see :class:`~tenant2fa.flow.StepKind`.

        Raises :class:`~tenant2fa.errors.InvalidSession` for a forged or altered ``login``, and
        :class:`~tenant2fa.errors.NotAMember` if the user is not in the tenant.
        """
        login = self._login(login)
        check_identifier(tenant_id, "tenant_id")
        now = self._now()
        policies = self.storage.tenants_of_user(login.user_id)
        factor = self.storage.get_factor(login.user_id)
        return next_step(
            tenant_id=tenant_id,
            user=self._facts(factor, now),
            policies=policies,
            login=login,
            now=now,
            config=self.config.flow,
        )

    def verify_identity(self, login: LoginSession, *, method: str = "password") -> LoginSession:
        """Record that the host has just re-checked the user's password or SSO sign-in."""
        login = self._login(login)
        _check_method(method)
        now = self._now()
        self.storage.append_audit(
            new_audit_record(
                AuditKind.IDENTITY_VERIFIED, at=now, user_id=login.user_id, method=method
            )
        )
        return self._sign(
            dataclasses.replace(login, identity_verified_at=now, identity_method=method)
        )

    def defer_enrollment(self, login: LoginSession, tenant_id: str) -> LoginSession:
        """Postpone enrolling while every tenant requiring it is in its grace period.

        Raises :class:`~tenant2fa.errors.PermissionDenied` unless :meth:`login_step` offers a
        skippable step. The deferral lasts until the earliest grace period ends.
        """
        step = self.login_step(login, tenant_id)
        if not step.skippable or step.enroll_by is None:
            raise PermissionDenied("enrolling cannot be postponed now")
        now = self._now()
        self.storage.append_audit(
            new_audit_record(
                AuditKind.ENROLLMENT_DEFERRED,
                at=now,
                tenant_id=tenant_id,
                user_id=login.user_id,
                until=step.enroll_by.isoformat(),
            )
        )
        return self._sign(dataclasses.replace(login, enrollment_deferred_until=step.enroll_by))

    def seal_session(self, login: LoginSession) -> str:
        """An encrypted, authenticated token of ``login`` for a cookie (see :meth:`open_session`)."""
        return session.seal(self._login(login), self.keyring)

    def open_session(
        self,
        token: str,
        *,
        user_id: str | None = None,
        max_age: timedelta | None = timedelta(hours=12),
    ) -> LoginSession:
        """The login inside a token from :meth:`seal_session`.

        Raises :class:`~tenant2fa.errors.InvalidSession` if it was forged or altered, when
        ``user_id`` is given and it belongs to another user, or when its sign-in is older than
        ``max_age`` (default 12 hours; ``None`` for no limit) or lies in the future. A sealed
        token cannot be revoked one by one: keep ``max_age`` short, or keep logins server side.
        """
        login = session.unseal(token, self.keyring)
        if user_id is not None and login.user_id != user_id:
            raise InvalidSession("login session belongs to another user")
        if max_age is not None:
            age = self._now() - login.authenticated_at
            if not timedelta(0) <= age <= max_age:
                raise InvalidSession("login session has expired")
        return login

    # -- enrollment ------------------------------------------------------------------------

    def begin_enrollment(
        self, login: LoginSession, *, account_name: str | None = None
    ) -> Provisioning:
        """Issue a new pending secret and return what the enrollment page shows.

        Requires a fresh identity check (after the newest activation and within the re-auth
        window), else raises :class:`~tenant2fa.errors.StepUpRequired` with VERIFY_IDENTITY. For a
        user who already has an authenticator (replacing it), this login must also have proven
        the second factor (StepUpRequired with CHALLENGE). Replaces any pending secret; never the
        active one. ``account_name`` is the label in the app (defaults to the user id).
        """
        login = self._login(login)
        now = self._now()
        self._require_fresh_identity(login, now)
        factor = self.storage.get_factor(login.user_id)
        state = factor.state(now)
        enrollment.apply(state, EnrollmentEvent.BEGIN)
        if state.is_enrolled and not self._second_factor_proven(login, factor):
            raise StepUpRequired(StepKind.CHALLENGE, "enter a code from the current authenticator")
        label = login.user_id if account_name is None else account_name
        secret = totp.generate_secret()
        uri = totp.provisioning_uri(
            secret, account_name=label, issuer=self.config.issuer, settings=self.config.totp
        )
        pending = PendingEnrollment(
            pending_id=secrets.token_urlsafe(12),
            secret=self.keyring.encrypt(secret, purpose=_SECRET_PURPOSE, context=login.user_id),
            created_at=now,
            expires_at=now + self.config.pending_ttl,
        )
        self.storage.save_pending(
            login.user_id,
            pending,
            audit=new_audit_record(
                AuditKind.ENROLLMENT_BEGUN,
                at=now,
                user_id=login.user_id,
                pending_id=pending.pending_id,
            ),
        )
        key = totp.encode_secret(secret)
        return Provisioning(
            uri=uri,
            manual_key=" ".join(key[i : i + 4] for i in range(0, len(key), 4)),
            pending_id=pending.pending_id,
            expires_at=pending.expires_at,
            issuer=self.config.issuer,
            account_name=label,
        )

    def confirm_enrollment(self, login: LoginSession, code: object) -> EnrollmentResult:
        """Activate the pending secret with a code from it.

        On success: the secret becomes the user's authenticator (replacing an old one), fresh
        recovery codes are returned (shown once, stored only as hashes), the user is notified, and
        ``result.login`` counts as having proven the second factor. The attempt counts against
        the user's throttle like any code. Concurrent confirms activate exactly once. Replacing
        an authenticator needs a login that has proven the current one (else
        :class:`~tenant2fa.errors.StepUpRequired` with CHALLENGE).
        """
        login = self._login(login)
        user_id = login.user_id
        code_text = totp.normalize_code(code, self.config.totp.digits)
        if code_text is None:
            return EnrollmentResult(ok=False, reason=Reason.MALFORMED, login=login)
        now = self._now()
        try:
            factor = self.storage.get_factor(user_id)
            pending = factor.pending
            if pending is None or pending.is_expired(now):
                return EnrollmentResult(ok=False, reason=Reason.NOT_PENDING, login=login)
            if factor.secret is not None and not self._second_factor_proven(login, factor):
                # A replacement (begun by any login of the user) replaces the authenticator only
                # for a login that has proven the current one.
                raise StepUpRequired(
                    StepKind.CHALLENGE, "enter a code from the current authenticator first"
                )
            charge = self.storage.charge_attempt(user_id, now=now, rules=self.config.throttle)
            if not charge.allowed:
                return EnrollmentResult(
                    ok=False, reason=Reason.LOCKED, login=login, retry_at=charge.retry_at
                )
            secret = self._decrypt(pending.secret, user_id)
            step = totp.matching_step(
                secret, code_text, totp.time_step(now, self.config.totp.period), self.config.totp
            )
            if step is None:
                self._reject(AuditKind.CODE_REJECTED, login, None, now, charge.failures, "enroll")
                return EnrollmentResult(ok=False, reason=Reason.INVALID, login=login)
            codes = generate_recovery_codes(self.config.recovery_code_count)
            enabled_note = self._note(NotificationKind.TWO_FACTOR_ENABLED, user_id, now)
            epoch = self.storage.activate_pending(
                user_id,
                pending_id=pending.pending_id,
                step=step,
                now=now,
                recovery=self.config.recovery_hasher.new_set(codes),
                audit=new_audit_record(
                    AuditKind.ENROLLMENT_CONFIRMED,
                    at=now,
                    user_id=user_id,
                    pending_id=pending.pending_id,
                    replaced="yes" if factor.secret is not None else "no",
                ),
                notifications=[enabled_note],
            )
            if epoch is None:
                self._reject(
                    AuditKind.CODE_REJECTED, login, None, now, charge.failures, "enroll-raced"
                )
                return EnrollmentResult(ok=False, reason=Reason.INVALID, login=login)
        except (StorageError, KeyringError) as exc:
            _log.error("confirm_enrollment for %r failed closed: %s", user_id, exc)
            return EnrollmentResult(ok=False, reason=Reason.UNAVAILABLE, login=login)
        _log.info("user %r enabled two-factor authentication", user_id)
        self._deliver([enabled_note])
        proven = self._sign(
            dataclasses.replace(login, second_factor_at=now, second_factor_epoch=epoch)
        )
        return EnrollmentResult(ok=True, reason=Reason.OK, login=proven, recovery_codes=codes)

    # -- verification ----------------------------------------------------------------------

    def verify_code(self, login: LoginSession, tenant_id: str, code: object) -> VerifyResult:
        """Check a code from the user's authenticator for this login in ``tenant_id``.

        ``ok`` only for a well-formed code of the active secret, within ±1 time step, for a time
        step never accepted before for this user. The attempt is counted before it is evaluated;
        success resets the count. On any storage or key error the answer is not verified.
        """
        login = self._login(login)
        code_text = totp.normalize_code(code, self.config.totp.digits)
        if code_text is None:
            return VerifyResult(ok=False, reason=Reason.MALFORMED, login=login)
        user_id = login.user_id
        now = self._now()
        try:
            self._member(tenant_id, user_id)
            factor = self.storage.get_factor(user_id)
            if factor.secret is None:
                # Nothing to guess: answer as for a wrong code, but count nothing, so that no one
                # can lock out a user who has not enrolled yet.
                self._reject(AuditKind.CODE_REJECTED, login, tenant_id, now, 0, "not-enrolled")
                return VerifyResult(ok=False, reason=Reason.INVALID, login=login)
            charge = self.storage.charge_attempt(user_id, now=now, rules=self.config.throttle)
            if not charge.allowed:
                return VerifyResult(
                    ok=False, reason=Reason.LOCKED, login=login, retry_at=charge.retry_at
                )
            secret = self._decrypt(factor.secret, user_id)
            step = totp.matching_step(
                secret, code_text, totp.time_step(now, self.config.totp.period), self.config.totp
            )
            accepted = step is not None and self.storage.record_code_success(
                user_id,
                step=step,
                expected_epoch=factor.epoch,
                now=now,
                audit=new_audit_record(
                    AuditKind.CODE_ACCEPTED, at=now, tenant_id=tenant_id, user_id=user_id
                ),
            )
            if not accepted:
                why = "invalid" if step is None else "replayed"
                self._reject(AuditKind.CODE_REJECTED, login, tenant_id, now, charge.failures, why)
                return VerifyResult(ok=False, reason=Reason.INVALID, login=login)
        except (StorageError, KeyringError) as exc:
            _log.error("verify_code for %r failed closed: %s", user_id, exc)
            return VerifyResult(ok=False, reason=Reason.UNAVAILABLE, login=login)
        proven = self._sign(
            dataclasses.replace(login, second_factor_at=now, second_factor_epoch=factor.epoch)
        )
        return VerifyResult(ok=True, reason=Reason.OK, login=proven)

    def use_recovery_code(self, login: LoginSession, tenant_id: str, code: object) -> VerifyResult:
        """Complete the second factor with one of the user's unused recovery codes.

        Throttled with the same counter as codes; costs one hash per attempt. Each code works
        once; the use is audited and the user notified with the number of codes left.
        """
        login = self._login(login)
        canonical = normalize_recovery_code(code)
        if canonical is None:
            return VerifyResult(ok=False, reason=Reason.MALFORMED, login=login)
        user_id = login.user_id
        now = self._now()
        try:
            tenant = self._member(tenant_id, user_id)
            factor = self.storage.get_factor(user_id)
            if factor.secret is None or factor.recovery_salt is None:
                self._reject(
                    AuditKind.RECOVERY_CODE_REJECTED, login, tenant_id, now, 0, "not-enrolled"
                )
                return VerifyResult(ok=False, reason=Reason.INVALID, login=login)
            charge = self.storage.charge_attempt(user_id, now=now, rules=self.config.throttle)
            if not charge.allowed:
                return VerifyResult(
                    ok=False, reason=Reason.LOCKED, login=login, retry_at=charge.retry_at
                )
            used_note = self._note(
                NotificationKind.RECOVERY_CODE_USED,
                user_id,
                now,
                tenant_id=tenant_id,
                tenant_name=tenant.name,
            )
            left = self.storage.consume_recovery_code(
                user_id,
                digest=self.config.recovery_hasher.digest(canonical, factor.recovery_salt),
                now=now,
                audit=new_audit_record(
                    AuditKind.RECOVERY_CODE_USED, at=now, tenant_id=tenant_id, user_id=user_id
                ),
                notifications=[used_note],
            )
            if left is None:
                self._reject(
                    AuditKind.RECOVERY_CODE_REJECTED,
                    login,
                    tenant_id,
                    now,
                    charge.failures,
                    "invalid",
                )
                return VerifyResult(ok=False, reason=Reason.INVALID, login=login)
        except StorageError as exc:
            _log.error("use_recovery_code for %r failed closed: %s", user_id, exc)
            return VerifyResult(ok=False, reason=Reason.UNAVAILABLE, login=login)
        self._deliver([used_note])
        proven = self._sign(
            dataclasses.replace(login, second_factor_at=now, second_factor_epoch=factor.epoch)
        )
        return VerifyResult(ok=True, reason=Reason.OK, login=proven, recovery_codes_left=left)

    def regenerate_recovery_codes(
        self, login: LoginSession
    ) -> tuple[LoginSession, tuple[str, ...]]:
        """Replace the user's recovery codes; the old ones stop working.

        Needs a fresh identity check and a second factor proven in this login. Starts a new
        security epoch: other logins of the user must prove their second factor again. Returns
        the updated login and the new codes (show them once).
        """
        login = self._login(login)
        now = self._now()
        self._require_fresh_identity(login, now)
        factor = self.storage.get_factor(login.user_id)
        if not factor.state(now).is_enrolled:
            raise InvalidTransition(factor.state(now), EnrollmentEvent.CONFIRM)
        if not self._second_factor_proven(login, factor):
            raise StepUpRequired(StepKind.CHALLENGE, "enter a code from your authenticator first")
        codes = generate_recovery_codes(self.config.recovery_code_count)
        note = self._note(NotificationKind.RECOVERY_CODES_REGENERATED, login.user_id, now)
        epoch = self.storage.replace_recovery_codes(
            login.user_id,
            recovery=self.config.recovery_hasher.new_set(codes),
            expected_epoch=factor.epoch,
            audit=new_audit_record(
                AuditKind.RECOVERY_CODES_REGENERATED, at=now, user_id=login.user_id
            ),
            notifications=[note],
        )
        if epoch is None:
            raise Conflict("the user's two-factor settings changed meanwhile; try again")
        self._deliver([note])
        return self._sign(dataclasses.replace(login, second_factor_epoch=epoch)), codes

    # -- reset and removal -----------------------------------------------------------------

    def reset_two_factor(self, tenant_id: str, user_id: str, *, actor_id: str) -> None:
        """An owner resets a member's 2FA (lost phone): the user re-enrolls at their next login.

        The authenticator, pending secret and recovery codes are removed and every existing
        login of the user loses its second-factor proof. Because an enrollment is shared by all
        the user's tenants, this affects them all. It also clears the user's failure counter,
        which is how a user locked for good is let back in (even one with nothing enrolled).
        Owners cannot reset their own 2FA this way. Raises :class:`~tenant2fa.errors.PermissionDenied`,
        :class:`~tenant2fa.errors.NotAMember`, or :class:`~tenant2fa.errors.InvalidTransition`
        if the user has nothing to reset.
        """
        check_may_toggle(
            self.storage.get_membership(
                check_identifier(tenant_id, "tenant_id"), check_identifier(actor_id, "actor_id")
            ),
            self.config.toggle_roles,
        )
        if actor_id == user_id:
            raise PermissionDenied("owners cannot reset their own two-factor authentication")
        tenant = self._member(tenant_id, user_id)
        now = self._now()
        factor = self.storage.get_factor(user_id)
        state = factor.state(now)
        # A user with nothing enrolled may still be locked (wrong confirmation codes for a pending
        # secret that has since expired): the reset then only clears the lock.
        if state is not EnrollmentState.NONE or factor.failures == 0:
            enrollment.apply(state, EnrollmentEvent.RESET)
        note = self._note(
            NotificationKind.TWO_FACTOR_RESET,
            user_id,
            now,
            tenant_id=tenant_id,
            tenant_name=tenant.name,
            actor_id=actor_id,
        )
        epoch = self.storage.reset_factor(
            user_id,
            audit=new_audit_record(
                AuditKind.TWO_FACTOR_RESET,
                at=now,
                tenant_id=tenant_id,
                user_id=user_id,
                actor_id=actor_id,
                previous=state.value,
            ),
            notifications=[note],
        )
        if epoch is None:
            raise InvalidTransition(EnrollmentState.NONE, EnrollmentEvent.RESET)
        _log.info("two-factor of %r reset by %r in %r", user_id, actor_id, tenant_id)
        self._deliver([note])

    def remove_two_factor(self, login: LoginSession) -> LoginSession:
        """The user removes their own 2FA. Allowed only when none of their tenants requires it,
        with a fresh identity check and a second factor proven in this login."""
        login = self._login(login)
        now = self._now()
        policies = self.storage.tenants_of_user(login.user_id)
        if any(p.two_factor_required for p in policies):
            raise TwoFactorRequired("a tenant you belong to requires two-factor authentication")
        self._require_fresh_identity(login, now)
        factor = self.storage.get_factor(login.user_id)
        state = factor.state(now)
        enrollment.apply(state, EnrollmentEvent.RESET)
        if state.is_enrolled and not self._second_factor_proven(login, factor):
            raise StepUpRequired(StepKind.CHALLENGE, "enter a code from your authenticator first")
        note = self._note(NotificationKind.TWO_FACTOR_REMOVED, login.user_id, now)
        epoch = self.storage.reset_factor(
            login.user_id,
            audit=new_audit_record(
                AuditKind.TWO_FACTOR_REMOVED,
                at=now,
                user_id=login.user_id,
                actor_id=login.user_id,
                previous=state.value,
            ),
            notifications=[note],
        )
        if epoch is None:
            raise InvalidTransition(EnrollmentState.NONE, EnrollmentEvent.RESET)
        self._deliver([note])
        return self._sign(
            dataclasses.replace(login, second_factor_at=None, second_factor_epoch=None)
        )

    # -- keys ------------------------------------------------------------------------------

    def rotate_keys(
        self,
        *,
        batch: int = 500,
        after_user_id: str | None = None,
        progress: Callable[[RotationReport], None] | None = None,
    ) -> RotationReport:
        """Re-encrypt every stored TOTP secret (active and pending) with the keyring's primary
        key, so that older keys can later leave the ring.

        Each user is one compare-and-set, so the run can be interrupted at any point and run
        again: ciphertexts already under the primary key are skipped (``after_user_id`` starts
        past a known point). Users whose ciphertext no key opens are listed in ``failed`` and
        left as they are. ``progress`` is called after each batch. One audit record at the end.
        """
        primary = self.keyring.primary_key_id
        report = RotationReport(last_user_id=after_user_id)
        while True:
            page = self.storage.sealed_secrets(after_user_id=report.last_user_id, limit=batch)
            if not page:
                break
            for sealed in page:
                report = self._rewrap(sealed, primary, report)
            if progress is not None:
                progress(report)
            if len(page) < batch:
                break
        now = self._now()
        self.storage.append_audit(
            new_audit_record(
                AuditKind.KEYS_ROTATED,
                at=now,
                key_id=primary,
                rewrapped=str(report.rewrapped),
                current=str(report.current),
                changed=str(report.changed),
                failed=str(len(report.failed)),
            )
        )
        return report

    def _rewrap(
        self, sealed: SealedSecrets, primary: str, report: RotationReport
    ) -> RotationReport:
        blobs = [b for b in (sealed.secret, sealed.pending_secret) if b is not None]
        done = dataclasses.replace(report, last_user_id=sealed.user_id)
        try:
            if all(self.keyring.key_id_of(b) == primary for b in blobs):
                # Already under the primary key id; open them anyway, so that a ring whose key
                # under that id is the wrong one is reported rather than taken for done.
                for blob in blobs:
                    self._decrypt(blob, sealed.user_id)
                return dataclasses.replace(done, current=report.current + 1)

            def again(blob: bytes | None) -> bytes | None:
                if blob is None:
                    return None
                return self.keyring.reencrypt(blob, purpose=_SECRET_PURPOSE, context=sealed.user_id)

            new = dataclasses.replace(
                sealed, secret=again(sealed.secret), pending_secret=again(sealed.pending_secret)
            )
        except KeyringError:
            _log.error("cannot re-encrypt the secret of user %r: no key opens it", sealed.user_id)
            return dataclasses.replace(done, failed=(*report.failed, sealed.user_id))
        if self.storage.rewrap_secrets(sealed, new):
            return dataclasses.replace(done, rewrapped=report.rewrapped + 1)
        return dataclasses.replace(done, changed=report.changed + 1)

    # -- reading ---------------------------------------------------------------------------

    def user_status(self, user_id: str) -> UserStatus:
        """The user's 2FA state (no secrets)."""
        check_identifier(user_id, "user_id")
        now = self._now()
        factor = self.storage.get_factor(user_id)
        allowed = allowance(
            failures=factor.failures,
            last_failure_at=factor.last_failure_at,
            now=now,
            rules=self.config.throttle,
        )
        return UserStatus(
            user_id=user_id,
            state=factor.state(now),
            activated_at=factor.activated_at,
            recovery_codes_left=factor.recovery_codes_left,
            failures=factor.failures,
            locked=not allowed.allowed,
            retry_at=allowed.retry_at,
            epoch=factor.epoch,
        )

    def audit_log(self, query: AuditQuery | None = None, **filters: object) -> list[AuditRecord]:
        """Audit records, oldest first. Pass an :class:`~tenant2fa.audit.AuditQuery` or its fields
        as keywords (``tenant_id=``, ``user_id=``, ``kinds=``, ``since=``, ``until=``, ``limit=``,
        ``offset=``)."""
        if query is None:
            query = AuditQuery(**filters)  # type: ignore[arg-type]
        elif filters:
            raise InvalidInput("pass either an AuditQuery or keyword filters, not both")
        return self.storage.audit_records(query)
