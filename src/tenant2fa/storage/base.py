"""The storage protocol: atomic domain operations, not CRUD.

Every method is one atomic unit: it fully happens or leaves the previous state (a crash or error
in between must not leave half of it). Methods that change a user's factor are compare-and-set
operations whose condition is part of the same atomic step as the write, so concurrent requests in
different threads or processes cannot both pass. Backends raise :class:`~tenant2fa.errors.StorageError`
(wrapping the driver's exception) for infrastructure failures, and never put secrets in messages.

Time values are aware UTC datetimes; ``last_step`` and counters are Python ints (time steps go past
2**32 in 2603: use 64-bit columns).

Operations that change security state take the audit record and the ``notifications`` that report
the change, and store all of them in the same atomic step (the transactional outbox): either the
change, its audit record and its notifications are all stored, or none is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tenant2fa.enrollment import EnrollmentState, PendingEnrollment, effective_state
from tenant2fa.errors import ConcurrentChange, LastOwner, NotAMember
from tenant2fa.policy import Role

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import timedelta

    from tenant2fa.audit import AuditQuery, AuditRecord
    from tenant2fa.notify import Notification
    from tenant2fa.outbox import OutboxItem, OutboxState
    from tenant2fa.policy import Membership, Standing, TenantPolicy
    from tenant2fa.recovery import RecoveryCodeSet
    from tenant2fa.throttle import ThrottleRules

__all__ = [
    "Charge",
    "FactorRecord",
    "SealedSecrets",
    "Storage",
    "check_actor_holds",
    "check_member_change",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorRecord:
    """Everything stored about one user's second factor (shared by all of their tenants).

    ``secret`` and ``pending.secret`` are keyring ciphertexts bound to the user. ``last_step`` only
    ever grows, across resets too, so no reset or re-enrollment re-opens a used time step.
    """

    user_id: str
    secret: bytes | None = field(default=None, repr=False)
    activated_at: datetime | None = None
    last_step: int = -1
    pending: PendingEnrollment | None = None
    epoch: int = 0
    failures: int = 0
    last_failure_at: datetime | None = None
    recovery_salt: bytes | None = field(default=None, repr=False)
    recovery_codes_left: int = 0
    identity_floor: datetime | None = None
    """Set by a reset or removal of the factor: logins whose identity was checked before it must
    check it again. Only ever grows."""

    def state(self, now: datetime) -> EnrollmentState:
        return effective_state(has_active=self.secret is not None, pending=self.pending, now=now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """The answer of :meth:`Storage.charge_attempt`.

    ``allowed``: the attempt was counted and may be evaluated. Otherwise nothing was counted and the
    user waits until ``retry_at`` (``None`` with ``locked_for_good``: until an owner reset).
    """

    allowed: bool
    failures: int
    retry_at: datetime | None = None
    locked_for_good: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedSecrets:
    """A user's stored ciphertexts, for re-encrypting them under a new key."""

    user_id: str
    secret: bytes | None = field(default=None, repr=False)
    pending_id: str | None = None
    pending_secret: bytes | None = field(default=None, repr=False)


def check_actor_holds(actor: Membership | None, role_of: Callable[[str, str], Role | None]) -> None:
    """The actor guard of the membership and policy writes, for backends: raise
    :class:`~tenant2fa.errors.ConcurrentChange` unless ``actor`` (if given) is still a member of
    its tenant with exactly its role. ``role_of(tenant_id, user_id)`` reads the stored role inside
    the backend's atomic step (``None``: no member)."""
    if actor is not None and role_of(actor.tenant_id, actor.user_id) is not actor.role:
        raise ConcurrentChange("the acting member's role changed meanwhile")


def check_member_change(
    membership: Membership,
    actor: Membership | None,
    *,
    role_of: Callable[[str, str], Role | None],
    losing_owner: bool,
    count_owners: Callable[[], int],
) -> None:
    """The guards of :meth:`Storage.remove_membership` and :meth:`Storage.change_role`, for
    backends to run inside their atomic step: the member is still there with
    ``membership.role`` (else :class:`~tenant2fa.errors.NotAMember` or
    :class:`~tenant2fa.errors.ConcurrentChange`), the actor still holds its role, and, when the
    change takes an owner away (``losing_owner``), another owner remains
    (:class:`~tenant2fa.errors.LastOwner`; ``count_owners`` is only called then)."""
    role = role_of(membership.tenant_id, membership.user_id)
    if role is None:
        raise NotAMember(membership.tenant_id, membership.user_id)
    if role is not membership.role:
        raise ConcurrentChange("the member's role changed meanwhile")
    check_actor_holds(actor, role_of)
    if losing_owner and role is Role.OWNER and count_owners() <= 1:
        raise LastOwner(membership.tenant_id)


