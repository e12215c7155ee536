"""The storage conformance suite: every contract of :class:`tenant2fa.storage.Storage` as a test.

Run it against your own backend by subclassing :class:`StorageConformance` in a pytest module and
giving the subclass a fixture named ``storage`` that returns a fresh, *empty* backend for each
test::

    # tests/test_my_storage.py
    from collections.abc import Iterator

    import pytest

    from tenant2fa.storage import Storage
    from tenant2fa.testing.conformance import StorageConformance

    from myapp.twofactor import PostgresStorage


    class TestPostgresStorage(StorageConformance):
        @pytest.fixture
        def storage(self, postgresql_url: str) -> Iterator[Storage]:
            backend = PostgresStorage(postgresql_url)
            backend.create_schema()
            yield backend
            backend.drop_schema()

The class name must start with ``Test`` for pytest to collect it; :class:`StorageConformance`
itself is never collected. Every inherited ``test_*`` method pins one behaviour stated in the
docstrings of :mod:`tenant2fa.storage.base`, and fails if the backend breaks it.

What the suite expects of the environment:

- It needs pytest, imported at module level: install the ``testing`` extra
  (``pip install "tenant2fa[testing]"``). Importing :mod:`tenant2fa.testing` alone does not
  import this module or pytest.
- The concurrency tests call one backend object from 32 to 50 threads at once (lined up with a
  :class:`threading.Barrier`), so the backend must be safe to share between threads, e.g. with a
  connection pool of at least that many connections, or one connection per thread. A backend
  meant for several processes should *also* be tested with processes; threads are the minimum.
- All times passed in are aware UTC datetimes at whole seconds, in 2026; backends must return
  equal, aware datetimes. Identifiers are short lowercase ASCII except where a test is about
  identifiers themselves.
- A test may write up to a hundred audit records; it reads them back with ``limit=1000``.

pytest rewrites ``assert`` statements only in test modules; for detailed failure messages from
this suite, add to your ``conftest.py``, before anything imports it::

    pytest.register_assert_rewrite("tenant2fa.testing.conformance")
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import pytest

from tenant2fa import attempts
from tenant2fa.audit import AuditKind, AuditQuery, AuditRecord, new_audit_record
from tenant2fa.clock import UTC
from tenant2fa.enrollment import PendingEnrollment
from tenant2fa.errors import (
    AlreadyMember,
    ConcurrentChange,
    LastOwner,
    NotAMember,
    StorageError,
    TenantExists,
    UnknownTenant,
)
from tenant2fa.notify import Notification, NotificationKind
from tenant2fa.outbox import OutboxState
from tenant2fa.policy import Membership, Role, Standing, TenantPolicy
from tenant2fa.recovery import RecoveryCodeSet
from tenant2fa.storage.base import FactorCommit, FactorRecord, SealedSecrets, Storage
from tenant2fa.throttle import ThrottleRules, allowance

__all__ = ["StorageConformance"]

_R = TypeVar("_R")

T0 = datetime(2026, 1, 1, tzinfo=UTC)
"""The instant most tests happen at."""

THREADS = 32
"""How many threads race for a single-use thing (a time step, a recovery code, a pending secret)."""

CHARGE_THREADS = 50
"""How many threads charge an attempt at the same instant."""

PAIRS = THREADS // 2
"""How many tenants, each of two owners acting on each other, race at the same instant."""

_WAIT = 60.0
"""Seconds a racing thread may wait for the others before the test fails instead of hanging."""

_LENIENT = ThrottleRules(free_failures=100, max_failures=100)
"""Rules under which every charge below 100 failures is allowed: for setting up a failure count."""


def _at(seconds: int = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _audit(
    kind: AuditKind = AuditKind.CODE_ACCEPTED,
    *,
    at: datetime = T0,
    tenant_id: str | None = None,
    user_id: str | None = None,
    actor_id: str | None = None,
    **detail: str,
) -> AuditRecord:
    return new_audit_record(
        kind, at=at, tenant_id=tenant_id, user_id=user_id, actor_id=actor_id, **detail
    )


def _pending(
    pending_id: str = "pending-1",
    *,
    secret: bytes = b"\x00pending ciphertext\xff",
    created_at: datetime = T0,
    ttl: timedelta = timedelta(minutes=10),
) -> PendingEnrollment:
    return PendingEnrollment(
        pending_id=pending_id, secret=secret, created_at=created_at, expires_at=created_at + ttl
    )


def _digest(label: str) -> bytes:
    """An arbitrary 32-byte recovery-code digest, named by ``label`` for readability."""
    return hashlib.sha256(label.encode()).digest()


def _codes(*labels: str, salt: bytes = b"salt-0123456789a") -> RecoveryCodeSet:
    return RecoveryCodeSet(salt=salt, digests=tuple(_digest(label) for label in labels))


def _member(tenant_id: str, user_id: str, role: Role = Role.MEMBER) -> Membership:
    return Membership(tenant_id=tenant_id, user_id=user_id, role=role)


def _new_tenant(storage: Storage, tenant_id: str, *, owner_id: str = "olga") -> TenantPolicy:
    policy = TenantPolicy(tenant_id=tenant_id, name=f"Tenant {tenant_id}")
    storage.create_tenant(
        policy,
        _member(tenant_id, owner_id, Role.OWNER),
        _audit(AuditKind.TENANT_CREATED, tenant_id=tenant_id, actor_id=owner_id),
    )
    return policy


def _join(storage: Storage, tenant_id: str, user_id: str, role: Role = Role.MEMBER) -> Membership:
    membership = _member(tenant_id, user_id, role)
    storage.add_membership(
        membership, _audit(AuditKind.MEMBER_ADDED, tenant_id=tenant_id, user_id=user_id)
    )
    return membership


def _audit_log(storage: Storage) -> list[AuditRecord]:
    return storage.audit_records(AuditQuery(limit=1000))


def _commit(
    storage: Storage,
    before: FactorRecord,
    after: FactorRecord,
    *,
    at: datetime = T0,
    audit: Sequence[AuditRecord] = (),
    notifications: Sequence[Notification] = (),
    use_recovery_code: bytes | None = None,
    recovery: RecoveryCodeSet | None = None,
) -> bool:
    """Write ``after``, decided on ``before``, with :meth:`Storage.commit_factor`."""
    return storage.commit_factor(
        FactorCommit(
            factor=after,
            expected_revision=before.revision,
            at=at,
            audit=tuple(audit),
            notifications=tuple(notifications),
            use_recovery_code=use_recovery_code,
            recovery=recovery,
        )
    )


def _save_pending(
    storage: Storage, user_id: str, pending: PendingEnrollment, *, at: datetime = T0
) -> None:
    factor = storage.get_factor(user_id)
    audit = _audit(AuditKind.ENROLLMENT_BEGUN, at=at, user_id=user_id)
    saved = attempts.pending_saved(factor, pending)
    assert _commit(storage, factor, saved, at=at, audit=[audit])


def _activate(
    storage: Storage,
    user_id: str,
    *,
    step: int,
    at: datetime = T0,
    recovery: RecoveryCodeSet | None = None,
    notifications: Sequence[Notification] = (),
) -> int | None:
    """Activate the pending secret as the service does (read, decide, write until written or
    refused); the new epoch, or ``None`` if refused."""
    recovery = recovery if recovery is not None else _codes("a", "b", "c")
    audit = _audit(AuditKind.ENROLLMENT_CONFIRMED, at=at, user_id=user_id)
    while True:
        factor = storage.get_factor(user_id)
        active = attempts.activating(factor, step=step, now=at, recovery=recovery)
        if active is None:
            return None
        if _commit(
            storage,
            factor,
            active,
            at=at,
            audit=[audit],
            notifications=notifications,
            recovery=recovery,
        ):
            return active.epoch


def _enroll(
    storage: Storage,
    user_id: str,
    *,
    step: int = 1000,
    at: datetime = T0,
    recovery: RecoveryCodeSet | None = None,
    secret: bytes = b"\x01active ciphertext\xfe",
) -> int:
    """Give ``user_id`` an active secret (a pending one, then activated); the epoch."""
    _save_pending(
        storage, user_id, _pending(f"enroll-{user_id}-{step}", secret=secret, created_at=at), at=at
    )
    epoch = _activate(storage, user_id, step=step, at=at, recovery=recovery)
    assert epoch is not None, "a valid, fresh pending enrollment was not activated"
    return epoch


def _charge(
    storage: Storage, user_id: str, *, at: datetime = T0, rules: ThrottleRules = _LENIENT
) -> FactorRecord | None:
    """One failed attempt as the service makes it: refused (``None``, nothing counted) or
    counted; read, decide and write again until the write lands."""
    while True:
        factor = storage.get_factor(user_id)
        if attempts.refusal(factor, now=at, rules=rules) is not None:
            return None
        failed = attempts.charged(factor, now=at)
        if _commit(storage, factor, failed, at=at, audit=[_audit(at=at, user_id=user_id)]):
            return failed


def _locked_for_good(storage: Storage, user_id: str, *, at: datetime, rules: ThrottleRules) -> bool:
    refused = attempts.refusal(storage.get_factor(user_id), now=at, rules=rules)
    return refused is not None and refused.locked_for_good


def _fail(storage: Storage, user_id: str, times: int, *, at: datetime = T0) -> None:
    """Record ``times`` failed attempts for ``user_id``."""
    for _ in range(times):
        assert _charge(storage, user_id, at=at) is not None


def _consume(
    storage: Storage,
    user_id: str,
    label: str,
    *,
    at: datetime = T0,
    notifications: Sequence[Notification] = (),
) -> int | None:
    """Use the recovery code ``label`` as the service does; the codes left, or ``None``."""
    while True:
        state = storage.load_login(user_id, recovery_codes=True)
        unused = state.recovery_digests
        assert unused is not None
        if _digest(label) not in unused:
            return None
        left = len(unused) - 1
        used = attempts.recovering(state.factor, codes_left=left)
        audit = _audit(AuditKind.RECOVERY_CODE_USED, at=at, user_id=user_id)
        if _commit(
            storage,
            state.factor,
            used,
            at=at,
            audit=[audit],
            notifications=notifications,
            use_recovery_code=_digest(label),
        ):
            return left


def _accept(storage: Storage, user_id: str, step: int, *, at: datetime = T0) -> bool:
    """Accept a correct code of time ``step`` as the service does (``False``: a replay)."""
    while True:
        factor = storage.get_factor(user_id)
        accepted = attempts.accepting_code(factor, step=step)
        if accepted is None:
            return False
        audit = _audit(AuditKind.CODE_ACCEPTED, at=at, user_id=user_id)
        if _commit(storage, factor, accepted, at=at, audit=[audit]):
            return True


def _note(
    notification_id: str,
    *,
    user_id: str = "bob",
    kind: NotificationKind = NotificationKind.TWO_FACTOR_ENABLED,
    at: datetime = T0,
    role: str | None = None,
    previous_role: str | None = None,
    member_id: str | None = None,
) -> Notification:
    return Notification(
        notification_id=notification_id,
        kind=kind,
        user_id=user_id,
        at=at,
        tenant_id="acme",
        tenant_name="Acme <&> Co",
        actor_id="olga",
        retry_at=at + timedelta(minutes=5),
        two_factor_on=True,
        actor_role="owner",
        role=role,
        previous_role=previous_role,
        member_id=member_id,
    )


def _outbox_ids(storage: Storage, state: OutboxState | None = None) -> list[str]:
    return [
        item.notification.notification_id for item in storage.outbox_items(state=state, limit=1000)
    ]


def _outbox(storage: Storage) -> list[Notification]:
    return [item.notification for item in storage.outbox_items(limit=1000)]


def _stored(storage: Storage, tenant_id: str) -> tuple[object, ...]:
    """What a refused membership change must leave as it was: the tenant's members, the audit
    log and the outbox."""
    return storage.list_memberships(tenant_id), _audit_log(storage), _outbox_ids(storage)


def _factor_stored(storage: Storage, user_id: str) -> tuple[object, ...]:
    """What a refused change of a factor must leave as it was: the factor, the audit log and
    the outbox."""
    return storage.get_factor(user_id), _audit_log(storage), _outbox_ids(storage)


def _remove(storage: Storage, membership: Membership, *, actor: Membership | None) -> None:
    storage.remove_membership(
        membership,
        actor=actor,
        audit=_audit(
            AuditKind.MEMBER_REMOVED,
            tenant_id=membership.tenant_id,
            user_id=membership.user_id,
            actor_id=None if actor is None else actor.user_id,
        ),
    )


def _set_role(
    storage: Storage, membership: Membership, role: Role, *, actor: Membership | None
) -> None:
    storage.change_role(
        membership,
        role,
        actor=actor,
        audit=_audit(
            AuditKind.ROLE_CHANGED,
            tenant_id=membership.tenant_id,
            user_id=membership.user_id,
            actor_id=None if actor is None else actor.user_id,
            new=role.value,
        ),
    )


def _owner_ids(storage: Storage, tenant_id: str) -> list[str]:
    return [m.user_id for m in storage.list_memberships(tenant_id, role=Role.OWNER)]


def _changes_of_standings(storage: Storage) -> dict[str, Callable[[], object]]:
    """Set up bob (enrolled, with failures counted) in ``acme`` (owners olga and oscar) and
    return changes that each alter ``standings("bob", actor_id="olga")``, to be made in order."""
    acme = _new_tenant(storage, "acme", owner_id="olga")
    _new_tenant(storage, "globex", owner_id="gina")
    _join(storage, "acme", "bob")
    _join(storage, "acme", "oscar", Role.OWNER)
    _enroll(storage, "bob", recovery=_codes("a", "b"))
    _fail(storage, "bob", 2)
    switched_on = dataclasses.replace(
        acme, two_factor_required=True, activated_at=_at(5), version=acme.version + 1
    )
    return {
        "the user's role": lambda: _set_role(
            storage, _member("acme", "bob"), Role.ADMIN, actor=None
        ),
        "the actor's role": lambda: _set_role(
            storage, _member("acme", "olga", Role.OWNER), Role.ADMIN, actor=None
        ),
        "a tenant switched on": lambda: storage.update_tenant_policy(
            switched_on, expected_version=acme.version, audit=_audit(at=_at(5))
        ),
        "a tenant joined": lambda: _join(storage, "globex", "bob"),
        "a tenant left": lambda: _remove(storage, _member("globex", "bob"), actor=None),
    }


LEASE = timedelta(minutes=2)


def _race(count: int, attempt: Callable[[int], _R]) -> list[_R]:
    """Run ``attempt(0)`` ... ``attempt(count - 1)`` in ``count`` threads released together.

    Returns the results in index order; re-raises the first exception a thread raised.
    """
    barrier = threading.Barrier(count)
    results: dict[int, _R] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=_WAIT)
            results[index] = attempt(index)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=_WAIT)
    assert not any(t.is_alive() for t in threads), "a racing thread never finished (deadlock?)"
    if errors:
        raise errors[0]
    return [results[i] for i in range(count)]


_REFUSALS = (LastOwner, NotAMember, ConcurrentChange)
"""What the loser of a race between membership changes in one tenant may get."""


def _outcome(change: Callable[[], None]) -> str:
    """``"ok"``, or the name of the refusal (one of :data:`_REFUSALS`) ``change`` met."""
    try:
        change()
    except _REFUSALS as exc:
        return type(exc).__name__
    return "ok"


def _two_owners_act_on_each_other(
    storage: Storage, act: Callable[[Membership, Membership], None]
) -> int:
    """In each of :data:`PAIRS` tenants of two owners, both owners call ``act(self, other)``,
    all at the same instant; twice, with fresh tenants. Exactly one of each pair must get
    through, and that one must be its tenant's only owner afterwards. Returns how many pairs
    raced."""
    for round_ in range(2):
        pairs = []
        for k in range(PAIRS):
            tenant_id = f"pair-{round_}-{k:02d}"
            _new_tenant(storage, tenant_id, owner_id="ann")
            ann = _member(tenant_id, "ann", Role.OWNER)
            pairs.append((ann, _join(storage, tenant_id, "ben", Role.OWNER)))
        _race_pairs(storage, pairs, act)
    return 2 * PAIRS


def _race_pairs(
    storage: Storage,
    pairs: list[tuple[Membership, Membership]],
    act: Callable[[Membership, Membership], None],
) -> None:
    def attempt(i: int) -> str:
        first, second = pairs[i // 2]
        me, other = (first, second) if i % 2 == 0 else (second, first)
        return _outcome(lambda: act(me, other))

    outcomes = _race(2 * len(pairs), attempt)
    for k, (first, second) in enumerate(pairs):
        pair = outcomes[2 * k : 2 * k + 2]
        assert pair.count("ok") == 1, f"{first.tenant_id}: {pair}"
        winner = first if pair[0] == "ok" else second
        assert _owner_ids(storage, first.tenant_id) == [winner.user_id], first.tenant_id


class StorageConformance:
    """Mix-in of the conformance tests. Subclass as ``Test...`` and provide a ``storage`` fixture
    returning a fresh, empty backend (see the module docstring)."""

    # -- tenants -------------------------------------------------------------------------------

    def test_create_tenant_stores_policy_owner_membership_and_audit(self, storage: Storage) -> None:
        policy = TenantPolicy(
            tenant_id="acme",
            name="Acme Corp",
            two_factor_required=True,
            activated_at=_at(5),
            grace_period=timedelta(days=3),
            version=7,
        )
        owner = _member("acme", "olga", Role.OWNER)
        audit = _audit(AuditKind.TENANT_CREATED, tenant_id="acme", actor_id="olga", name="Acme")
        storage.create_tenant(policy, owner, audit)
        assert storage.get_tenant("acme") == policy
        assert storage.get_membership("acme", "olga") == owner
        assert storage.tenants_of_user("olga") == [policy]
        assert _audit_log(storage) == [audit]

    def test_create_tenant_with_a_taken_id_raises_tenant_exists_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        first = _new_tenant(storage, "acme", owner_id="olga")
        log = _audit_log(storage)
        with pytest.raises(TenantExists):
            storage.create_tenant(
                TenantPolicy(tenant_id="acme", name="Impostor", two_factor_required=True),
                _member("acme", "mallory", Role.OWNER),
                _audit(AuditKind.TENANT_CREATED, tenant_id="acme", actor_id="mallory"),
            )
        assert storage.get_tenant("acme") == first
        assert storage.get_membership("acme", "mallory") is None
        assert storage.tenants_of_user("mallory") == []
        assert storage.list_memberships("acme") == [_member("acme", "olga", Role.OWNER)]
        assert _audit_log(storage) == log

    def test_get_tenant_of_an_unknown_id_is_none(self, storage: Storage) -> None:
        _new_tenant(storage, "acme")
        assert storage.get_tenant("globex") is None

    def test_update_tenant_policy_with_the_stored_version_replaces_it_and_stores_audit(
        self, storage: Storage
    ) -> None:
        policy = _new_tenant(storage, "acme")
        new = dataclasses.replace(
            policy,
            two_factor_required=True,
            activated_at=_at(60),
            grace_period=timedelta(hours=12),
            version=policy.version + 1,
        )
        audit = _audit(AuditKind.TWO_FACTOR_SWITCHED, at=_at(60), tenant_id="acme")
        assert storage.update_tenant_policy(new, expected_version=policy.version, audit=audit)
        assert storage.get_tenant("acme") == new
        assert _audit_log(storage)[-1] == audit

    def test_update_tenant_policy_with_a_stale_version_returns_false_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        policy = _new_tenant(storage, "acme")
        second = dataclasses.replace(
            policy, two_factor_required=True, activated_at=_at(1), version=1
        )
        assert storage.update_tenant_policy(second, expected_version=0, audit=_audit(at=_at(1)))
        log = _audit_log(storage)
        stale = dataclasses.replace(policy, name="Lost update", version=1)
        changed = storage.update_tenant_policy(
            stale, expected_version=0, audit=_audit(AuditKind.TWO_FACTOR_SWITCHED, at=_at(2))
        )
        assert changed is False
        assert storage.get_tenant("acme") == second
        assert _audit_log(storage) == log

    def test_update_tenant_policy_of_an_unknown_tenant_returns_false_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        ghost = TenantPolicy(tenant_id="ghost", name="Ghost", version=1)
        assert storage.update_tenant_policy(ghost, expected_version=0, audit=_audit()) is False
        assert storage.get_tenant("ghost") is None
        assert _audit_log(storage) == []

    def test_update_tenant_policy_by_an_actor_who_still_holds_the_role_replaces_it(
        self, storage: Storage
    ) -> None:
        policy = _new_tenant(storage, "acme")
        new = dataclasses.replace(policy, two_factor_required=True, version=policy.version + 1)
        olga = _member("acme", "olga", Role.OWNER)
        assert storage.update_tenant_policy(
            new, expected_version=policy.version, audit=_audit(tenant_id="acme"), actor=olga
        )
        assert storage.get_tenant("acme") == new

    def test_update_tenant_policy_by_an_actor_demoted_or_removed_meanwhile_changes_nothing(
        self, storage: Storage
    ) -> None:
        policy = _new_tenant(storage, "acme")
        _join(storage, "acme", "otto", Role.OWNER)
        _join(storage, "acme", "adam", Role.OWNER)
        storage.change_role(
            _member("acme", "adam", Role.OWNER), Role.ADMIN, actor=None, audit=_audit()
        )
        storage.remove_membership(_member("acme", "otto", Role.OWNER), actor=None, audit=_audit())
        records = _audit_log(storage)
        new = dataclasses.replace(policy, two_factor_required=False, version=policy.version + 1)
        for stale in (_member("acme", "adam", Role.OWNER), _member("acme", "otto", Role.OWNER)):
            with pytest.raises(ConcurrentChange):
                storage.update_tenant_policy(
                    new,
                    expected_version=policy.version,
                    audit=_audit(tenant_id="acme"),
                    notifications=[_note("never-switched")],
                    actor=stale,
                )
        assert storage.get_tenant("acme") == policy
        assert _audit_log(storage) == records
        assert "never-switched" not in _outbox_ids(storage)

    # -- memberships ---------------------------------------------------------------------------

    def test_add_membership_stores_membership_and_audit(self, storage: Storage) -> None:
        policy = _new_tenant(storage, "acme")
        membership = _member("acme", "bob", Role.ADMIN)
        audit = _audit(AuditKind.MEMBER_ADDED, tenant_id="acme", user_id="bob", role="admin")
        storage.add_membership(membership, audit)
        assert storage.get_membership("acme", "bob") == membership
        assert storage.tenants_of_user("bob") == [policy]
        assert _audit_log(storage)[-1] == audit

    def test_add_membership_to_an_unknown_tenant_raises_unknown_tenant_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme")
        log = _audit_log(storage)
        with pytest.raises(UnknownTenant):
            storage.add_membership(_member("ghost", "bob"), _audit(AuditKind.MEMBER_ADDED))
        assert storage.get_membership("ghost", "bob") is None
        assert storage.tenants_of_user("bob") == []
        assert storage.list_memberships("ghost") == []
        assert _audit_log(storage) == log

    def test_add_membership_of_a_member_raises_already_member_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _join(storage, "acme", "bob", Role.MEMBER)
        log = _audit_log(storage)
        with pytest.raises(AlreadyMember):
            storage.add_membership(_member("acme", "bob", Role.ADMIN), _audit())
        with pytest.raises(AlreadyMember):
            storage.add_membership(_member("acme", "olga", Role.MEMBER), _audit())
        assert storage.get_membership("acme", "bob") == _member("acme", "bob", Role.MEMBER)
        assert storage.get_membership("acme", "olga") == _member("acme", "olga", Role.OWNER)
        assert len(storage.list_memberships("acme")) == 2
        assert _audit_log(storage) == log

    def test_get_membership_of_a_non_member_is_none(self, storage: Storage) -> None:
        _new_tenant(storage, "acme")
        _new_tenant(storage, "globex")
        _join(storage, "globex", "bob")
        assert storage.get_membership("acme", "bob") is None
        assert storage.get_membership("ghost", "bob") is None

    def test_list_memberships_is_ordered_by_user_id_and_holds_only_that_tenant(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _new_tenant(storage, "globex", owner_id="gina")
        for user_id in ("zoe", "mike", "alice", "bob"):
            _join(storage, "acme", user_id)
        _join(storage, "globex", "carl")
        assert storage.list_memberships("acme") == [
            _member("acme", "alice"),
            _member("acme", "bob"),
            _member("acme", "mike"),
            _member("acme", "olga", Role.OWNER),
            _member("acme", "zoe"),
        ]
        assert storage.list_memberships("ghost") == []

    def test_tenants_of_user_is_ordered_by_tenant_id_and_holds_only_their_tenants(
        self, storage: Storage
    ) -> None:
        for tenant_id in ("t-c", "t-a", "t-d", "t-b"):
            _new_tenant(storage, tenant_id, owner_id=f"owner-{tenant_id}")
        for tenant_id in ("t-c", "t-a", "t-b"):
            _join(storage, tenant_id, "bob")
        assert [p.tenant_id for p in storage.tenants_of_user("bob")] == ["t-a", "t-b", "t-c"]
        assert storage.tenants_of_user("nobody") == []

    def test_tenants_of_user_returns_current_policies(self, storage: Storage) -> None:
        policy = _new_tenant(storage, "acme")
        _join(storage, "acme", "bob")
        new = dataclasses.replace(policy, two_factor_required=True, activated_at=_at(9), version=1)
        assert storage.update_tenant_policy(new, expected_version=0, audit=_audit(at=_at(9)))
        assert storage.tenants_of_user("bob") == [new]

    def test_add_membership_stores_its_notifications_with_it(self, storage: Storage) -> None:
        _new_tenant(storage, "acme")
        note = _note("added", kind=NotificationKind.MEMBER_ADDED, role="admin")
        audit = _audit(AuditKind.MEMBER_ADDED, tenant_id="acme", user_id="bob", actor_id="olga")
        storage.add_membership(
            _member("acme", "bob", Role.ADMIN),
            audit,
            actor=_member("acme", "olga", Role.OWNER),
            notifications=[note],
        )
        assert storage.get_membership("acme", "bob") == _member("acme", "bob", Role.ADMIN)
        assert _audit_log(storage)[-1] == audit
        assert _outbox(storage) == [note]

    def test_add_membership_by_an_actor_whose_role_changed_or_who_left_raises_concurrent_change(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _new_tenant(storage, "globex", owner_id="gina")
        _join(storage, "acme", "adam", Role.ADMIN)
        before = _stored(storage, "acme")
        for stale in (
            _member("acme", "adam", Role.OWNER),
            _member("acme", "gone", Role.OWNER),
            _member("acme", "gina", Role.OWNER),  # an owner, but of another tenant
        ):
            with pytest.raises(ConcurrentChange):
                storage.add_membership(
                    _member("acme", "bob"),
                    _audit(AuditKind.MEMBER_ADDED, tenant_id="acme", user_id="bob"),
                    actor=stale,
                    notifications=[_note("never-added", kind=NotificationKind.MEMBER_ADDED)],
                )
        assert storage.get_membership("acme", "bob") is None
        assert storage.tenants_of_user("bob") == []
        assert _stored(storage, "acme") == before
        storage.add_membership(
            _member("acme", "bob"), _audit(), actor=_member("acme", "adam", Role.ADMIN)
        )
        assert storage.get_membership("acme", "bob") == _member("acme", "bob")

    # -- standings -----------------------------------------------------------------------------

    def test_standings_hold_the_users_and_the_actors_roles_in_each_tenant_of_the_user(
        self, storage: Storage
    ) -> None:
        policies = {
            tenant_id: _new_tenant(storage, tenant_id, owner_id=owner_id)
            for tenant_id, owner_id in (
                ("t-c", "carl"),
                ("t-a", "olga"),
                ("t-d", "olga"),
                ("t-b", "gina"),
            )
        }
        _join(storage, "t-c", "bob", Role.ADMIN)
        _join(storage, "t-a", "bob")
        _join(storage, "t-b", "bob", Role.OWNER)
        _join(storage, "t-c", "olga")
        assert storage.standings("bob", actor_id="olga") == [
            Standing(policy=policies["t-a"], role=Role.MEMBER, actor_role=Role.OWNER),
            Standing(policy=policies["t-b"], role=Role.OWNER, actor_role=None),
            Standing(policy=policies["t-c"], role=Role.ADMIN, actor_role=Role.MEMBER),
        ]
        assert storage.standings("olga", actor_id="bob") == [
            Standing(policy=policies["t-a"], role=Role.OWNER, actor_role=Role.MEMBER),
            Standing(policy=policies["t-c"], role=Role.MEMBER, actor_role=Role.ADMIN),
            Standing(policy=policies["t-d"], role=Role.OWNER, actor_role=None),
        ]

    def test_standings_have_no_actor_role_without_an_actor_or_for_a_stranger(
        self, storage: Storage
    ) -> None:
        acme = _new_tenant(storage, "acme", owner_id="olga")
        globex = _new_tenant(storage, "globex", owner_id="gina")
        _join(storage, "acme", "bob", Role.ADMIN)
        _join(storage, "globex", "bob")
        alone = [
            Standing(policy=acme, role=Role.ADMIN, actor_role=None),
            Standing(policy=globex, role=Role.MEMBER, actor_role=None),
        ]
        assert storage.standings("bob", actor_id=None) == alone
        assert storage.standings("bob", actor_id="nobody") == alone
        assert storage.standings("bob", actor_id="Olga") == alone
        assert storage.standings("bob", actor_id="bob") == [
            Standing(policy=acme, role=Role.ADMIN, actor_role=Role.ADMIN),
            Standing(policy=globex, role=Role.MEMBER, actor_role=Role.MEMBER),
        ]
        assert storage.standings("nobody", actor_id="olga") == []
        assert storage.standings("nobody", actor_id=None) == []

    def test_standings_follow_policies_roles_and_memberships_as_they_change(
        self, storage: Storage
    ) -> None:
        acme = _new_tenant(storage, "acme", owner_id="olga")
        globex = _new_tenant(storage, "globex", owner_id="olga")
        bob = _join(storage, "acme", "bob")
        _join(storage, "globex", "bob")
        new = dataclasses.replace(acme, two_factor_required=True, activated_at=_at(9), version=1)
        assert storage.update_tenant_policy(new, expected_version=0, audit=_audit(at=_at(9)))
        _set_role(storage, bob, Role.ADMIN, actor=None)
        _remove(storage, _member("globex", "bob"), actor=None)
        assert storage.standings("bob", actor_id="olga") == [
            Standing(policy=new, role=Role.ADMIN, actor_role=Role.OWNER)
        ]
        assert storage.standings("olga", actor_id="bob") == [
            Standing(policy=new, role=Role.OWNER, actor_role=Role.ADMIN),
            Standing(policy=globex, role=Role.OWNER, actor_role=None),
        ]

    # -- removing members and changing roles ---------------------------------------------------

    def test_remove_membership_deletes_it_and_stores_audit_and_notifications(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        globex = _new_tenant(storage, "globex", owner_id="gina")
        bob = _join(storage, "acme", "bob", Role.ADMIN)
        _join(storage, "globex", "bob")
        audit = _audit(
            AuditKind.MEMBER_REMOVED, tenant_id="acme", user_id="bob", actor_id="olga", role="admin"
        )
        notes = [
            _note("removed", kind=NotificationKind.MEMBER_REMOVED, previous_role="admin"),
            _note("removed-2", kind=NotificationKind.MEMBER_REMOVED, user_id="olga"),
        ]
        storage.remove_membership(
            bob, actor=_member("acme", "olga", Role.OWNER), audit=audit, notifications=notes
        )
        assert storage.get_membership("acme", "bob") is None
        assert storage.list_memberships("acme") == [_member("acme", "olga", Role.OWNER)]
        assert storage.list_memberships("acme", role=Role.ADMIN) == []
        assert storage.tenants_of_user("bob") == [globex]
        assert storage.standings("bob", actor_id=None) == [
            Standing(policy=globex, role=Role.MEMBER)
        ]
        assert _audit_log(storage)[-1] == audit
        assert _outbox(storage) == notes
        # Nothing of the membership is left behind: bob may be added again, with another role.
        _join(storage, "acme", "bob", Role.MEMBER)
        assert storage.get_membership("acme", "bob") == _member("acme", "bob")

    def test_remove_membership_of_a_non_member_raises_not_a_member_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _new_tenant(storage, "globex", owner_id="gina")
        _join(storage, "globex", "bob")
        bob = _join(storage, "acme", "bob")
        olga = _member("acme", "olga", Role.OWNER)
        _remove(storage, bob, actor=olga)
        before = _stored(storage, "acme")
        for gone in (bob, _member("ghost", "bob"), _member("acme", "Olga", Role.OWNER)):
            with pytest.raises(NotAMember):
                storage.remove_membership(
                    gone,
                    actor=olga,
                    audit=_audit(AuditKind.MEMBER_REMOVED, tenant_id="acme", user_id="bob"),
                    notifications=[_note("never-removed", kind=NotificationKind.MEMBER_REMOVED)],
                )
        assert _stored(storage, "acme") == before
        assert storage.get_membership("globex", "bob") == _member("globex", "bob")

    def test_remove_membership_whose_role_changed_raises_concurrent_change_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _join(storage, "acme", "bob", Role.ADMIN)
        _join(storage, "acme", "oscar", Role.OWNER)
        olga = _member("acme", "olga", Role.OWNER)
        before = _stored(storage, "acme")
        for stale in (
            _member("acme", "bob", Role.MEMBER),
            _member("acme", "bob", Role.OWNER),
            _member("acme", "oscar", Role.ADMIN),
        ):
            with pytest.raises(ConcurrentChange):
                storage.remove_membership(
                    stale,
                    actor=olga,
                    audit=_audit(AuditKind.MEMBER_REMOVED, tenant_id="acme", user_id="bob"),
                    notifications=[_note("never-removed", kind=NotificationKind.MEMBER_REMOVED)],
                )
        assert _stored(storage, "acme") == before

    def test_remove_membership_by_an_actor_whose_role_changed_or_who_left_raises_concurrent_change(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _new_tenant(storage, "globex", owner_id="gina")
        bob = _join(storage, "acme", "bob")
        _join(storage, "acme", "adam", Role.ADMIN)
        before = _stored(storage, "acme")
        for stale in (
            _member("acme", "adam", Role.OWNER),
            _member("acme", "adam", Role.MEMBER),
            _member("acme", "gone", Role.OWNER),
            _member("acme", "gina", Role.OWNER),  # an owner, but of another tenant
        ):
            with pytest.raises(ConcurrentChange):
                storage.remove_membership(
                    bob,
                    actor=stale,
                    audit=_audit(AuditKind.MEMBER_REMOVED, tenant_id="acme", user_id="bob"),
                    notifications=[_note("never-removed", kind=NotificationKind.MEMBER_REMOVED)],
                )
        assert _stored(storage, "acme") == before
        _remove(storage, bob, actor=_member("acme", "adam", Role.ADMIN))
        assert storage.get_membership("acme", "bob") is None

    def test_remove_membership_of_the_only_owner_raises_last_owner_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _join(storage, "acme", "adam", Role.ADMIN)
        _new_tenant(storage, "globex", owner_id="gina")
        _join(storage, "globex", "olga", Role.OWNER)  # an owner elsewhere does not count
        olga = _member("acme", "olga", Role.OWNER)
        before = _stored(storage, "acme")
        for actor in (None, olga):  # the operator, or olga leaving
            with pytest.raises(LastOwner):
                storage.remove_membership(
                    olga,
                    actor=actor,
                    audit=_audit(AuditKind.MEMBER_REMOVED, tenant_id="acme", user_id="olga"),
                    notifications=[_note("never-removed", kind=NotificationKind.MEMBER_REMOVED)],
                )
        assert _stored(storage, "acme") == before

    def test_remove_membership_of_one_of_two_owners_succeeds_and_leaves_the_other_the_last(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        olga = _member("acme", "olga", Role.OWNER)
        oscar = _join(storage, "acme", "oscar", Role.OWNER)
        _remove(storage, oscar, actor=olga)
        assert _owner_ids(storage, "acme") == ["olga"]
        with pytest.raises(LastOwner):
            _remove(storage, olga, actor=None)
        # An owner may leave while another one stays.
        _join(storage, "acme", "oscar", Role.OWNER)
        _remove(storage, olga, actor=olga)
        assert storage.list_memberships("acme") == [oscar]

    def test_change_role_gives_the_new_role_and_stores_audit_and_notifications(
        self, storage: Storage
    ) -> None:
        acme = _new_tenant(storage, "acme", owner_id="olga")
        bob = _join(storage, "acme", "bob")
        audit = _audit(
            AuditKind.ROLE_CHANGED,
            tenant_id="acme",
            user_id="bob",
            actor_id="olga",
            old="member",
            new="admin",
        )
        notes = [
            _note(
                "to-bob", kind=NotificationKind.ROLE_CHANGED, role="admin", previous_role="member"
            ),
            _note(
                "to-olga",
                kind=NotificationKind.ROLE_CHANGED,
                user_id="olga",
                role="admin",
                previous_role="member",
                member_id="bob",
            ),
        ]
        storage.change_role(
            bob,
            Role.ADMIN,
            actor=_member("acme", "olga", Role.OWNER),
            audit=audit,
            notifications=notes,
        )
        admin = _member("acme", "bob", Role.ADMIN)
        assert storage.get_membership("acme", "bob") == admin
        assert storage.list_memberships("acme", role=Role.ADMIN) == [admin]
        assert storage.list_memberships("acme", role=Role.MEMBER) == []
        assert storage.standings("bob", actor_id="olga") == [
            Standing(policy=acme, role=Role.ADMIN, actor_role=Role.OWNER)
        ]
        assert _audit_log(storage)[-1] == audit
        assert _outbox(storage) == notes

    def test_change_role_of_a_non_member_raises_not_a_member_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _new_tenant(storage, "globex", owner_id="gina")
        _join(storage, "globex", "bob")
        olga = _member("acme", "olga", Role.OWNER)
        before = _stored(storage, "acme")
        for gone in (_member("acme", "bob"), _member("ghost", "bob")):
            with pytest.raises(NotAMember):
                storage.change_role(
                    gone,
                    Role.ADMIN,
                    actor=olga,
                    audit=_audit(AuditKind.ROLE_CHANGED, tenant_id="acme", user_id="bob"),
                    notifications=[_note("never-changed", kind=NotificationKind.ROLE_CHANGED)],
                )
        assert _stored(storage, "acme") == before
        assert storage.get_membership("globex", "bob") == _member("globex", "bob")

    def test_change_role_from_a_stale_role_or_by_a_changed_actor_raises_concurrent_change(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        bob = _join(storage, "acme", "bob")
        _join(storage, "acme", "adam", Role.ADMIN)
        olga = _member("acme", "olga", Role.OWNER)
        before = _stored(storage, "acme")
        attempts = [
            (_member("acme", "bob", Role.ADMIN), olga),
            (_member("acme", "bob", Role.OWNER), olga),
            (bob, _member("acme", "adam", Role.OWNER)),
            (bob, _member("acme", "gone", Role.OWNER)),
        ]
        for member, actor in attempts:
            with pytest.raises(ConcurrentChange):
                storage.change_role(
                    member,
                    Role.ADMIN,
                    actor=actor,
                    audit=_audit(AuditKind.ROLE_CHANGED, tenant_id="acme", user_id="bob"),
                    notifications=[_note("never-changed", kind=NotificationKind.ROLE_CHANGED)],
                )
        assert _stored(storage, "acme") == before

    def test_change_role_may_promote_a_member_to_owner_beside_the_only_owner(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        bob = _join(storage, "acme", "bob")
        _set_role(storage, bob, Role.OWNER, actor=_member("acme", "olga", Role.OWNER))
        assert _owner_ids(storage, "acme") == ["bob", "olga"]
        # Owners made that way count: the first owner may now step down.
        _set_role(storage, _member("acme", "olga", Role.OWNER), Role.MEMBER, actor=None)
        assert _owner_ids(storage, "acme") == ["bob"]

    def test_change_role_of_the_only_owner_to_another_role_raises_last_owner_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _join(storage, "acme", "adam", Role.ADMIN)
        olga = _member("acme", "olga", Role.OWNER)
        before = _stored(storage, "acme")
        for role in (Role.ADMIN, Role.MEMBER):
            for actor in (None, olga):
                with pytest.raises(LastOwner):
                    storage.change_role(
                        olga,
                        role,
                        actor=actor,
                        audit=_audit(AuditKind.ROLE_CHANGED, tenant_id="acme", user_id="olga"),
                        notifications=[_note("never-changed", kind=NotificationKind.ROLE_CHANGED)],
                    )
        assert _stored(storage, "acme") == before

    def test_change_role_of_the_only_owner_to_owner_is_no_demotion(self, storage: Storage) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        olga = _member("acme", "olga", Role.OWNER)
        audit = _audit(AuditKind.ROLE_CHANGED, tenant_id="acme", user_id="olga", new="owner")
        storage.change_role(olga, Role.OWNER, actor=olga, audit=audit)
        assert storage.list_memberships("acme") == [olga]
        assert _audit_log(storage)[-1] == audit

    def test_change_role_of_one_of_two_owners_demotes_it_and_leaves_the_other_the_last(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        olga = _member("acme", "olga", Role.OWNER)
        oscar = _join(storage, "acme", "oscar", Role.OWNER)
        _set_role(storage, oscar, Role.ADMIN, actor=oscar)  # stepping down
        assert _owner_ids(storage, "acme") == ["olga"]
        assert storage.get_membership("acme", "oscar") == _member("acme", "oscar", Role.ADMIN)
        with pytest.raises(LastOwner):
            _set_role(storage, olga, Role.MEMBER, actor=olga)
        assert _owner_ids(storage, "acme") == ["olga"]

    # -- the factor record: one read, one decided write ----------------------------------------

    def test_get_factor_of_an_unknown_user_is_an_empty_record(self, storage: Storage) -> None:
        assert storage.get_factor("nobody") == FactorRecord(user_id="nobody")

    def test_load_login_of_an_unknown_user_is_an_empty_record_in_no_tenant(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme")
        state = storage.load_login("nobody")
        assert state.factor == FactorRecord(user_id="nobody")
        assert state.tenants == ()
        assert state.recovery_digests is None
        assert storage.load_login("nobody", recovery_codes=True).recovery_digests == ()

    def test_load_login_holds_the_users_tenants_in_id_order_with_roles_and_policies(
        self, storage: Storage
    ) -> None:
        for tenant_id in ("zeta", "acme", "mid"):
            _new_tenant(storage, tenant_id)
        _join(storage, "zeta", "bob", Role.ADMIN)
        _join(storage, "acme", "bob")
        _join(storage, "mid", "ann")
        acme = storage.get_tenant("acme")
        assert acme is not None
        switched = dataclasses.replace(
            acme, two_factor_required=True, activated_at=_at(5), version=1
        )
        assert storage.update_tenant_policy(switched, expected_version=0, audit=_audit())
        state = storage.load_login("bob")
        assert state.tenants == (
            Standing(policy=switched, role=Role.MEMBER),
            Standing(policy=storage.get_tenant("zeta"), role=Role.ADMIN),  # type: ignore[arg-type]
        )
        assert state.standing("zeta") == state.tenants[1]
        assert state.standing("mid") is None
        assert [s.policy.tenant_id for s in storage.load_login("olga").tenants] == [
            "acme",
            "mid",
            "zeta",
        ]

    def test_load_login_holds_the_factor_as_get_factor_does_and_the_unused_codes(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme")
        _join(storage, "acme", "bob")
        _enroll(storage, "bob", recovery=_codes("a", "b", "c"))
        assert _consume(storage, "bob", "b") == 2
        _fail(storage, "bob", 2, at=_at(7))
        _save_pending(storage, "bob", _pending("p2", created_at=_at(8)), at=_at(8))
        state = storage.load_login("bob", recovery_codes=True)
        assert state.factor == storage.get_factor("bob")
        assert state.factor.recovery_codes_left == 2
        assert state.recovery_digests is not None
        assert state.recovery_digests == tuple(sorted([_digest("a"), _digest("c")]))
        assert storage.load_login("bob").factor == state.factor

    def test_commit_factor_of_a_new_user_stores_the_record_whole_with_audit_and_notifications(
        self, storage: Storage
    ) -> None:
        empty = storage.get_factor("bob")
        record = FactorRecord(
            user_id="bob",
            secret=b"\x00active\xff",
            activated_at=_at(1),
            last_step=2**40,
            pending=_pending("p1", secret=b"\x00pending\xff", created_at=_at(2)),
            epoch=3,
            failures=4,
            last_failure_at=_at(5),
            recovery_salt=b"salt-0123456789a",
            recovery_codes_left=2,
            identity_floor=_at(6),
            revision=1,
        )
        audits = [
            _audit(at=_at(7), user_id="bob"),
            _audit(AuditKind.LOCKED_OUT, at=_at(7), user_id="bob"),
        ]
        assert _commit(
            storage,
            empty,
            record,
            at=_at(7),
            audit=audits,
            notifications=[_note("n1")],
            recovery=_codes("a", "b"),
        )
        assert storage.get_factor("bob") == record
        assert _audit_log(storage) == audits
        assert _outbox_ids(storage) == ["n1"]
        unused = storage.load_login("bob", recovery_codes=True).recovery_digests
        assert unused == tuple(sorted([_digest("a"), _digest("b")]))

    def test_commit_factor_stores_every_field_as_decided_and_moves_the_revision(
        self, storage: Storage
    ) -> None:
        _enroll(storage, "bob", step=1000)
        before = storage.get_factor("bob")
        cleared = dataclasses.replace(
            before,
            secret=None,
            activated_at=None,
            pending=None,
            recovery_salt=None,
            recovery_codes_left=0,
            last_failure_at=None,
            identity_floor=None,
            revision=before.revision + 1,
        )
        assert _commit(storage, before, cleared)
        assert storage.get_factor("bob") == cleared
        again = dataclasses.replace(cleared, failures=9, revision=cleared.revision + 1)
        assert _commit(storage, cleared, again)
        assert storage.get_factor("bob") == again

    def test_commit_factor_from_a_stale_revision_returns_false_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        _enroll(storage, "bob", recovery=_codes("a", "b"))
        current = storage.get_factor("bob")
        stored = _factor_stored(storage, "bob")
        for revision in (current.revision - 1, current.revision + 1, 0):
            seen = dataclasses.replace(current, revision=revision)
            written = _commit(
                storage,
                seen,
                dataclasses.replace(current, failures=7, revision=revision + 1),
                audit=[_audit()],
                notifications=[_note(f"never-{revision}")],
                recovery=_codes("x"),
            )
            assert written is False, revision
        assert _factor_stored(storage, "bob") == stored
        assert _consume(storage, "bob", "x") is None
        assert _consume(storage, "bob", "a") == 1

    def test_commit_factor_of_a_user_without_a_record_from_a_later_revision_changes_nothing(
        self, storage: Storage
    ) -> None:
        seen = FactorRecord(user_id="bob", revision=4)
        assert not _commit(storage, seen, dataclasses.replace(seen, failures=1, revision=5))
        assert storage.get_factor("bob") == FactorRecord(user_id="bob")
        assert _audit_log(storage) == []

    def test_commit_factor_marks_exactly_the_used_recovery_code_used(
        self, storage: Storage
    ) -> None:
        _enroll(storage, "bob", recovery=_codes("a", "b", "c"))
        _fail(storage, "bob", 3)
        before = storage.get_factor("bob")
        assert _consume(storage, "bob", "b", at=_at(5)) == 2
        after = storage.get_factor("bob")
        assert after == dataclasses.replace(
            before,
            failures=0,
            last_failure_at=None,
            recovery_codes_left=2,
            revision=before.revision + 1,
        )
        assert _audit_log(storage)[-1].kind is AuditKind.RECOVERY_CODE_USED
        assert [_consume(storage, "bob", label) for label in ("b", "c", "a", "c")] == [
            None,
            1,
            0,
            None,
        ]

    def test_commit_factor_that_uses_a_code_not_stored_as_unused_fails_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        _enroll(storage, "bob", recovery=_codes("a", "b"))
        assert _consume(storage, "bob", "a") == 1
        before = storage.get_factor("bob")
        stored = _factor_stored(storage, "bob")
        for label in ("a", "never-issued"):
            with pytest.raises(StorageError):
                _commit(
                    storage,
                    before,
                    attempts.recovering(before, codes_left=0),
                    audit=[_audit()],
                    notifications=[_note("never")],
                    use_recovery_code=_digest(label),
                )
        assert _factor_stored(storage, "bob") == stored

    def test_commit_factor_with_recovery_codes_replaces_all_of_them(self, storage: Storage) -> None:
        _enroll(storage, "bob", step=1000, recovery=_codes("a", "b", "c"))
        assert _consume(storage, "bob", "a") == 2
        before = storage.get_factor("bob")
        fresh = _codes("w", "x", "y", "z", salt=b"second salt")
        replaced = attempts.codes_replaced(before, fresh)
        assert _commit(storage, before, replaced, recovery=fresh)
        assert storage.get_factor("bob") == dataclasses.replace(
            before,
            epoch=before.epoch + 1,
            recovery_salt=b"second salt",
            recovery_codes_left=4,
            revision=before.revision + 1,
        )
        assert _consume(storage, "bob", "b") is None
        assert _consume(storage, "bob", "x") == 3

    def test_every_other_write_of_the_factor_moves_its_revision(self, storage: Storage) -> None:
        _enroll(storage, "bob", secret=b"old")
        seen = storage.get_factor("bob")
        sealed = storage.sealed_secrets(after_user_id=None, limit=10)[0]
        assert storage.rewrap_secrets(sealed, dataclasses.replace(sealed, secret=b"new"))
        _fail(storage, "bob", 1)
        assert storage.unlock_factor("bob", audit=_audit())
        assert storage.reset_factor("bob", floor=T0, audit=_audit())
        # rewrap, one failure, unlock, reset: four writes, four revisions.
        assert storage.get_factor("bob").revision == seen.revision + 4
        # A decision made before any of them is refused.
        assert not _commit(storage, seen, attempts.charged(seen, now=T0))
        assert storage.get_factor("bob").revision == seen.revision + 4

    # -- attempts decided on snapshots ----------------------------------------------------------

    def test_pending_enrollments_are_saved_replaced_and_activated_once(
        self, storage: Storage
    ) -> None:
        _save_pending(storage, "bob", _pending("p1", secret=b"first"))
        second = _pending("p2", secret=b"second", created_at=_at(30))
        _save_pending(storage, "bob", second, at=_at(30))
        assert storage.get_factor("bob").pending == second
        epoch = _activate(storage, "bob", step=5000, at=_at(40), recovery=_codes("x", "y"))
        assert epoch == 1
        after = storage.get_factor("bob")
        assert (after.secret, after.pending, after.activated_at, after.last_step) == (
            b"second",
            None,
            _at(40),
            5000,
        )
        assert after.recovery_codes_left == 2
        assert _activate(storage, "bob", step=5001, at=_at(41)) is None

    def test_failed_attempts_follow_the_throttle_through_the_stored_counter(
        self, storage: Storage
    ) -> None:
        rules = ThrottleRules(
            free_failures=2,
            base_delay=timedelta(seconds=10),
            max_delay=timedelta(seconds=40),
            max_failures=7,
        )
        schedule = [0, 0, 0, 5, 10, 29, 30, 69, 70, 100, 110, 149, 150, 151, 10**5]
        failures, last_failure_at = 0, None
        refused = 0
        for offset in schedule:
            now = _at(offset)
            expected = allowance(
                failures=failures, last_failure_at=last_failure_at, now=now, rules=rules
            )
            counted = _charge(storage, "bob", at=now, rules=rules)
            assert (counted is not None) == expected.allowed, f"at +{offset}s"
            if expected.allowed:
                failures, last_failure_at = failures + 1, now
            else:
                refused += 1
            factor = storage.get_factor("bob")
            assert (factor.failures, factor.last_failure_at) == (failures, last_failure_at)
        assert refused > 0
        assert storage.get_factor("ann").failures == 0

    def test_a_time_step_is_accepted_once_and_never_again_or_older(self, storage: Storage) -> None:
        _enroll(storage, "bob", step=1000)
        _fail(storage, "bob", 3, at=_at(20))
        assert _accept(storage, "bob", 1003, at=_at(30))
        factor = storage.get_factor("bob")
        assert (factor.last_step, factor.failures, factor.last_failure_at) == (1003, 0, None)
        assert [_accept(storage, "bob", s) for s in (1003, 1002, 1000, -1)] == [False] * 4
        assert _accept(storage, "bob", 1004)

    # -- reset_factor --------------------------------------------------------------------------

    def test_reset_factor_removes_secrets_codes_and_failures_keeps_last_step_and_bumps_epoch(
        self, storage: Storage
    ) -> None:
        epoch = _enroll(storage, "bob", step=1000, recovery=_codes("a", "b"))
        _save_pending(storage, "bob", _pending("p2", created_at=_at(5)))
        _fail(storage, "bob", 4, at=_at(6))
        audit = _audit(AuditKind.TWO_FACTOR_RESET, at=_at(7), tenant_id="acme", user_id="bob")
        new_epoch = storage.reset_factor("bob", floor=T0, audit=audit)
        assert new_epoch == epoch + 1
        after = storage.get_factor("bob")
        assert after.secret is None
        assert after.pending is None
        assert after.recovery_salt is None
        assert after.recovery_codes_left == 0
        assert after.failures == 0
        assert after.last_step == 1000
        assert after.epoch == epoch + 1
        assert _audit_log(storage)[-1] == audit
        assert _consume(storage, "bob", "b") is None

    def test_reset_factor_of_a_pending_enrollment_removes_it(self, storage: Storage) -> None:
        _save_pending(storage, "bob", _pending("p1"))
        before = storage.get_factor("bob")
        assert storage.reset_factor("bob", floor=T0, audit=_audit()) == before.epoch + 1
        after = storage.get_factor("bob")
        assert (after.pending, after.secret, after.epoch) == (None, None, before.epoch + 1)
        assert _activate(storage, "bob", step=10, at=_at(1), recovery=_codes("x")) is None

    def test_reset_factor_of_an_expired_pending_enrollment_removes_it(
        self, storage: Storage
    ) -> None:
        # Expired by any clock, the backend's own included.
        long_ago = datetime(2000, 1, 1, tzinfo=UTC)
        _save_pending(storage, "bob", _pending("p1", created_at=long_ago))
        before = storage.get_factor("bob")
        assert storage.reset_factor("bob", floor=T0, audit=_audit()) == before.epoch + 1
        assert storage.get_factor("bob").pending is None

    def test_reset_factor_of_a_user_with_only_failures_clears_them(self, storage: Storage) -> None:
        second = timedelta(seconds=1)
        rules = ThrottleRules(free_failures=1, max_failures=2, base_delay=second, max_delay=second)
        for now in (T0, _at(1)):
            assert _charge(storage, "bob", at=now, rules=rules) is not None
        assert _locked_for_good(storage, "bob", at=_at(9), rules=rules)
        before = storage.get_factor("bob")
        audit = _audit(AuditKind.TWO_FACTOR_RESET, at=_at(10), user_id="bob")
        assert storage.reset_factor("bob", floor=T0, audit=audit) == before.epoch + 1
        after = storage.get_factor("bob")
        assert (after.failures, after.epoch) == (0, before.epoch + 1)
        assert _charge(storage, "bob", at=_at(10), rules=rules) is not None
        assert audit in _audit_log(storage)

    def test_reset_factor_with_nothing_to_reset_returns_none_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        assert storage.reset_factor("nobody", floor=T0, audit=_audit()) is None
        assert storage.get_factor("nobody") == FactorRecord(user_id="nobody")
        _enroll(storage, "ann")
        assert storage.reset_factor("ann", floor=T0, audit=_audit())
        reset_ann, log = storage.get_factor("ann"), _audit_log(storage)
        assert storage.reset_factor("ann", floor=T0, audit=_audit()) is None
        assert storage.get_factor("ann") == reset_ann
        assert _audit_log(storage) == log

    def test_reset_factor_keeps_used_time_steps_closed(self, storage: Storage) -> None:
        _enroll(storage, "bob", step=1000)
        assert storage.reset_factor("bob", floor=T0, audit=_audit())
        _save_pending(storage, "bob", _pending("again", created_at=_at(60)))
        recovery = _codes("x")
        assert _activate(storage, "bob", step=1000, at=_at(60), recovery=recovery) is None
        assert _activate(storage, "bob", step=1001, at=_at(60), recovery=recovery)

    def test_reset_factor_sets_the_identity_floor(self, storage: Storage) -> None:
        _enroll(storage, "bob")
        assert storage.get_factor("bob").identity_floor is None
        assert storage.reset_factor("bob", floor=_at(60), audit=_audit(at=_at(60)))
        assert storage.get_factor("bob").identity_floor == _at(60)

    def test_reset_factor_raises_the_identity_floor_and_never_lowers_it(
        self, storage: Storage
    ) -> None:
        for floor, expected in ((60, 60), (30, 60), (60, 60), (90, 90)):
            _fail(storage, "bob", 1)
            assert storage.reset_factor("bob", floor=_at(floor), audit=_audit()), floor
            assert storage.get_factor("bob").identity_floor == _at(expected), floor
        # A reset that finds nothing to reset changes nothing, the floor included.
        assert storage.reset_factor("bob", floor=_at(120), audit=_audit()) is None
        assert storage.get_factor("bob").identity_floor == _at(90)

    def test_the_identity_floor_stays_through_every_other_change_of_the_factor(
        self, storage: Storage
    ) -> None:
        _fail(storage, "bob", 1)
        assert storage.reset_factor("bob", floor=_at(60), audit=_audit())

        def kept(after: str) -> None:
            assert storage.get_factor("bob").identity_floor == _at(60), f"after {after}"

        _save_pending(storage, "bob", _pending("p1", created_at=_at(61)))
        kept("save_pending")
        _fail(storage, "bob", 1, at=_at(61))
        kept("a failed attempt")
        epoch = _activate(storage, "bob", step=2000, at=_at(62), recovery=_codes("a", "b"))
        assert epoch is not None
        kept("activation")
        assert _accept(storage, "bob", 2001, at=_at(63))
        kept("an accepted code")
        assert _consume(storage, "bob", "a", at=_at(64)) == 1
        kept("a used recovery code")
        before = storage.get_factor("bob")
        fresh = _codes("x")
        assert _commit(storage, before, attempts.codes_replaced(before, fresh), recovery=fresh)
        kept("new recovery codes")
        _fail(storage, "bob", 1, at=_at(65))
        assert storage.unlock_factor("bob", audit=_audit())
        kept("unlock_factor")
        (sealed,) = storage.sealed_secrets(after_user_id=None, limit=10)
        assert storage.rewrap_secrets(sealed, dataclasses.replace(sealed, secret=b"rewrapped"))
        kept("rewrap_secrets")

    def test_reset_factor_with_the_standings_it_expects_resets(self, storage: Storage) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _new_tenant(storage, "globex", owner_id="gina")
        _join(storage, "acme", "bob")
        _join(storage, "globex", "bob", Role.ADMIN)
        epoch = _enroll(storage, "bob")
        expected = tuple(storage.standings("bob", actor_id="olga"))
        audit = _audit(AuditKind.TWO_FACTOR_RESET, tenant_id="acme", user_id="bob")
        assert (
            storage.reset_factor(
                "bob",
                floor=T0,
                audit=audit,
                notifications=[_note("reset", kind=NotificationKind.TWO_FACTOR_RESET)],
                actor_id="olga",
                expected=expected,
            )
            == epoch + 1
        )
        assert storage.get_factor("bob").secret is None
        assert _audit_log(storage)[-1] == audit
        assert _outbox_ids(storage) == ["reset"]
        # A user in no tenant at all: the operator's decision rested on that.
        _fail(storage, "nomad", 1)
        assert storage.reset_factor("nomad", floor=T0, audit=_audit(), expected=[]) == 1

    def test_reset_factor_with_stale_standings_raises_concurrent_change_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        for what, change in _changes_of_standings(storage).items():
            expected = storage.standings("bob", actor_id="olga")
            change()
            assert storage.standings("bob", actor_id="olga") != expected, what
            before = _factor_stored(storage, "bob")
            with pytest.raises(ConcurrentChange):
                storage.reset_factor(
                    "bob",
                    floor=_at(60),
                    audit=_audit(AuditKind.TWO_FACTOR_RESET, user_id="bob"),
                    notifications=[_note("never-reset", kind=NotificationKind.TWO_FACTOR_RESET)],
                    actor_id="olga",
                    expected=expected,
                )
            assert _factor_stored(storage, "bob") == before, what
        assert storage.get_factor("bob").identity_floor is None
        assert _consume(storage, "bob", "a") == 1

    # -- unlock_factor -------------------------------------------------------------------------

    def test_unlock_factor_clears_failures_and_keeps_everything_else(
        self, storage: Storage
    ) -> None:
        epoch = _enroll(storage, "bob", step=1000, recovery=_codes("a", "b", "c"))
        assert _consume(storage, "bob", "a") == 2
        _save_pending(storage, "bob", _pending("p2", created_at=_at(5)))
        second = timedelta(seconds=1)
        rules = ThrottleRules(free_failures=1, max_failures=2, base_delay=second, max_delay=second)
        for now in (_at(6), _at(7)):
            assert _charge(storage, "bob", at=now, rules=rules) is not None
        assert _locked_for_good(storage, "bob", at=_at(9), rules=rules)
        before = storage.get_factor("bob")
        audit = _audit(AuditKind.TWO_FACTOR_UNLOCKED, at=_at(10), tenant_id="acme", user_id="bob")
        note = _note("unlocked", kind=NotificationKind.TWO_FACTOR_UNLOCKED)
        assert storage.unlock_factor("bob", audit=audit, notifications=[note]) is True
        after = storage.get_factor("bob")
        assert after == dataclasses.replace(
            before, failures=0, last_failure_at=None, revision=before.revision + 1
        )
        assert after.epoch == epoch
        assert _audit_log(storage)[-1] == audit
        assert _outbox(storage) == [note]
        assert _charge(storage, "bob", at=_at(10), rules=rules) is not None
        assert _consume(storage, "bob", "b") == 1
        assert _accept(storage, "bob", 1001, at=_at(10))

    def test_unlock_factor_with_no_failure_counted_returns_false_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        _enroll(storage, "bob")
        _fail(storage, "bob", 1)
        assert storage.unlock_factor("bob", audit=_audit())
        before = _factor_stored(storage, "bob")
        for user_id in ("bob", "nobody"):
            unlocked = storage.unlock_factor(
                user_id,
                audit=_audit(AuditKind.TWO_FACTOR_UNLOCKED, user_id=user_id),
                notifications=[_note("never-unlocked", kind=NotificationKind.TWO_FACTOR_UNLOCKED)],
            )
            assert unlocked is False, user_id
        assert _factor_stored(storage, "bob") == before
        assert storage.get_factor("nobody") == FactorRecord(user_id="nobody")

    def test_unlock_factor_with_the_standings_it_expects_unlocks(self, storage: Storage) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _join(storage, "acme", "bob")
        _fail(storage, "bob", 3)
        expected = tuple(storage.standings("bob", actor_id="olga"))
        assert storage.unlock_factor("bob", audit=_audit(), actor_id="olga", expected=expected)
        assert storage.get_factor("bob").failures == 0
        _fail(storage, "nomad", 1)
        assert storage.unlock_factor("nomad", audit=_audit(), expected=[])

    def test_unlock_factor_with_stale_standings_raises_concurrent_change_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        for what, change in _changes_of_standings(storage).items():
            expected = storage.standings("bob", actor_id="olga")
            change()
            assert storage.standings("bob", actor_id="olga") != expected, what
            before = _factor_stored(storage, "bob")
            with pytest.raises(ConcurrentChange):
                storage.unlock_factor(
                    "bob",
                    audit=_audit(AuditKind.TWO_FACTOR_UNLOCKED, user_id="bob"),
                    notifications=[
                        _note("never-unlocked", kind=NotificationKind.TWO_FACTOR_UNLOCKED)
                    ],
                    actor_id="olga",
                    expected=expected,
                )
            assert _factor_stored(storage, "bob") == before, what
        assert storage.get_factor("bob").failures == 2

    # -- audit ---------------------------------------------------------------------------------

    def test_append_audit_stores_the_record_as_given(self, storage: Storage) -> None:
        record = _audit(
            AuditKind.LOCKED_OUT,
            at=_at(42),
            tenant_id="acme",
            user_id="bob",
            actor_id="olga",
            failures="5",
            until="2026-01-01T00:01:12+00:00",
        )
        storage.append_audit(record)
        assert _audit_log(storage) == [record]

    def test_audit_records_filter_by_tenant(self, storage: Storage) -> None:
        in_acme = _audit(tenant_id="acme", user_id="bob")
        for record in (in_acme, _audit(tenant_id="globex", user_id="bob"), _audit(user_id="bob")):
            storage.append_audit(record)
        assert storage.audit_records(AuditQuery(tenant_id="acme")) == [in_acme]

    def test_audit_records_filter_by_user_as_subject_or_actor(self, storage: Storage) -> None:
        about_bob = _audit(user_id="bob", at=_at(1))
        by_bob = _audit(user_id="ann", actor_id="bob", at=_at(2))
        neither = _audit(user_id="ann", actor_id="olga", at=_at(3))
        for record in (about_bob, by_bob, neither):
            storage.append_audit(record)
        assert storage.audit_records(AuditQuery(user_id="bob")) == [about_bob, by_bob]

    def test_audit_records_filter_by_kinds(self, storage: Storage) -> None:
        accepted = _audit(AuditKind.CODE_ACCEPTED, at=_at(1))
        reset = _audit(AuditKind.TWO_FACTOR_RESET, at=_at(2))
        for record in (accepted, _audit(AuditKind.CODE_REJECTED, at=_at(3)), reset):
            storage.append_audit(record)
        kinds = frozenset({AuditKind.CODE_ACCEPTED, AuditKind.TWO_FACTOR_RESET})
        assert storage.audit_records(AuditQuery(kinds=kinds)) == [accepted, reset]

    def test_audit_records_since_is_inclusive_and_until_is_exclusive(
        self, storage: Storage
    ) -> None:
        records = [_audit(at=_at(seconds)) for seconds in (0, 10, 20, 30)]
        for record in records:
            storage.append_audit(record)
        query = AuditQuery(since=_at(10), until=_at(30))
        assert storage.audit_records(query) == records[1:3]

    def test_audit_records_are_oldest_first(self, storage: Storage) -> None:
        late, early, middle = _audit(at=_at(20)), _audit(at=_at(0)), _audit(at=_at(10))
        for record in (late, early, middle):
            storage.append_audit(record)
        assert _audit_log(storage) == [early, middle, late]

    def test_audit_records_at_the_same_time_keep_insertion_order(self, storage: Storage) -> None:
        first, second = _audit(at=_at(10)), _audit(at=_at(0))
        third, fourth = _audit(at=_at(10)), _audit(at=_at(0))
        same = [_audit(AuditKind.CODE_REJECTED, at=_at(5), reason=str(i)) for i in range(6)]
        for record in (first, second, *same, third, fourth):
            storage.append_audit(record)
        assert _audit_log(storage) == [second, fourth, *same, first, third]

    def test_audit_records_pages_with_limit_and_offset_after_filtering_and_ordering(
        self, storage: Storage
    ) -> None:
        acme = [_audit(tenant_id="acme", at=_at(i)) for i in range(7)]
        for i, record in enumerate(reversed(acme)):
            storage.append_audit(record)
            storage.append_audit(_audit(tenant_id="globex", at=_at(i)))
        assert storage.audit_records(AuditQuery(tenant_id="acme", limit=3, offset=2)) == acme[2:5]
        assert storage.audit_records(AuditQuery(tenant_id="acme", limit=3, offset=6)) == acme[6:]
        assert storage.audit_records(AuditQuery(tenant_id="acme", limit=3, offset=7)) == []
        assert storage.audit_records(AuditQuery(tenant_id="acme", limit=2)) == acme[:2]

    def test_audit_records_combine_every_filter(self, storage: Storage) -> None:
        wanted = _audit(AuditKind.CODE_ACCEPTED, at=_at(10), tenant_id="acme", user_id="bob")
        others = [
            _audit(AuditKind.CODE_REJECTED, at=_at(10), tenant_id="acme", user_id="bob"),
            _audit(AuditKind.CODE_ACCEPTED, at=_at(10), tenant_id="globex", user_id="bob"),
            _audit(AuditKind.CODE_ACCEPTED, at=_at(10), tenant_id="acme", user_id="ann"),
            _audit(AuditKind.CODE_ACCEPTED, at=_at(30), tenant_id="acme", user_id="bob"),
        ]
        for record in (*others, wanted):
            storage.append_audit(record)
        query = AuditQuery(
            tenant_id="acme",
            user_id="bob",
            kinds=frozenset({AuditKind.CODE_ACCEPTED}),
            since=_at(10),
            until=_at(30),
        )
        assert storage.audit_records(query) == [wanted]

    # -- isolation -----------------------------------------------------------------------------

    def test_colliding_user_ids_in_several_tenants_keep_separate_memberships(
        self, storage: Storage
    ) -> None:
        acme = _new_tenant(storage, "acme", owner_id="olga")
        globex = _new_tenant(storage, "globex", owner_id="olga")
        _join(storage, "acme", "bob", Role.MEMBER)
        _join(storage, "globex", "bob", Role.ADMIN)
        _join(storage, "globex", "carl")
        assert storage.get_membership("acme", "bob") == _member("acme", "bob", Role.MEMBER)
        assert storage.get_membership("globex", "bob") == _member("globex", "bob", Role.ADMIN)
        assert [m.user_id for m in storage.list_memberships("acme")] == ["bob", "olga"]
        assert storage.tenants_of_user("olga") == [acme, globex]
        assert storage.tenants_of_user("carl") == [globex]

    def test_audit_records_of_a_tenant_exclude_other_tenants_with_the_same_user_ids(
        self, storage: Storage
    ) -> None:
        acme = _audit(tenant_id="acme", user_id="bob", actor_id="olga")
        storage.append_audit(acme)
        storage.append_audit(_audit(tenant_id="globex", user_id="bob", actor_id="olga"))
        assert storage.audit_records(AuditQuery(tenant_id="acme", user_id="bob")) == [acme]
        assert storage.audit_records(AuditQuery(tenant_id="acme", user_id="olga")) == [acme]

    def test_factors_of_users_are_independent(self, storage: Storage) -> None:
        same_codes = _codes("a", "b")
        _enroll(storage, "ann", step=1000, recovery=same_codes, secret=b"ann")
        _enroll(storage, "ben", step=2000, recovery=same_codes, secret=b"ben")
        _fail(storage, "ben", 3)
        ann = storage.get_factor("ann")
        assert _consume(storage, "ben", "a") == 1
        assert storage.reset_factor("ben", floor=T0, audit=_audit())
        assert storage.get_factor("ann") == ann
        assert (ann.secret, ann.last_step, ann.failures) == (b"ann", 1000, 0)
        assert _consume(storage, "ann", "a") == 1

    def test_identifiers_are_compared_exactly(self, storage: Storage) -> None:
        _new_tenant(storage, "acme", owner_id="olga")
        _new_tenant(storage, "ACME", owner_id="Olga")
        _join(storage, "acme", "Bob")
        _join(storage, "acme", "bob ")
        _join(storage, "acme", "bob")
        assert [m.user_id for m in storage.list_memberships("ACME")] == ["Olga"]
        assert storage.get_membership("acme", "BOB") is None
        _enroll(storage, "bob", step=1000)
        for lookalike in ("Bob", "bob ", "BOB", "böb"):
            assert storage.get_factor(lookalike) == FactorRecord(user_id=lookalike)
            assert _consume(storage, lookalike, "a") is None

    # -- large values and times ----------------------------------------------------------------

    def test_time_steps_beyond_32_bits_are_stored_exactly(self, storage: Storage) -> None:
        step = 2**33 + 7
        _enroll(storage, "bob", step=step)
        assert storage.get_factor("bob").last_step == step
        # 2**32 + 8 would wrap around to a newer-looking step if the column were 32 bits wide.
        for older in (7, 8, 2**32 + 8, step):
            assert not _accept(storage, "bob", older, at=T0)
        assert _accept(storage, "bob", step + 1, at=T0)
        assert storage.get_factor("bob").last_step == step + 1

    def test_time_steps_up_to_the_signed_64_bit_limit_are_stored_exactly(
        self, storage: Storage
    ) -> None:
        largest = 2**63 - 1
        _enroll(storage, "bob", step=largest - 1)
        assert _accept(storage, "bob", largest, at=T0)
        assert storage.get_factor("bob").last_step == largest
        assert not _accept(storage, "bob", largest, at=T0)

    def test_times_come_back_equal_and_aware_utc(self, storage: Storage) -> None:
        policy = dataclasses.replace(
            _new_tenant(storage, "acme"), two_factor_required=True, activated_at=_at(1), version=1
        )
        switched = _audit(AuditKind.TWO_FACTOR_SWITCHED, at=_at(1), tenant_id="acme")
        assert storage.update_tenant_policy(policy, expected_version=0, audit=switched)
        pending = _pending("p1", created_at=_at(2), ttl=timedelta(minutes=7))
        _save_pending(storage, "bob", pending, at=_at(2))
        _charge(storage, "bob", at=_at(3), rules=_LENIENT)
        assert _activate(storage, "bob", step=10, at=_at(4), recovery=_codes("x"))
        _save_pending(storage, "bob", _pending("p2", created_at=_at(5)))
        _charge(storage, "bob", at=_at(6), rules=_LENIENT)
        factor = storage.get_factor("bob")
        stored_policy = storage.get_tenant("acme")
        assert stored_policy is not None
        assert factor.pending is not None
        times = {
            "policy.activated_at": (stored_policy.activated_at, _at(1)),
            "activated_at": (factor.activated_at, _at(4)),
            "pending.created_at": (factor.pending.created_at, _at(5)),
            "pending.expires_at": (factor.pending.expires_at, _at(5 + 600)),
            "last_failure_at": (factor.last_failure_at, _at(6)),
            "audit.at": (
                next(r.at for r in _audit_log(storage) if r.record_id == switched.record_id),
                _at(1),
            ),
        }
        for name, (got, want) in times.items():
            assert got == want, name
            assert got is not None
            assert got.utcoffset() == timedelta(0), name

    # -- concurrency ---------------------------------------------------------------------------

    def test_concurrent_create_tenant_with_one_id_creates_it_once(self, storage: Storage) -> None:
        def create(i: int) -> bool:
            try:
                storage.create_tenant(
                    TenantPolicy(tenant_id="acme", name=f"Acme {i}"),
                    _member("acme", f"owner-{i}", Role.OWNER),
                    _audit(AuditKind.TENANT_CREATED, tenant_id="acme", actor_id=f"owner-{i}"),
                )
            except TenantExists:
                return False
            return True

        created = _race(THREADS, create)
        assert created.count(True) == 1
        winner = created.index(True)
        assert storage.get_tenant("acme") == TenantPolicy(tenant_id="acme", name=f"Acme {winner}")
        assert storage.list_memberships("acme") == [_member("acme", f"owner-{winner}", Role.OWNER)]
        assert len(_audit_log(storage)) == 1

    def test_concurrent_update_tenant_policy_from_one_version_succeeds_once(
        self, storage: Storage
    ) -> None:
        policy = _new_tenant(storage, "acme")

        def update(i: int) -> bool:
            new = dataclasses.replace(policy, name=f"Acme {i}", version=policy.version + 1)
            return storage.update_tenant_policy(
                new, expected_version=policy.version, audit=_audit(AuditKind.TWO_FACTOR_SWITCHED)
            )

        updated = _race(THREADS, update)
        assert updated.count(True) == 1
        stored = storage.get_tenant("acme")
        assert stored is not None
        assert stored.name == f"Acme {updated.index(True)}"
        kinds = frozenset({AuditKind.TWO_FACTOR_SWITCHED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds))) == 1

    def test_concurrent_acceptance_of_one_time_step_accepts_it_once(self, storage: Storage) -> None:
        _enroll(storage, "bob", step=1000)

        def verify(_: int) -> bool:
            return _accept(storage, "bob", 1001, at=_at(30))

        accepted = _race(THREADS, verify)
        assert accepted.count(True) == 1
        assert storage.get_factor("bob").last_step == 1001
        kinds = frozenset({AuditKind.CODE_ACCEPTED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds))) == 1

    def test_concurrent_consume_of_one_recovery_code_succeeds_once(self, storage: Storage) -> None:
        _enroll(storage, "bob", recovery=_codes("a", "b", "c"))

        def use(_: int) -> int | None:
            return _consume(storage, "bob", "b", at=_at(30))

        left = _race(THREADS, use)
        assert [n for n in left if n is not None] == [2]
        assert storage.get_factor("bob").recovery_codes_left == 2
        kinds = frozenset({AuditKind.RECOVERY_CODE_USED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds))) == 1
        assert _consume(storage, "bob", "a") == 1
        assert _consume(storage, "bob", "c") == 0

    def test_concurrent_charge_attempts_let_through_exactly_the_free_failures(
        self, storage: Storage
    ) -> None:
        rules = ThrottleRules()

        def charge(_: int) -> FactorRecord | None:
            return _charge(storage, "bob", at=_at(30), rules=rules)

        charges = _race(CHARGE_THREADS, charge)
        allowed = sorted(c.failures for c in charges if c is not None)
        assert allowed == list(range(1, rules.free_failures + 1))
        assert storage.get_factor("bob").failures == rules.free_failures
        assert len(_audit_log(storage)) == rules.free_failures

    def test_concurrent_activation_of_one_pending_enrollment_activates_once(
        self, storage: Storage
    ) -> None:
        _save_pending(storage, "bob", _pending("p1", secret=b"the pending secret"))

        def confirm(i: int) -> int | None:
            return _activate(storage, "bob", step=1000, at=_at(30), recovery=_codes(f"code-{i}"))

        epochs = _race(THREADS, confirm)
        assert [e for e in epochs if e is not None] == [1]
        winner = next(i for i, e in enumerate(epochs) if e is not None)
        factor = storage.get_factor("bob")
        assert (factor.secret, factor.epoch, factor.pending) == (b"the pending secret", 1, None)
        kinds = frozenset({AuditKind.ENROLLMENT_CONFIRMED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds))) == 1
        loser = (winner + 1) % THREADS
        assert _consume(storage, "bob", f"code-{loser}") is None
        assert _consume(storage, "bob", f"code-{winner}") == 0

    def test_two_owners_removing_each_other_at_once_leave_exactly_one_owner(
        self, storage: Storage
    ) -> None:
        raced = _two_owners_act_on_each_other(
            storage, lambda me, other: _remove(storage, other, actor=me)
        )
        kinds = frozenset({AuditKind.MEMBER_REMOVED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds, limit=1000))) == raced

    def test_two_owners_demoting_each_other_at_once_leave_exactly_one_owner(
        self, storage: Storage
    ) -> None:
        raced = _two_owners_act_on_each_other(
            storage, lambda me, other: _set_role(storage, other, Role.ADMIN, actor=me)
        )
        kinds = frozenset({AuditKind.ROLE_CHANGED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds, limit=1000))) == raced

    def test_an_owner_removing_another_who_demotes_them_at_once_leaves_exactly_one_owner(
        self, storage: Storage
    ) -> None:
        def act(me: Membership, other: Membership) -> None:
            if me.user_id == "ann":
                _remove(storage, other, actor=me)
            else:
                _set_role(storage, other, Role.MEMBER, actor=me)

        raced = _two_owners_act_on_each_other(storage, act)
        kinds = frozenset({AuditKind.MEMBER_REMOVED, AuditKind.ROLE_CHANGED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds, limit=1000))) == raced

    def test_every_owner_stepping_down_at_once_leaves_exactly_one_owner(
        self, storage: Storage
    ) -> None:
        _new_tenant(storage, "acme", owner_id="owner-00")
        owners = [_member("acme", "owner-00", Role.OWNER)]
        owners += [_join(storage, "acme", f"owner-{i:02d}", Role.OWNER) for i in range(1, THREADS)]

        def step_down(i: int) -> str:
            return _outcome(lambda: _set_role(storage, owners[i], Role.ADMIN, actor=owners[i]))

        outcomes = _race(THREADS, step_down)
        assert outcomes.count("ok") == THREADS - 1
        assert outcomes.count("LastOwner") == 1
        last = owners[outcomes.index("LastOwner")]
        assert _owner_ids(storage, "acme") == [last.user_id]
        assert len(storage.list_memberships("acme", role=Role.ADMIN)) == THREADS - 1
        kinds = frozenset({AuditKind.ROLE_CHANGED})
        assert len(storage.audit_records(AuditQuery(kinds=kinds, limit=1000))) == THREADS - 1

    def test_every_owner_leaving_at_once_leaves_exactly_one_owner(self, storage: Storage) -> None:
        _new_tenant(storage, "acme", owner_id="owner-00")
        owners = [_member("acme", "owner-00", Role.OWNER)]
        owners += [_join(storage, "acme", f"owner-{i:02d}", Role.OWNER) for i in range(1, THREADS)]
        _join(storage, "acme", "bob")

        def leave(i: int) -> str:
            return _outcome(lambda: _remove(storage, owners[i], actor=owners[i]))

        outcomes = _race(THREADS, leave)
        assert outcomes.count("ok") == THREADS - 1
        assert outcomes.count("LastOwner") == 1
        last = owners[outcomes.index("LastOwner")]
        assert storage.list_memberships("acme") == sorted(
            [last, _member("acme", "bob")], key=lambda m: m.user_id
        )

    # -- the outbox: notifications are stored with the change they report ----------------------

    def test_notifications_are_stored_with_each_change_that_carries_them(
        self, storage: Storage
    ) -> None:
        policy = _new_tenant(storage, "acme")
        assert storage.update_tenant_policy(
            dataclasses.replace(policy, two_factor_required=True, version=1),
            expected_version=0,
            audit=_audit(),
            notifications=[_note("toggle-1", user_id="olga"), _note("toggle-2", user_id="oscar")],
        )
        olga = _member("acme", "olga", Role.OWNER)
        storage.add_membership(
            _member("acme", "bob"), _audit(), actor=olga, notifications=[_note("added")]
        )
        storage.change_role(
            _member("acme", "bob"),
            Role.ADMIN,
            actor=olga,
            audit=_audit(),
            notifications=[_note("role"), _note("role-owner", user_id="olga", member_id="bob")],
        )
        storage.remove_membership(
            _member("acme", "bob", Role.ADMIN),
            actor=olga,
            audit=_audit(),
            notifications=[_note("removed")],
        )
        _save_pending(storage, "bob", _pending("p1"))
        assert _activate(
            storage, "bob", step=5, recovery=_codes("a", "b"), notifications=[_note("enabled")]
        )
        used = _note("used", kind=NotificationKind.RECOVERY_CODE_USED)
        assert _consume(storage, "bob", "a", notifications=[used])
        before = storage.get_factor("bob")
        fresh = _codes("x")
        replaced = attempts.codes_replaced(before, fresh)
        regenerated = [_note("regenerated")]
        assert _commit(storage, before, replaced, recovery=fresh, notifications=regenerated)
        storage.append_audit(_audit(), notifications=[_note("locked")])
        _fail(storage, "bob", 1)
        assert storage.unlock_factor("bob", audit=_audit(), notifications=[_note("unlocked")])
        assert storage.reset_factor("bob", floor=T0, audit=_audit(), notifications=[_note("reset")])
        assert _outbox_ids(storage) == [
            "toggle-1",
            "toggle-2",
            "added",
            "role",
            "role-owner",
            "removed",
            "enabled",
            "used",
            "regenerated",
            "locked",
            "unlocked",
            "reset",
        ]
        items = storage.outbox_items(limit=1000)
        assert all(item.state is OutboxState.PENDING and item.attempts == 0 for item in items)
        assert items[0].notification == _note("toggle-1", user_id="olga")
        assert items[4].notification == _note("role-owner", user_id="olga", member_id="bob")

    def test_a_refused_change_stores_none_of_its_notifications(self, storage: Storage) -> None:
        policy = _new_tenant(storage, "acme")
        assert not storage.update_tenant_policy(
            dataclasses.replace(policy, version=1),
            expected_version=7,
            audit=_audit(),
            notifications=[_note("stale-toggle")],
        )
        olga = _member("acme", "olga", Role.OWNER)
        refusals: list[tuple[type[Exception], Callable[[Sequence[Notification]], None]]] = [
            (
                AlreadyMember,
                lambda notes: storage.add_membership(olga, _audit(), notifications=notes),
            ),
            (
                UnknownTenant,
                lambda notes: storage.add_membership(
                    _member("ghost", "bob"), _audit(), notifications=notes
                ),
            ),
            (
                ConcurrentChange,
                lambda notes: storage.add_membership(
                    _member("acme", "bob"),
                    _audit(),
                    actor=_member("acme", "olga", Role.ADMIN),
                    notifications=notes,
                ),
            ),
            (
                NotAMember,
                lambda notes: storage.remove_membership(
                    _member("acme", "bob"), actor=olga, audit=_audit(), notifications=notes
                ),
            ),
            (
                LastOwner,
                lambda notes: storage.remove_membership(
                    olga, actor=olga, audit=_audit(), notifications=notes
                ),
            ),
            (
                LastOwner,
                lambda notes: storage.change_role(
                    olga, Role.ADMIN, actor=None, audit=_audit(), notifications=notes
                ),
            ),
            (
                ConcurrentChange,
                lambda notes: storage.change_role(
                    _member("acme", "olga", Role.ADMIN),
                    Role.OWNER,
                    actor=None,
                    audit=_audit(),
                    notifications=notes,
                ),
            ),
        ]
        for i, (refusal, change) in enumerate(refusals):
            with pytest.raises(refusal):
                change([_note(f"never-{i}")])
        _save_pending(storage, "carl", _pending("p1"))
        seen = storage.get_factor("carl")
        moved_on = dataclasses.replace(seen, revision=seen.revision - 1)
        never = [_note("never-committed")]
        assert not _commit(storage, moved_on, seen, audit=[_audit()], notifications=never)
        assert (
            storage.reset_factor(
                "bob", floor=T0, audit=_audit(), notifications=[_note("never-reset")]
            )
            is None
        )
        assert not storage.unlock_factor(
            "bob", audit=_audit(), notifications=[_note("never-unlocked")]
        )
        # With a failure counted both would change something, but not from a stale view.
        _fail(storage, "bob", 1)
        stale = [Standing(policy=policy, role=Role.MEMBER)]
        with pytest.raises(ConcurrentChange):
            storage.reset_factor(
                "bob",
                floor=T0,
                audit=_audit(),
                notifications=[_note("never-reset-stale")],
                expected=stale,
            )
        with pytest.raises(ConcurrentChange):
            storage.unlock_factor(
                "bob", audit=_audit(), notifications=[_note("never-unlocked-stale")], expected=stale
            )
        assert _outbox_ids(storage) == []

    def test_claiming_takes_due_unheld_notifications_oldest_first_and_counts_the_attempt(
        self, storage: Storage
    ) -> None:
        storage.append_audit(
            _audit(),
            notifications=[_note("n1"), _note("n2"), _note("later", at=_at(60)), _note("n3")],
        )
        first = storage.claim_notifications(now=T0, claimant="d1", lease=LEASE, limit=2)
        assert [i.notification.notification_id for i in first] == ["n1", "n2"]
        assert all(i.attempts == 1 and i.state is OutboxState.PENDING for i in first)
        # Held ones and ones not yet due are not handed out again.
        second = storage.claim_notifications(now=T0, claimant="d2", lease=LEASE, limit=10)
        assert [i.notification.notification_id for i in second] == ["n3"]
        assert storage.claim_notifications(now=T0, claimant="d3", lease=LEASE, limit=10) == []
        # Only the listed ids, when given (n1 is still held: its lease runs for two minutes).
        assert (
            storage.claim_notifications(
                now=_at(60), claimant="d4", lease=LEASE, limit=10, ids=["n1", "nope"]
            )
            == []
        )
        due = storage.claim_notifications(
            now=_at(60), claimant="d4", lease=LEASE, limit=10, ids=["later"]
        )
        assert [i.notification.notification_id for i in due] == ["later"]
        assert (
            storage.claim_notifications(now=T0, claimant="d5", lease=LEASE, limit=10, ids=[]) == []
        )

    def test_a_claim_whose_lease_ran_out_goes_to_another_claimant(self, storage: Storage) -> None:
        storage.append_audit(_audit(), notifications=[_note("n1")])
        (held,) = storage.claim_notifications(now=T0, claimant="slow", lease=LEASE, limit=5)
        assert held.attempts == 1
        later = T0 + LEASE
        (taken,) = storage.claim_notifications(now=later, claimant="fast", lease=LEASE, limit=5)
        assert taken.attempts == 2
        # The first claimant's outcome no longer counts; the second one's does.
        assert not storage.finish_notification(
            "n1", claimant="slow", state=OutboxState.DELIVERED, now=later
        )
        assert storage.finish_notification(
            "n1", claimant="fast", state=OutboxState.DELIVERED, now=later
        )
        (item,) = storage.outbox_items()
        assert item.state is OutboxState.DELIVERED
        assert item.delivered_at == later

    def test_finishing_records_delivered_retry_or_abandoned(self, storage: Storage) -> None:
        storage.append_audit(_audit(), notifications=[_note("ok"), _note("retry"), _note("dead")])
        storage.claim_notifications(now=T0, claimant="d", lease=LEASE, limit=5)
        assert storage.finish_notification(
            "ok", claimant="d", state=OutboxState.DELIVERED, now=_at(1)
        )
        assert storage.finish_notification(
            "retry",
            claimant="d",
            state=OutboxState.PENDING,
            now=_at(1),
            next_attempt_at=_at(31),
            error="ConnectionRefusedError: down",
        )
        assert storage.finish_notification(
            "dead", claimant="d", state=OutboxState.ABANDONED, now=_at(1), error="gave up"
        )
        assert not storage.finish_notification(
            "ok", claimant="d", state=OutboxState.DELIVERED, now=_at(2)
        )  # finished already
        assert not storage.finish_notification(
            "missing", claimant="d", state=OutboxState.DELIVERED, now=_at(2)
        )
        assert _outbox_ids(storage, OutboxState.DELIVERED) == ["ok"]
        assert _outbox_ids(storage, OutboxState.ABANDONED) == ["dead"]
        (retry,) = storage.outbox_items(state=OutboxState.PENDING)
        assert (retry.attempts, retry.next_attempt_at, retry.last_error) == (
            1,
            _at(31),
            "ConnectionRefusedError: down",
        )
        # Released, and due again only at its retry time.
        assert storage.claim_notifications(now=_at(30), claimant="e", lease=LEASE, limit=5) == []
        (again,) = storage.claim_notifications(now=_at(31), claimant="e", lease=LEASE, limit=5)
        assert (again.notification.notification_id, again.attempts) == ("retry", 2)

    def test_concurrent_claimants_never_share_a_notification(self, storage: Storage) -> None:
        storage.append_audit(
            _audit(), notifications=[_note(f"n{i:02d}") for i in range(THREADS * 2)]
        )
        claims = _race(
            THREADS,
            lambda i: storage.claim_notifications(now=T0, claimant=f"d{i}", lease=LEASE, limit=3),
        )
        claimed = [item.notification.notification_id for batch in claims for item in batch]
        assert claimed, "no claimant got anything"
        assert len(claimed) == len(set(claimed)), "two claimants got the same notification"
        # Claimants may skip rows another one holds; what is left goes to the next claim.
        rest = storage.claim_notifications(now=T0, claimant="last", lease=LEASE, limit=1000)
        remaining = [item.notification.notification_id for item in rest]
        assert sorted(claimed + remaining) == [f"n{i:02d}" for i in range(THREADS * 2)]

    # -- key rotation: paging through ciphertexts and replacing them ---------------------------

    def test_sealed_secrets_pages_through_users_with_a_secret_in_user_order(
        self, storage: Storage
    ) -> None:
        for user in ("carol", "ann", "dave"):
            _enroll(storage, user, secret=f"active-{user}".encode())
        _save_pending(storage, "bob", _pending("p-bob", secret=b"pending-bob"))
        _save_pending(storage, "ann", _pending("p-ann", secret=b"pending-ann"))
        _fail(storage, "eve", 1)  # a factor row with no secret at all
        first = storage.sealed_secrets(after_user_id=None, limit=2)
        assert first == [
            SealedSecrets(
                user_id="ann",
                secret=b"active-ann",
                pending_id="p-ann",
                pending_secret=b"pending-ann",
            ),
            SealedSecrets(user_id="bob", pending_id="p-bob", pending_secret=b"pending-bob"),
        ]
        rest = storage.sealed_secrets(after_user_id="bob", limit=10)
        assert [s.user_id for s in rest] == ["carol", "dave"]
        assert storage.sealed_secrets(after_user_id="dave", limit=10) == []

    def test_rewrap_replaces_ciphertexts_only_if_they_are_unchanged(self, storage: Storage) -> None:
        epoch = _enroll(storage, "bob", secret=b"old-active")
        _save_pending(storage, "bob", _pending("p1", secret=b"old-pending"))
        (old,) = storage.sealed_secrets(after_user_id=None, limit=10)
        new = dataclasses.replace(old, secret=b"new-active", pending_secret=b"new-pending")
        before = storage.get_factor("bob")
        assert storage.rewrap_secrets(old, new)
        after = storage.get_factor("bob")
        assert after.secret == b"new-active"
        assert after.pending is not None
        assert after.pending.secret == b"new-pending"
        assert after.pending.pending_id == "p1"
        # Nothing else changed, but the revision (a decision made before is not written).
        assert after.revision == before.revision + 1
        unchanged = dataclasses.replace(
            after, secret=before.secret, pending=before.pending, revision=before.revision
        )
        assert unchanged == before
        assert after.epoch == epoch
        # A second rewrap from the stale view changes nothing.
        assert not storage.rewrap_secrets(old, dataclasses.replace(old, secret=b"x"))
        assert storage.get_factor("bob").secret == b"new-active"
        # Neither does one whose pending enrollment was replaced meanwhile.
        _save_pending(storage, "bob", _pending("p2", secret=b"other"))
        (current,) = storage.sealed_secrets(after_user_id=None, limit=10)
        assert not storage.rewrap_secrets(
            dataclasses.replace(current, pending_id="p1"),
            dataclasses.replace(current, pending_id="p1", secret=b"y"),
        )
        assert storage.get_factor("bob").secret == b"new-active"

    def test_list_tenants_pages_through_tenants_in_id_order(self, storage: Storage) -> None:
        for tenant in ("globex", "acme", "initech", "Acme"):
            _new_tenant(storage, tenant)
        first = storage.list_tenants(limit=2)
        assert [p.tenant_id for p in first] == ["Acme", "acme"]
        rest = storage.list_tenants(after_tenant_id="acme", limit=10)
        assert [p.tenant_id for p in rest] == ["globex", "initech"]
        assert storage.list_tenants(after_tenant_id="initech") == []
        assert first[1] == storage.get_tenant("acme")
