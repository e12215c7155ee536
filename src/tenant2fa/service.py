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
from typing import TYPE_CHECKING, TypeVar

from tenant2fa import enrollment, operations, session, totp
from tenant2fa.audit import AuditKind, AuditQuery, AuditRecord, new_audit_record
from tenant2fa.clock import Clock, SystemClock, later, require_utc
from tenant2fa.config import Config
from tenant2fa.dispatch import Dispatcher
from tenant2fa.enrollment import EnrollmentEvent, EnrollmentState, PendingEnrollment
from tenant2fa.errors import (
    ConcurrentChange,
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
from tenant2fa.flow import (
    Step,
    StepKind,
    second_factor_counts,
)
from tenant2fa.notify import Notification, NotificationKind
from tenant2fa.outbox import DeliveryRules
from tenant2fa.policy import (
    OPERATOR,
    SELF,
    Action,
    Actor,
    Membership,
    Role,
    TenantPolicy,
    check_factor_authority,
    check_grace_period,
    check_identifier,
    check_may_toggle,
    check_member_action,
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
    from collections.abc import Callable, Iterable, Sequence

    from tenant2fa.keyring import Keyring
    from tenant2fa.notify import Notifier
    from tenant2fa.policy import Standing
    from tenant2fa.storage import SealedSecrets, Storage

__all__ = ["TwoFactor"]

_log = logging.getLogger("tenant2fa")

_SECRET_PURPOSE = operations.SECRET_PURPOSE
_MAX_METHOD_LENGTH = 64
_POLICY_RETRIES = 5
_COMMIT_RETRIES = 8
_MAX_BATCH = 10_000
_AUDIT_FILTERS = frozenset(f.name for f in dataclasses.fields(AuditQuery))
_T = TypeVar("_T")


def _check_method(method: object) -> str:
    if not isinstance(method, str) or not 1 <= len(method) <= _MAX_METHOD_LENGTH:
        raise InvalidInput("method must be a short non-empty str such as 'password' or 'google'")
    if not method.isprintable():
        raise InvalidInput("method must not contain control characters")
    return method


def _check_role(role: object) -> Role:
    if not isinstance(role, Role):
        raise InvalidInput(f"role must be a tenant2fa.Role, got {type(role).__name__}")
    return role


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

    def _sign(self, login: LoginSession, **changes: object) -> LoginSession:
        return session.sign(login, self.keyring, **changes)

    def _tenant(self, tenant_id: str) -> TenantPolicy:
        policy = self.storage.get_tenant(check_identifier(tenant_id, "tenant_id"))
        if policy is None:
            raise UnknownTenant(tenant_id)
        return policy

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
        except Exception:  # noqa: BLE001 - logged with its traceback; see below
            # The change is committed: a failure to tell of it must not make the call look
            # failed (the host might make it again). The outbox keeps what was not delivered.
            _log.exception("inline delivery failed (the outbox keeps it)")

    def _context(self) -> operations.Context:
        return operations.Context(
            now=self._now(), config=self.config, keyring=self.keyring, new_id=_new_id
        )

    def _perform(self, request: operations.Request) -> object:
        """Answer one request of an operation (:mod:`tenant2fa.operations`) with blocking
        storage calls."""
        match request:
            case operations.LoadLogin(user_id, recovery_codes):
                return self.storage.load_login(user_id, recovery_codes=recovery_codes)
            case operations.CommitFactor(commit):
                return self.storage.commit_factor(commit)
            case operations.AppendAudit(record):
                self.storage.append_audit(record)
            case operations.GetTenant(tenant_id):
                return self.storage.get_tenant(tenant_id)
            case operations.Deliver(notifications):
                self._deliver(notifications)
            case operations.Log(level, message, args):
                _log.log(level, message, *args)
        return None

    def _drive(self, operation: operations.Operation[_T]) -> _T:
        return operations.drive(operation, self._perform)

    @staticmethod
    def _retrying(decide_and_write: Callable[[], _T]) -> _T:
        """Run a read-decide-write whose write refuses a changed snapshot (ConcurrentChange)
        again from the read, a few times."""
        for _ in range(_POLICY_RETRIES - 1):
            try:
                return decide_and_write()
            except ConcurrentChange:
                continue
        return decide_and_write()

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
        operator: str | None = None,
    ) -> Membership:
        """Add ``user_id`` to the tenant with ``role``, and tell the user (``MEMBER_ADDED``).

        ``actor_id`` names the member doing it: an owner, or an admin adding an admin or a member
        (:data:`~tenant2fa.policy.MEMBER_RULES`). ``operator`` names the host application or its
        operator doing it instead (a sign-up flow: ``operator="signup"``). One of them is
        required: a request with no signed-in user must not pass for the host. When the new
        member is an owner, the other owners are told too. Raises
        :class:`~tenant2fa.errors.PermissionDenied`, :class:`~tenant2fa.errors.UnknownTenant`
        or :class:`~tenant2fa.errors.AlreadyMember`, storing nothing.
        """
        actor = Actor.of(actor_id, operator)
        check_identifier(user_id, "user_id")
        role = _check_role(role)
        tenant = self._tenant(tenant_id)
        membership = Membership(tenant_id=tenant_id, user_id=user_id, role=role)

        def attempt() -> Membership:
            acting = self._acting_member(tenant_id, actor)
            self._check_member_action(Action.ADD_MEMBER, acting, membership)
            audit, notes = self._membership_change(
                tenant, user_id, actor, acting, role=role, role_before=None
            )
            self.storage.add_membership(membership, audit, actor=acting, notifications=notes)
            self._deliver(notes)
            return membership

        return self._retrying(attempt)

    def remove_member(
        self,
        tenant_id: str,
        user_id: str,
        *,
        actor_id: str | None = None,
        operator: str | None = None,
    ) -> None:
        """Remove ``user_id`` from the tenant (or, with ``actor_id == user_id``, leave it).

        From then on the user gets :class:`~tenant2fa.errors.NotAMember` for this tenant, is no
        longer bound by its policy, and cannot be reset or unlocked through it. Their second
        factor stays: it belongs to the user, not to the tenant. The user is notified
        (``MEMBER_REMOVED``) and the removal audited.

        Owners may remove anyone, admins admins and members, anyone themselves
        (:data:`~tenant2fa.policy.MEMBER_RULES`); ``operator`` acts for the host. Raises
        :class:`~tenant2fa.errors.PermissionDenied`, :class:`~tenant2fa.errors.NotAMember`,
        :class:`~tenant2fa.errors.UnknownTenant`, or :class:`~tenant2fa.errors.LastOwner` when
        it would leave the tenant without an owner; nothing changes then.
        """
        actor = Actor.of(actor_id, operator)
        check_identifier(user_id, "user_id")
        tenant = self._tenant(tenant_id)

        def attempt() -> None:
            acting, target = self._acting_on(tenant_id, user_id, actor)
            self._check_member_action(Action.REMOVE_MEMBER, acting, target)
            audit, notes = self._membership_change(
                tenant,
                user_id,
                actor,
                acting,
                role=None,
                role_before=target.role,
            )
            self.storage.remove_membership(target, actor=acting, audit=audit, notifications=notes)
            _log.info("%r removed from tenant %r by %r", user_id, tenant_id, audit.actor_id)
            self._deliver(notes)

        self._retrying(attempt)

    def set_role(
        self,
        tenant_id: str,
        user_id: str,
        role: Role,
        *,
        actor_id: str | None = None,
        operator: str | None = None,
    ) -> Membership:
        """Give member ``user_id`` ``role`` in the tenant; returns the new membership.

        Owners may change anyone's role (making another member an owner, then stepping down, is
        how ownership is transferred); admins may move admins and members between those two
        roles; anyone may step down within those rules (:data:`~tenant2fa.policy.MEMBER_RULES`).
        The member is notified (``ROLE_CHANGED``), and every other owner (``OWNERS_CHANGED``) when
        the change makes or
        unmakes an owner. Setting the current role changes and writes nothing. Raises as
        :meth:`remove_member` does (:class:`~tenant2fa.errors.LastOwner` for demoting the only
        owner).
        """
        actor = Actor.of(actor_id, operator)
        check_identifier(user_id, "user_id")
        role = _check_role(role)
        tenant = self._tenant(tenant_id)

        def attempt() -> Membership:
            acting, target = self._acting_on(tenant_id, user_id, actor)
            self._check_member_action(Action.CHANGE_ROLE, acting, target, new_role=role)
            if target.role is role:
                return target
            audit, notes = self._membership_change(
                tenant,
                user_id,
                actor,
                acting,
                role=role,
                role_before=target.role,
            )
            self.storage.change_role(target, role, actor=acting, audit=audit, notifications=notes)
            _log.info("%r is now %s of tenant %r", user_id, role.value, tenant_id)
            self._deliver(notes)
            return dataclasses.replace(target, role=role)

        return self._retrying(attempt)

    def _check_member_action(
        self,
        action: Action,
        acting: Membership | None,
        target: Membership,
        *,
        new_role: Role | None = None,
    ) -> None:
        """MEMBER_RULES for a member acting; the host or an operator (``acting`` None) may."""
        if acting is not None:
            check_member_action(
                action,
                actor=acting,
                target=target,
                new_role=new_role,
                gated_roles=self.config.toggle_roles,
            )

    def _membership_change(
        self,
        tenant: TenantPolicy,
        user_id: str,
        actor: Actor,
        acting: Membership | None,
        *,
        role: Role | None,
        role_before: Role | None,
    ) -> tuple[AuditRecord, list[Notification]]:
        """The audit record of a membership change (``role_before`` ``None``: the user joins;
        ``role`` ``None``: they leave; else a role change), the member's notice, and the other
        owners' when an owner comes or goes (see :meth:`_owner_notices`)."""
        now = self._now()
        actor_name, actor_role = self._actor_facts(actor, acting, user_id)
        detail: dict[str, str]
        if role_before is None and role is not None:
            kinds = (AuditKind.MEMBER_ADDED, NotificationKind.MEMBER_ADDED)
            detail = {"role": role.value}
        elif role is None and role_before is not None:
            kinds = (AuditKind.MEMBER_REMOVED, NotificationKind.MEMBER_REMOVED)
            detail = {"role": role_before.value}
        elif role is not None and role_before is not None:
            kinds = (AuditKind.ROLE_CHANGED, NotificationKind.ROLE_CHANGED)
            detail = {"old": role_before.value, "new": role.value}
        else:
            raise InvalidInput("a membership change has a role before or after it")
        audit_kind, note_kind = kinds
        audit = new_audit_record(
            audit_kind,
            at=now,
            tenant_id=tenant.tenant_id,
            user_id=user_id,
            actor_id=actor_name,
            actor_role=actor_role,
            **detail,
        )
        notes = [
            self._note(
                note_kind,
                user_id,
                now,
                tenant_id=tenant.tenant_id,
                tenant_name=tenant.name,
                role=None if role is None else role.value,
                previous_role=None if role_before is None else role_before.value,
                actor_id=actor_name,
                actor_role=actor_role,
            ),
            *self._owner_notices(
                tenant, user_id, role, role_before, now, actor=(actor_name, actor_role)
            ),
        ]
        return audit, notes

    def _owner_notices(
        self,
        tenant: TenantPolicy,
        member_id: str,
        role: Role | None,
        previous_role: Role | None,
        now: datetime,
        *,
        actor: tuple[str, str],
    ) -> list[Notification]:
        """``OWNERS_CHANGED`` for every other owner of the tenant, when ``member_id`` becomes or
        stops being an owner (``None``: not a member), so that an owner planted or pushed out
        by a compromised account is noticed. None otherwise."""
        if Role.OWNER not in (role, previous_role):
            return []
        owners = self.storage.list_memberships(tenant.tenant_id, role=Role.OWNER)
        return [
            self._note(
                NotificationKind.OWNERS_CHANGED,
                owner.user_id,
                now,
                tenant_id=tenant.tenant_id,
                tenant_name=tenant.name,
                member_id=member_id,
                role=None if role is None else role.value,
                previous_role=None if previous_role is None else previous_role.value,
                actor_id=actor[0],
                actor_role=actor[1],
            )
            for owner in owners
            if owner.user_id != member_id
        ]

    def _acting_member(self, tenant_id: str, actor: Actor) -> Membership | None:
        """The acting member's membership; ``None`` for the host or an operator. Raises
        :class:`~tenant2fa.errors.PermissionDenied` for an actor who is no member."""
        if actor.user_id is None:
            return None
        acting = self.storage.get_membership(tenant_id, actor.user_id)
        if acting is None:
            raise PermissionDenied("you are not a member of this tenant with the right role")
        return acting

    def _acting_on(
        self, tenant_id: str, user_id: str, actor: Actor
    ) -> tuple[Membership | None, Membership]:
        """The acting member (checked first: a stranger learns nothing of the tenant's members)
        and the member acted on; :class:`~tenant2fa.errors.NotAMember` if there is none."""
        acting = self._acting_member(tenant_id, actor)
        target = self.storage.get_membership(tenant_id, user_id)
        if target is None:
            raise NotAMember(tenant_id, user_id)
        return acting, target

    @staticmethod
    def _actor_facts(actor: Actor, acting: Membership | None, user_id: str) -> tuple[str, str]:
        """``(actor_id, actor_role)`` as audit records and notifications name them."""
        if acting is None:
            return actor.audit_id, OPERATOR
        return acting.user_id, SELF if acting.user_id == user_id else acting.role.value

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

        ``grace_period`` (when switching on) lets members postpone enrolling that long; at most
        ``config.max_grace_period`` (90 days), else :class:`~tenant2fa.errors.InvalidInput`.

        Raises :class:`~tenant2fa.errors.PermissionDenied` (changing nothing) unless ``actor_id``
        has a role in ``config.toggle_roles``. Writes the tenant's policy row and one audit record,
        never the users: each user is evaluated at their next :meth:`login_step`. Setting the
        current value again changes nothing and writes nothing.
        """
        if not isinstance(enabled, bool):
            raise InvalidInput("enabled must be True or False")
        check_grace_period(grace_period, self.config.max_grace_period)
        check_identifier(tenant_id, "tenant_id")
        check_identifier(actor_id, "actor_id")
        for _ in range(_POLICY_RETRIES):
            # Checked again on every try, and the write holds only if the role still does: an
            # owner removed meanwhile switches nothing.
            acting = self.storage.get_membership(tenant_id, actor_id)
            check_may_toggle(acting, self.config.toggle_roles)
            current = self._tenant(tenant_id)
            if current.two_factor_required == enabled and (
                not enabled or current.grace_period == grace_period
            ):
                return current
            now = self._now()
            new = switch_two_factor(
                current,
                enabled=enabled,
                now=now,
                grace_period=grace_period,
                max_grace_period=self.config.max_grace_period,
            )
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
            try:
                written = self.storage.update_tenant_policy(
                    new,
                    expected_version=current.version,
                    audit=audit,
                    notifications=notes,
                    actor=acting,
                )
            except ConcurrentChange:
                continue
            if written:
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
        if self.config.audit_sessions:
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
        return self._drive(operations.login_step(self._context(), login, tenant_id))

    def verify_identity(self, login: LoginSession, *, method: str = "password") -> LoginSession:
        """Record that the host has just re-checked the user's password or SSO sign-in.

        The check is dated now, or at the user's identity floor if a reset was stamped by a
        clock ahead of ours: it came after that reset, and must not count as older than it.
        """
        login = self._login(login)
        _check_method(method)
        now = self._now()
        floor = self.storage.get_factor(login.user_id).identity_floor
        checked = now if floor is None or now >= floor else floor
        self.storage.append_audit(
            new_audit_record(
                AuditKind.IDENTITY_VERIFIED, at=now, user_id=login.user_id, method=method
            )
        )
        return self._sign(login, identity_verified_at=checked, identity_method=method)

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
        return self._sign(login, enrollment_deferred_until=step.enroll_by)

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
        Raises :class:`~tenant2fa.errors.InvalidInput` for a ``user_id`` that is no id, or a
        ``max_age`` that is not a timedelta of at least zero.
        """
        if user_id is not None:
            check_identifier(user_id, "user_id")
        if max_age is not None and (not isinstance(max_age, timedelta) or max_age < timedelta(0)):
            raise InvalidInput("max_age must be None or a timedelta of at least zero")
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
        label = login.user_id if account_name is None else account_name
        secret = totp.generate_secret()
        uri = totp.provisioning_uri(
            secret, account_name=label, issuer=self.config.issuer, settings=self.config.totp
        )
        pending = PendingEnrollment(
            pending_id=secrets.token_urlsafe(12),
            secret=self.keyring.encrypt(secret, purpose=_SECRET_PURPOSE, context=login.user_id),
            created_at=now,
            expires_at=later(now, self.config.pending_ttl),
        )
        self._drive(operations.begin_enrollment(self._context(), login, pending))
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
        code_text = totp.normalize_code(code, self.config.totp.digits)
        if code_text is None:
            return EnrollmentResult(ok=False, reason=Reason.MALFORMED, login=login)
        codes = generate_recovery_codes(self.config.recovery_code_count)
        recovery = self.config.recovery_hasher.new_set(codes)
        return self._drive(
            operations.confirm_enrollment(self._context(), login, code_text, codes, recovery)
        )

    # -- verification ----------------------------------------------------------------------

    def verify_code(self, login: LoginSession, tenant_id: str, code: object) -> VerifyResult:
        """Check a code from the user's authenticator for this login in ``tenant_id``.

        ``ok`` only for a well-formed code of the active secret, within ±1 time step, for a time
        step never accepted before for this user. The attempt is counted in the same write as its
        outcome (a wrong code one more failure, a right one a cleared count), and an attempt the
        throttle refuses is not evaluated. On any storage or key error the answer is not
        verified.
        """
        login = self._login(login)
        code_text = totp.normalize_code(code, self.config.totp.digits)
        if code_text is None:
            return VerifyResult(ok=False, reason=Reason.MALFORMED, login=login)
        check_identifier(tenant_id, "tenant_id")
        return self._drive(operations.verify_code(self._context(), login, tenant_id, code_text))

    def use_recovery_code(self, login: LoginSession, tenant_id: str, code: object) -> VerifyResult:
        """Complete the second factor with one of the user's unused recovery codes.

        Throttled with the same counter as codes; costs one hash per attempt. Each code works
        once; the use is audited and the user notified with the number of codes left.
        """
        login = self._login(login)
        canonical = normalize_recovery_code(code)
        if canonical is None:
            return VerifyResult(ok=False, reason=Reason.MALFORMED, login=login)
        check_identifier(tenant_id, "tenant_id")
        operation = operations.use_recovery_code(self._context(), login, tenant_id, canonical)
        return self._drive(operation)

    def regenerate_recovery_codes(
        self, login: LoginSession
    ) -> tuple[LoginSession, tuple[str, ...]]:
        """Replace the user's recovery codes; the old ones stop working.

        Needs a fresh identity check and a second factor proven in this login. Starts a new
        security epoch: other logins of the user must prove their second factor again. Returns
        the updated login and the new codes (show them once).
        """
        login = self._login(login)
        codes = generate_recovery_codes(self.config.recovery_code_count)
        recovery = self.config.recovery_hasher.new_set(codes)
        operation = operations.regenerate_recovery_codes(self._context(), login, recovery)
        epoch = self._drive(operation)
        return self._sign(login, second_factor_epoch=epoch), codes

    # -- reset and removal -----------------------------------------------------------------

    def reset_two_factor(
        self,
        tenant_id: str,
        user_id: str,
        *,
        actor_id: str | None = None,
        operator: str | None = None,
    ) -> None:
        """Reset a member's 2FA (a lost phone): the user enrolls again at their next login.

        The authenticator, pending secret and recovery codes are removed, the failure counter
        cleared, every existing login of the user loses its second-factor proof, and every login
        whose identity was checked before now must check it again (so a login value copied
        before the reset cannot enroll the copier's phone). The user is notified.

        An enrollment is shared by all the user's tenants, so an owner (``actor_id``) may reset
        it only with authority over every tenant of the user that requires 2FA
        (:func:`~tenant2fa.policy.check_factor_authority`); nobody resets their own this way.
        Otherwise only the host may, naming its ``operator`` (audited under that name).

        Raises :class:`~tenant2fa.errors.PermissionDenied` (the same message whichever tenant
        is missing), :class:`~tenant2fa.errors.UnknownTenant`,
        :class:`~tenant2fa.errors.NotAMember`, or :class:`~tenant2fa.errors.InvalidTransition`
        if the user has nothing to reset. Nothing changes then.
        """
        actor = Actor.of(actor_id, operator)
        check_identifier(user_id, "user_id")
        tenant = self._tenant(tenant_id)

        def attempt() -> None:
            standings, actor_name, actor_role = self._factor_authority(
                Action.RESET_TWO_FACTOR, tenant_id, user_id, actor
            )
            now = self._now()
            factor = self.storage.get_factor(user_id)
            state = factor.state(now)
            # A user with nothing enrolled may still be locked (wrong confirmation codes for a
            # pending secret that has since expired): the reset then only clears the lock.
            if state is not EnrollmentState.NONE or factor.failures == 0:
                enrollment.apply(state, EnrollmentEvent.RESET)
            note = self._note(
                NotificationKind.TWO_FACTOR_RESET,
                user_id,
                now,
                tenant_id=tenant_id,
                tenant_name=tenant.name,
                actor_id=actor_name,
                actor_role=actor_role,
            )
            epoch = self.storage.reset_factor(
                user_id,
                floor=now,
                audit=new_audit_record(
                    AuditKind.TWO_FACTOR_RESET,
                    at=now,
                    tenant_id=tenant_id,
                    user_id=user_id,
                    actor_id=actor_name,
                    previous=state.value,
                    actor_role=actor_role,
                ),
                notifications=[note],
                actor_id=actor.user_id,
                expected=standings,
            )
            if epoch is None:
                raise InvalidTransition(EnrollmentState.NONE, EnrollmentEvent.RESET)
            _log.info("two-factor of %r reset by %r in %r", user_id, actor_name, tenant_id)
            self._deliver([note])

        self._retrying(attempt)

    def unlock(
        self,
        tenant_id: str,
        user_id: str,
        *,
        actor_id: str | None = None,
        operator: str | None = None,
    ) -> bool:
        """Clear a member's wrong-code lock (the failure counter) without touching their factor.

        The authenticator and recovery codes keep working; the user is notified and the unlock
        audited. This is how a user locked for good (NIST's 100 failures) gets back in without
        a reset handing their next enrollment to whoever knows the password. Because it hands
        out fresh guesses at a factor shared by every tenant of the user, it needs the same
        authority as :meth:`reset_two_factor`, and raises the same errors. Returns ``False``
        (writing nothing) if no failure was counted.
        """
        actor = Actor.of(actor_id, operator)
        check_identifier(user_id, "user_id")
        tenant = self._tenant(tenant_id)

        def attempt() -> bool:
            standings, actor_name, actor_role = self._factor_authority(
                Action.UNLOCK, tenant_id, user_id, actor
            )
            now = self._now()
            note = self._note(
                NotificationKind.TWO_FACTOR_UNLOCKED,
                user_id,
                now,
                tenant_id=tenant_id,
                tenant_name=tenant.name,
                actor_id=actor_name,
                actor_role=actor_role,
            )
            unlocked = self.storage.unlock_factor(
                user_id,
                audit=new_audit_record(
                    AuditKind.TWO_FACTOR_UNLOCKED,
                    at=now,
                    tenant_id=tenant_id,
                    user_id=user_id,
                    actor_id=actor_name,
                    actor_role=actor_role,
                ),
                notifications=[note],
                actor_id=actor.user_id,
                expected=standings,
            )
            if unlocked:
                _log.info("%r unlocked by %r in %r", user_id, actor_name, tenant_id)
                self._deliver([note])
            return unlocked

        return self._retrying(attempt)

    def _factor_authority(
        self, action: Action, tenant_id: str, user_id: str, actor: Actor
    ) -> tuple[Sequence[Standing] | None, str, str]:
        """Check that ``actor`` may ``action`` the user's shared factor through ``tenant_id``.

        Returns the standings the decision rests on (``None`` for an operator, whose authority
        rests on nothing stored), and the actor's audit name and role.
        """
        if actor.user_id is None:
            standings = self.storage.standings(user_id, actor_id=None)
            check_factor_authority(
                action, tenant_id=tenant_id, user_id=user_id, actor=actor, standings=standings
            )
            return None, actor.audit_id, OPERATOR
        # The actor's own role here first: a stranger learns nothing about the user.
        acting = self._acting_member(tenant_id, actor)
        if acting is None or acting.role not in self.config.toggle_roles:
            raise PermissionDenied(
                "only an owner of this tenant may reset or unlock its members' two-factor "
                "authentication"
            )
        standings = self.storage.standings(user_id, actor_id=actor.user_id)
        check_factor_authority(
            action,
            tenant_id=tenant_id,
            user_id=user_id,
            actor=actor,
            standings=standings,
            gated_roles=self.config.toggle_roles,
            challenge_everywhere=self.config.challenge_everywhere,
        )
        return standings, actor.audit_id, acting.role.value

    def remove_two_factor(self, login: LoginSession) -> LoginSession:
        """The user removes their own 2FA. Allowed only when none of their tenants requires it,
        with a fresh identity check and a second factor proven in this login. Other logins of
        the user whose identity was checked before this one's must check it again."""
        login = self._login(login)
        now = self._now()

        def attempt() -> None:
            loaded = self.storage.load_login(login.user_id)
            if any(s.policy.two_factor_required for s in loaded.tenants):
                raise TwoFactorRequired("a tenant you belong to requires two-factor authentication")
            factor = loaded.factor
            operations.require_fresh_identity(self._context(), login, loaded)
            state = factor.state(now)
            enrollment.apply(state, EnrollmentEvent.RESET)
            if state.is_enrolled and not second_factor_counts(
                login, epoch=factor.epoch, now=now, max_age=self.config.max_login_age
            ):
                raise StepUpRequired(
                    StepKind.CHALLENGE, "enter a code from your authenticator first"
                )
            note = self._note(NotificationKind.TWO_FACTOR_REMOVED, login.user_id, now)
            epoch = self.storage.reset_factor(
                login.user_id,
                # Every other login whose identity was checked before this one's must check it
                # again; this one (which just proved it) goes on.
                floor=login.identity_verified_at,
                audit=new_audit_record(
                    AuditKind.TWO_FACTOR_REMOVED,
                    at=now,
                    user_id=login.user_id,
                    actor_id=login.user_id,
                    previous=state.value,
                ),
                notifications=[note],
                # The decision rested on no tenant requiring 2FA: a tenant that switched it on
                # (or a membership that changed) meanwhile refuses the write, and we decide
                # again.
                expected=loaded.tenants,
            )
            if epoch is None:
                raise InvalidTransition(EnrollmentState.NONE, EnrollmentEvent.RESET)
            self._deliver([note])

        self._retrying(attempt)
        return self._sign(login, second_factor_at=None, second_factor_epoch=None)

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

        ``batch`` (users read at a time) runs from 1 to 10,000; anything else, an
        ``after_user_id`` that is no id, or a ``progress`` that cannot be called raises
        :class:`~tenant2fa.errors.InvalidInput`.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= _MAX_BATCH:
            raise InvalidInput(f"batch must be a whole number from 1 to {_MAX_BATCH}")
        if after_user_id is not None:
            check_identifier(after_user_id, "after_user_id")
        if progress is not None and not callable(progress):
            raise InvalidInput("progress must be a callable or None")
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
                    self.keyring.decrypt(blob, purpose=_SECRET_PURPOSE, context=sealed.user_id)
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
        ``offset=``). Raises :class:`~tenant2fa.errors.InvalidInput` for an unknown filter or a
        value :class:`~tenant2fa.audit.AuditQuery` refuses."""
        if query is None:
            unknown = sorted(set(filters) - _AUDIT_FILTERS)
            if unknown:
                raise InvalidInput(f"unknown audit filters: {', '.join(n[:40] for n in unknown)}")
            query = AuditQuery(**filters)  # type: ignore[arg-type]
        elif not isinstance(query, AuditQuery):
            raise InvalidInput(f"query must be an AuditQuery, got {type(query).__name__}")
        elif filters:
            raise InvalidInput("pass either an AuditQuery or keyword filters, not both")
        return self.storage.audit_records(query)


def _new_id() -> str:
    """A fresh random id for an audit record or a notification."""
    return secrets.token_hex(16)