@runtime_checkable
class Storage(Protocol):
    """What a backend must provide. Run :mod:`tenant2fa.testing.conformance` against yours."""

    # -- tenants and memberships ------------------------------------------------------------

    def create_tenant(self, policy: TenantPolicy, owner: Membership, audit: AuditRecord) -> None:
        """Store a new tenant, its first owner's membership and ``audit``, atomically.

        Raises :class:`~tenant2fa.errors.TenantExists` (and stores nothing) if the id is taken.
        """
        ...

    def get_tenant(self, tenant_id: str) -> TenantPolicy | None:
        """The tenant's current policy, or ``None``."""
        ...

    def list_tenants(
        self, *, after_tenant_id: str | None = None, limit: int = 1000
    ) -> list[TenantPolicy]:
        """Tenants ordered by id, starting after ``after_tenant_id`` (for paging)."""
        ...

    def update_tenant_policy(
        self,
        policy: TenantPolicy,
        *,
        expected_version: int,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor: Membership | None = None,
    ) -> bool:
        """Replace the policy of ``policy.tenant_id`` if its stored version is ``expected_version``,
        and store ``audit`` and ``notifications`` with it. Returns ``False`` and changes nothing
        otherwise. With ``actor``, the member switching it must still be a member with exactly
        that role when it is written, else :class:`~tenant2fa.errors.ConcurrentChange` and
        nothing changes (an owner removed meanwhile switches nothing).

        One row: the cost must not depend on the number of members.
        """
        ...

    def add_membership(
        self,
        membership: Membership,
        audit: AuditRecord,
        *,
        actor: Membership | None = None,
        notifications: Sequence[Notification] = (),
    ) -> None:
        """Store a membership, ``audit`` and ``notifications`` atomically.

        Raises :class:`~tenant2fa.errors.UnknownTenant` or
        :class:`~tenant2fa.errors.AlreadyMember` (storing nothing), and
        :class:`~tenant2fa.errors.ConcurrentChange` if ``actor`` is given and is no longer a
        member of the tenant with exactly that role (see :meth:`remove_membership`).
        """
        ...

    def remove_membership(
        self,
        membership: Membership,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        """Delete ``membership`` and store ``audit`` and ``notifications``, atomically, if it is
        still exactly as given and the tenant keeps an owner.

        The decision to remove rested on two roles, which must still hold when it is written:
        raises :class:`~tenant2fa.errors.ConcurrentChange` if the member's role is no longer
        ``membership.role``, or if ``actor`` is given and is no longer a member with
        ``actor.role``. Raises :class:`~tenant2fa.errors.NotAMember` if the membership is gone,
        and :class:`~tenant2fa.errors.LastOwner` if it is the tenant's only owner. Nothing is
        stored in any of these cases. Concurrent removals and role changes in one tenant must
        behave as if run one after the other (two owners demoting each other at once leave one).
        """
        ...

    def change_role(
        self,
        membership: Membership,
        role: Role,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        """Give ``membership``'s member ``role``, and store ``audit`` and ``notifications``,
        atomically; the same conditions and errors as :meth:`remove_membership` (demoting the
        only owner raises :class:`~tenant2fa.errors.LastOwner`)."""
        ...

    def get_membership(self, tenant_id: str, user_id: str) -> Membership | None: ...

    def list_memberships(self, tenant_id: str, *, role: Role | None = None) -> list[Membership]:
        """Members of a tenant (only those with ``role``, if given), ordered by user id."""
        ...

    def tenants_of_user(self, user_id: str) -> list[TenantPolicy]:
        """The policies of every tenant ``user_id`` belongs to, ordered by tenant id."""
        ...

    def standings(self, user_id: str, *, actor_id: str | None) -> list[Standing]:
        """Every tenant ``user_id`` belongs to, ordered by tenant id, with the user's role and
        ``actor_id``'s role there (``None`` where the actor is no member, or with no actor),
        read as one consistent snapshot."""
        ...

    # -- the user's factor -----------------------------------------------------------------

    def get_factor(self, user_id: str) -> FactorRecord:
        """The user's factor record; an empty one (``FactorRecord(user_id=...)``) if none."""
        ...

    def save_pending(self, user_id: str, pending: PendingEnrollment, *, audit: AuditRecord) -> None:
        """Store ``pending`` as the user's pending enrollment, replacing any pending one, and
        ``audit``. Never touches the active secret, counters or recovery codes."""
        ...

    def activate_pending(
        self,
        user_id: str,
        *,
        pending_id: str,
        step: int,
        now: datetime,
        recovery: RecoveryCodeSet,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        """Make the pending secret active, if and only if, in one atomic step:
        a pending enrollment with ``pending_id`` exists, it has not expired at ``now``, and
        ``step > last_step``.

        Then: active secret = pending secret, pending cleared, ``activated_at = now``,
        ``last_step = step``, failures cleared, recovery codes replaced by ``recovery``,
        epoch incremented, ``audit`` and ``notifications`` stored. Returns the new epoch; ``None``
        if the condition failed (nothing changed).
        """
        ...

    def charge_attempt(self, user_id: str, *, now: datetime, rules: ThrottleRules) -> Charge:
        """Count an attempt before it is evaluated, atomically with the check that it is allowed.

        Using :func:`tenant2fa.throttle.allowance` on the stored counter: if allowed, increment
        ``failures`` and set ``last_failure_at = now`` and return ``allowed=True`` with the new count;
        otherwise change nothing. Parallel calls must never let more attempts through than a
        sequential run would.
        """
        ...

    def record_code_success(
        self, user_id: str, *, step: int, expected_epoch: int, now: datetime, audit: AuditRecord
    ) -> bool:
        """Accept time ``step`` for the user, if and only if, atomically: the user has an active
        secret, the epoch is ``expected_epoch`` and ``step > last_step``. Then ``last_step = step``,
        failures cleared, ``audit`` stored, and ``True``. Otherwise ``False``, nothing changed.
        """
        ...

    def consume_recovery_code(
        self,
        user_id: str,
        *,
        digest: bytes,
        now: datetime,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        """Use the user's unused recovery code with this digest, atomically: mark it used, clear
        failures, store ``audit`` and ``notifications``, and return how many unused codes are
        left. Notifications of kind ``RECOVERY_CODE_USED`` are stored with
        ``recovery_codes_left`` set to that number. ``None`` (nothing changed) if there is no such
        unused code."""
        ...

    def replace_recovery_codes(
        self,
        user_id: str,
        *,
        recovery: RecoveryCodeSet,
        expected_epoch: int,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> int | None:
        """Replace all recovery codes of an enrolled user whose epoch is ``expected_epoch``,
        increment the epoch and store ``audit`` and ``notifications``. Returns the new epoch, or
        ``None`` (nothing changed)."""
        ...

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
        """Remove the user's active and pending secrets and recovery codes, clear failures,
        increment the epoch (``last_step`` is kept), raise ``identity_floor`` to ``floor`` (never
        lower it) and store ``audit`` and ``notifications``. Returns the new epoch;
        ``None`` if there was neither an active nor a pending secret (even an expired one) nor a
        failure counted (nothing changed).

        With ``expected``, the decision to reset rested on the user's tenants and roles: if
        :meth:`standings` for ``user_id`` and ``actor_id``, read in the same atomic step, is not
        ``expected``, raise :class:`~tenant2fa.errors.ConcurrentChange` and change nothing.
        """
        ...

    def unlock_factor(
        self,
        user_id: str,
        *,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor_id: str | None = None,
        expected: Sequence[Standing] | None = None,
    ) -> bool:
        """Clear the user's failure counter (``failures = 0``, no ``last_failure_at``) and store
        ``audit`` and ``notifications``, atomically, if any failure is counted; the secrets,
        recovery codes, epoch and ``last_step`` stay. Returns ``False`` (nothing changed) if
        there was nothing to clear. ``expected`` as for :meth:`reset_factor`."""
        ...

    def sealed_secrets(self, *, after_user_id: str | None, limit: int) -> list[SealedSecrets]:
        """Users that have an active or a pending secret, ordered by user id, starting after
        ``after_user_id`` (for paging through all of them)."""
        ...

    def rewrap_secrets(self, old: SealedSecrets, new: SealedSecrets) -> bool:
        """Replace the user's ciphertexts by ``new``'s, if they are still exactly ``old``'s (the
        same active ciphertext, pending id and pending ciphertext). Nothing else changes. Returns
        ``False`` (nothing changed) if any of them changed meanwhile."""
        ...

    # -- audit -----------------------------------------------------------------------------

    def append_audit(
        self, record: AuditRecord, *, notifications: Sequence[Notification] = ()
    ) -> None:
        """Store one audit record and ``notifications``, atomically."""
        ...

    def audit_records(self, query: AuditQuery) -> list[AuditRecord]:
        """Records matching ``query``, oldest first (ties in insertion order), paged."""
        ...

    # -- outbox ----------------------------------------------------------------------------

    def claim_notifications(
        self,
        *,
        now: datetime,
        claimant: str,
        lease: timedelta,
        limit: int,
        ids: Sequence[str] | None = None,
    ) -> list[OutboxItem]:
        """Reserve up to ``limit`` pending notifications for ``claimant``, atomically, oldest first.

        Eligible: pending, due (``next_attempt_at <= now``), and not held by anyone (never
        claimed, or the lease ran out); only those in ``ids`` when given. Each claimed one gets
        ``attempts + 1`` and is held by ``claimant`` until ``now + lease``. Concurrent claimants
        (threads or processes) never get the same notification while a lease holds. The items
        returned show the new attempt count.
        """
        ...

    def finish_notification(
        self,
        notification_id: str,
        *,
        claimant: str,
        state: OutboxState,
        now: datetime,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the outcome of ``claimant``'s attempt, if it still holds the notification:
        ``DELIVERED`` (``delivered_at = now``), ``PENDING`` (released; due again at
        ``next_attempt_at``) or ``ABANDONED``. ``error`` is kept as ``last_error``. Returns
        ``False`` and changes nothing if the claim was lost (its lease ran out and another
        claimant took it over)."""
        ...

    def outbox_items(
        self, *, state: OutboxState | None = None, limit: int = 100
    ) -> list[OutboxItem]:
        """Notifications in the outbox (only those in ``state``, if given), oldest first."""
        ...
