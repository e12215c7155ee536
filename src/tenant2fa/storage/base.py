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

from tenant2fa.errors import ConcurrentChange, LastOwner, NotAMember
from tenant2fa.factor import FactorCommit, FactorRecord, LoginState
from tenant2fa.policy import Role

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import timedelta

    from tenant2fa.audit import AuditQuery, AuditRecord
    from tenant2fa.notify import Notification
    from tenant2fa.outbox import OutboxItem, OutboxState
    from tenant2fa.policy import Membership, Standing, TenantPolicy

__all__ = [
    "FactorCommit",
    "FactorRecord",
    "LoginState",
    "SealedSecrets",
    "Storage",
    "check_actor_holds",
    "check_member_change",
]


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

    def load_login(self, user_id: str, *, recovery_codes: bool = False) -> LoginState:
        """Everything a login decision needs about ``user_id``, read as one consistent snapshot:
        the factor record (an empty one if none; ``recovery_codes_left`` is a stored counter, not
        a count of rows) and every tenant of the user with the user's role there, in tenant id
        order; with ``recovery_codes``, the digests of the unused recovery codes too.

        The login hot path reads nothing else: keep it one statement (one round trip) where the
        database allows.
        """
        ...

    def commit_factor(self, commit: FactorCommit) -> bool:
        """Write one decided change of a user's factor, atomically, if the stored record's
        revision is still ``commit.expected_revision`` (a user with no record is at revision 0):
        store every field of ``commit.factor`` (the revision becomes
        ``commit.expected_revision + 1``), mark the recovery code ``commit.use_recovery_code``
        used, replace all recovery codes by ``commit.recovery``, and store ``commit.audit`` and
        ``commit.notifications``. Returns ``False`` and changes nothing if the revision moved
        meanwhile: the caller reads again and decides again.

        This one compare-and-set carries every attempt at a code (the failure it charges, the
        time step it uses, the counter it clears, its audit record and its lockout notice), so
        an attempt is counted atomically with its outcome, and concurrent attempts cannot get
        more tries than a sequential run would. Nothing slow (no hashing, no decryption) happens
        inside it. Make it one statement (one round trip) where the database allows.
        """
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
        increment the epoch and the revision (``last_step`` is kept), raise ``identity_floor`` to ``floor`` (never
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
        """Clear the user's failure counter (``failures = 0``, no ``last_failure_at``; the
        revision grows) and store
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
        same active ciphertext, pending id and pending ciphertext). Nothing else changes but the
        revision, which grows. Returns
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
