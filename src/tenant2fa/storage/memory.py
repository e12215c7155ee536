"""The in-memory backend: thread-safe, single process.

For tests, demos and single-process apps. Everything is lost when the process ends, including
replay and throttle state; use a durable backend for anything that restarts or scales out.
One lock serialises every operation, which makes each one atomic.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tenant2fa.clock import later
from tenant2fa.errors import (
    AlreadyMember,
    ConcurrentChange,
    StorageError,
    TenantExists,
    UnknownTenant,
)
from tenant2fa.outbox import OutboxItem, OutboxState
from tenant2fa.policy import Membership, Role, Standing
from tenant2fa.storage.base import (
    FactorCommit,
    FactorRecord,
    LoginState,
    SealedSecrets,
    check_actor_holds,
    check_member_change,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tenant2fa.audit import AuditQuery, AuditRecord
    from tenant2fa.notify import Notification
    from tenant2fa.policy import TenantPolicy

__all__ = ["MemoryStorage"]


@dataclass(slots=True)
class _Outgoing:
    notification: Notification
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None
    claimant: str | None = None
    claimed_until: datetime | None = None

    def item(self) -> OutboxItem:
        return OutboxItem(
            notification=self.notification,
            state=self.state,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            delivered_at=self.delivered_at,
            last_error=self.last_error,
        )


class MemoryStorage:
    """A :class:`~tenant2fa.storage.Storage` kept in dictionaries behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantPolicy] = {}
        self._members: dict[tuple[str, str], Membership] = {}
        # (tenant, role) -> user ids: owners are found without reading every member.
        self._by_role: dict[tuple[str, Role], set[str]] = {}
        self._tenants_by_user: dict[str, set[str]] = {}
        self._factors: dict[str, FactorRecord] = {}
        # user -> digest -> used? (True once used)
        self._recovery: dict[str, dict[bytes, bool]] = {}
        self._audit: list[AuditRecord] = []
        self._outbox: dict[str, _Outgoing] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage(<{len(self._tenants)} tenants, {len(self._factors)} factors>)"

    # -- tenants and memberships ------------------------------------------------------------

    def create_tenant(self, policy: TenantPolicy, owner: Membership, audit: AuditRecord) -> None:
        with self._lock:
            if policy.tenant_id in self._tenants:
                raise TenantExists(policy.tenant_id)
            self._tenants[policy.tenant_id] = policy
            self._join(owner)
            self._audit.append(audit)

    def get_tenant(self, tenant_id: str) -> TenantPolicy | None:
        with self._lock:
            return self._tenants.get(tenant_id)

    def _record(self, audit: AuditRecord, notifications: Sequence[Notification]) -> None:
        self._audit.append(audit)
        self._queue(notifications)

    def _queue(self, notifications: Sequence[Notification]) -> None:
        for note in notifications:
            self._outbox.setdefault(note.notification_id, _Outgoing(note, next_attempt_at=note.at))

    def list_tenants(
        self, *, after_tenant_id: str | None = None, limit: int = 1000
    ) -> list[TenantPolicy]:
        with self._lock:
            ids = sorted(t for t in self._tenants if after_tenant_id is None or t > after_tenant_id)
            return [self._tenants[t] for t in ids[:limit]]

    def update_tenant_policy(
        self,
        policy: TenantPolicy,
        *,
        expected_version: int,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor: Membership | None = None,
    ) -> bool:
        with self._lock:
            current = self._tenants.get(policy.tenant_id)
            if current is None or current.version != expected_version:
                return False
            self._check_actor(actor)
            self._tenants[policy.tenant_id] = policy
            self._record(audit, notifications)
            return True

    def add_membership(
        self,
        membership: Membership,
        audit: AuditRecord,
        *,
        actor: Membership | None = None,
        notifications: Sequence[Notification] = (),
    ) -> None:
        with self._lock:
            key = (membership.tenant_id, membership.user_id)
            if membership.tenant_id not in self._tenants:
                raise UnknownTenant(membership.tenant_id)
            self._check_actor(actor)
            if key in self._members:
                raise AlreadyMember(membership.tenant_id, membership.user_id)
            self._join(membership)
            self._record(audit, notifications)

    def _join(self, m: Membership) -> None:
        self._members[(m.tenant_id, m.user_id)] = m
        self._tenants_by_user.setdefault(m.user_id, set()).add(m.tenant_id)
        self._by_role.setdefault((m.tenant_id, m.role), set()).add(m.user_id)

    def _leave(self, m: Membership) -> None:
        del self._members[(m.tenant_id, m.user_id)]
        self._tenants_by_user[m.user_id].discard(m.tenant_id)
        self._by_role[(m.tenant_id, m.role)].discard(m.user_id)

    def _role_of(self, tenant_id: str, user_id: str) -> Role | None:
        stored = self._members.get((tenant_id, user_id))
        return None if stored is None else stored.role

    def _check_actor(self, actor: Membership | None) -> None:
        check_actor_holds(actor, self._role_of)

    def _check_change(
        self, membership: Membership, actor: Membership | None, *, losing_owner: bool
    ) -> None:
        """The guards of remove_membership and change_role (the lock is held)."""
        check_member_change(
            membership,
            actor,
            role_of=self._role_of,
            losing_owner=losing_owner,
            count_owners=lambda: len(self._by_role.get((membership.tenant_id, Role.OWNER), ())),
        )

    def remove_membership(
        self,
        membership: Membership,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        with self._lock:
            self._check_change(membership, actor, losing_owner=True)
            self._leave(membership)
            self._record(audit, notifications)

    def change_role(
        self,
        membership: Membership,
        role: Role,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        with self._lock:
            self._check_change(membership, actor, losing_owner=role is not Role.OWNER)
            self._leave(membership)
            self._join(dataclasses.replace(membership, role=role))
            self._record(audit, notifications)

    def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        with self._lock:
            return self._members.get((tenant_id, user_id))

    def list_memberships(self, tenant_id: str, *, role: Role | None = None) -> list[Membership]:
        with self._lock:
            if role is not None:
                users = self._by_role.get((tenant_id, role), set())
                found = [self._members[(tenant_id, u)] for u in users]
            else:
                found = [m for (t, _), m in self._members.items() if t == tenant_id]
        return sorted(found, key=lambda m: m.user_id)

    def tenants_of_user(self, user_id: str) -> list[TenantPolicy]:
        with self._lock:
            ids = sorted(self._tenants_by_user.get(user_id, ()))
            return [self._tenants[t] for t in ids]

    def _standings(self, user_id: str, actor_id: str | None) -> list[Standing]:
        found = []
        for tenant_id in sorted(self._tenants_by_user.get(user_id, ())):
            actor = None if actor_id is None else self._members.get((tenant_id, actor_id))
            found.append(
                Standing(
                    policy=self._tenants[tenant_id],
                    role=self._members[(tenant_id, user_id)].role,
                    actor_role=None if actor is None else actor.role,
                )
            )
        return found

    def standings(self, user_id: str, *, actor_id: str | None) -> list[Standing]:
        with self._lock:
            return self._standings(user_id, actor_id)

    def _check_standings(
        self, user_id: str, actor_id: str | None, expected: Sequence[Standing] | None
    ) -> None:
        if expected is not None and self._standings(user_id, actor_id) != list(expected):
            raise ConcurrentChange("the user's tenants or roles changed meanwhile")

    # -- the user's factor -----------------------------------------------------------------

    def _factor(self, user_id: str) -> FactorRecord:
        return self._factors.get(user_id) or FactorRecord(user_id=user_id)

    def get_factor(self, user_id: str) -> FactorRecord:
        with self._lock:
            return self._factor(user_id)

    def load_login(self, user_id: str, *, recovery_codes: bool = False) -> LoginState:
        with self._lock:
            digests = None
            if recovery_codes:
                codes = self._recovery.get(user_id, {})
                digests = tuple(sorted(d for d, used in codes.items() if not used))
            return LoginState(
                factor=self._factor(user_id),
                tenants=tuple(self._standings(user_id, None)),
                recovery_digests=digests,
            )

    def commit_factor(self, commit: FactorCommit) -> bool:
        user_id = commit.factor.user_id
        with self._lock:
            if self._factor(user_id).revision != commit.expected_revision:
                return False
            codes = self._recovery.get(user_id, {})
            used = commit.use_recovery_code
            if used is not None and codes.get(used, True):
                # The decision saw this code unused at this revision; every change of the codes
                # moves the revision, so a backend that gets here has lost data.
                raise StorageError("the recovery code to use is not stored as unused")
            self._factors[user_id] = commit.factor
            if used is not None:
                codes[used] = True
            if commit.recovery is not None:
                self._recovery[user_id] = dict.fromkeys(commit.recovery.digests, False)
            self._audit.extend(commit.audit)
            self._queue(commit.notifications)
            return True

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
        with self._lock:
            self._check_standings(user_id, actor_id, expected)
            factor = self._factor(user_id)
            if factor.secret is None and factor.pending is None and factor.failures == 0:
                return None
            epoch = factor.epoch + 1
            old_floor = factor.identity_floor
            self._factors[user_id] = FactorRecord(
                user_id=user_id,
                last_step=factor.last_step,
                epoch=epoch,
                identity_floor=floor if old_floor is None else max(old_floor, floor),
                revision=factor.revision + 1,
            )
            self._recovery.pop(user_id, None)
            self._record(audit, notifications)
            return epoch

    def unlock_factor(
        self,
        user_id: str,
        *,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor_id: str | None = None,
        expected: Sequence[Standing] | None = None,
    ) -> bool:
        with self._lock:
            self._check_standings(user_id, actor_id, expected)
            factor = self._factor(user_id)
            if factor.failures == 0:
                return False
            self._factors[user_id] = dataclasses.replace(
                factor, failures=0, last_failure_at=None, revision=factor.revision + 1
            )
            self._record(audit, notifications)
            return True

    def sealed_secrets(self, *, after_user_id: str | None, limit: int) -> list[SealedSecrets]:
        with self._lock:
            found = [
                _sealed(f)
                for user_id, f in sorted(self._factors.items())
                if (after_user_id is None or user_id > after_user_id)
                and (f.secret is not None or f.pending is not None)
            ]
        return found[:limit]

    def rewrap_secrets(self, old: SealedSecrets, new: SealedSecrets) -> bool:
        with self._lock:
            factor = self._factor(old.user_id)
            if _sealed(factor) != old or new.pending_id != old.pending_id:
                return False
            pending = factor.pending
            if pending is not None and new.pending_secret is not None:
                pending = dataclasses.replace(pending, secret=new.pending_secret)
            self._factors[old.user_id] = dataclasses.replace(
                factor, secret=new.secret, pending=pending, revision=factor.revision + 1
            )
            return True

    # -- audit -----------------------------------------------------------------------------

    def append_audit(
        self, record: AuditRecord, *, notifications: Sequence[Notification] = ()
    ) -> None:
        with self._lock:
            self._record(record, notifications)

    def audit_records(self, query: AuditQuery) -> list[AuditRecord]:
        with self._lock:
            matching = [r for r in self._audit if query.matches(r)]
        ordered = sorted(enumerate(matching), key=lambda pair: (pair[1].at, pair[0]))
        return [r for _, r in ordered[query.offset : query.offset + query.limit]]

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
        wanted = None if ids is None else set(ids)
        held_until = later(now, lease)
        claimed: list[OutboxItem] = []
        with self._lock:
            for key, entry in self._outbox.items():
                if len(claimed) >= limit:
                    break
                due = entry.next_attempt_at is None or entry.next_attempt_at <= now
                free = entry.claimed_until is None or entry.claimed_until <= now
                if (
                    entry.state is OutboxState.PENDING
                    and due
                    and free
                    and (wanted is None or key in wanted)
                ):
                    entry.attempts += 1
                    entry.claimant = claimant
                    entry.claimed_until = held_until
                    claimed.append(entry.item())
        return claimed

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
        with self._lock:
            entry = self._outbox.get(notification_id)
            if (
                entry is None
                or entry.claimant != claimant
                or entry.state is not OutboxState.PENDING
            ):
                return False
            if entry.claimed_until is not None and entry.claimed_until <= now:
                return False
            entry.state = state
            entry.claimant = None
            entry.claimed_until = None
            entry.last_error = error
            if state is OutboxState.DELIVERED:
                entry.delivered_at = now
            elif state is OutboxState.PENDING:
                entry.next_attempt_at = next_attempt_at or now
            return True

    def outbox_items(
        self, *, state: OutboxState | None = None, limit: int = 100
    ) -> list[OutboxItem]:
        with self._lock:
            items = [e.item() for e in self._outbox.values() if state is None or e.state is state]
        return items[:limit]


def _sealed(factor: FactorRecord) -> SealedSecrets:
    pending = factor.pending
    return SealedSecrets(
        user_id=factor.user_id,
        secret=factor.secret,
        pending_id=pending.pending_id if pending else None,
        pending_secret=pending.secret if pending else None,
    )
