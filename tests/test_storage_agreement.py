"""Every backend agrees with the in-memory reference on random sequences of storage operations.

A hypothesis state machine applies the same operation to every backend at once (in-memory,
SQLite file, SQLAlchemy on SQLite, PostgreSQL and MariaDB) and checks that each one answers the
same, raises the same, and then reads back the same state.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from db_backends import SERVER_KINDS, server_engine, sqlalchemy_server_storage
from tenant2fa import attempts
from tenant2fa.audit import AuditKind, AuditQuery, new_audit_record
from tenant2fa.clock import UTC
from tenant2fa.enrollment import PendingEnrollment
from tenant2fa.errors import Tenant2FAError
from tenant2fa.policy import Membership, Role, TenantPolicy
from tenant2fa.recovery import RecoveryCodeSet
from tenant2fa.storage import FactorCommit, FactorRecord
from tenant2fa.storage.memory import MemoryStorage
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.throttle import ThrottleRules

TENANTS = st.sampled_from(["t1", "t2", "T1"])
USERS = st.sampled_from(["ann", "bob", "Bob"])
PENDING_IDS = st.sampled_from(["p1", "p2", "p3"])
DIGESTS = st.sampled_from([hashlib.sha256(bytes([i])).digest() for i in range(4)])
MOVED = st.sampled_from([0, 0, 0, -1, 1])
"""How far the revision a decision was made on lies from the stored one (0: still current)."""
RULES = ThrottleRules(free_failures=2, base_delay=timedelta(seconds=10), max_failures=6)
START = datetime(2026, 3, 1, tzinfo=UTC)


def _audit(now: datetime) -> Any:
    return new_audit_record(AuditKind.CODE_ACCEPTED, at=now, user_id="x")


def _outcome(call: Any) -> object:
    try:
        return ("ok", call())
    except Tenant2FAError as exc:
        return ("raised", type(exc))


class StorageAgreement(RuleBasedStateMachine):
    """Runs each rule on all backends and compares."""

    tmp: Path = Path()
    server_kinds: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.counter = 0
        self.backends: dict[str, Any] = {"memory": MemoryStorage()}

    @initialize()
    def open_backends(self) -> None:
        self.counter += 1
        run = f"{id(self)}-{self.counter}"
        self.backends["sqlite"] = SQLiteStorage(self.tmp / f"agree-{run}.sqlite3")
        engine = sa.create_engine(f"sqlite:///{self.tmp / f'agree-sa-{run}.sqlite3'}")
        sa_sqlite = SQLAlchemyStorage(engine)
        sa_sqlite.create_schema()
        self.backends["sqlalchemy-sqlite"] = sa_sqlite
        for kind in self.server_kinds:
            self.backends[kind] = sqlalchemy_server_storage(kind)

    def teardown(self) -> None:
        for name, backend in self.backends.items():
            if isinstance(backend, SQLiteStorage):
                backend.close()
            elif name == "sqlalchemy-sqlite":
                backend.engine.dispose()

    def _all(self, method: str, *args: Any, **kwargs: Any) -> object:
        results = {
            name: _outcome(lambda b=backend: getattr(b, method)(*args, **kwargs))
            for name, backend in self.backends.items()
        }
        reference = results["memory"]
        for name, result in results.items():
            assert result == reference, f"{name} disagrees on {method}: {result} != {reference}"
        return reference

    # -- rules ---------------------------------------------------------------------------------

    @rule(seconds=st.integers(min_value=1, max_value=400))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(tenant=TENANTS, owner=USERS)
    def create_tenant(self, tenant: str, owner: str) -> None:
        self._all(
            "create_tenant",
            TenantPolicy(tenant_id=tenant, name=tenant.upper()),
            Membership(tenant_id=tenant, user_id=owner, role=Role.OWNER),
            _audit(self.now),
        )

    @rule(tenant=TENANTS, enabled=st.booleans(), stale=st.booleans())
    def toggle(self, tenant: str, enabled: bool, stale: bool) -> None:
        current = self.backends["memory"].get_tenant(tenant)
        if current is None:
            return
        new = TenantPolicy(
            tenant_id=tenant,
            name=current.name,
            two_factor_required=enabled,
            activated_at=self.now if enabled else current.activated_at,
            grace_period=timedelta(days=1) if enabled else None,
            version=current.version + 1,
        )
        expected = current.version - 1 if stale else current.version
        self._all("update_tenant_policy", new, expected_version=expected, audit=_audit(self.now))

    @rule(tenant=TENANTS, user=USERS, role=st.sampled_from(list(Role)))
    def add_membership(self, tenant: str, user: str, role: Role) -> None:
        self._all(
            "add_membership",
            Membership(tenant_id=tenant, user_id=user, role=role),
            _audit(self.now),
        )

    # The factor's writes: decided on the reference's snapshot by the pure core, as the service
    # decides them, and committed to every backend; sometimes from a moved-on revision.

    def _commit(
        self, before: FactorRecord, after: FactorRecord | None, moved: int, **extra: Any
    ) -> None:
        if after is None:
            return
        seen = before.revision + moved
        self._all(
            "commit_factor",
            FactorCommit(
                factor=dataclasses.replace(after, revision=seen + 1),
                expected_revision=seen,
                at=self.now,
                audit=(_audit(self.now),),
                **extra,
            ),
        )

    def _factor(self, user: str) -> FactorRecord:
        factor: FactorRecord = self.backends["memory"].get_factor(user)
        return factor

    @rule(
        user=USERS,
        pending_id=PENDING_IDS,
        ttl=st.integers(min_value=1, max_value=900),
        moved=MOVED,
    )
    def save_pending(self, user: str, pending_id: str, ttl: int, moved: int) -> None:
        pending = PendingEnrollment(
            pending_id=pending_id,
            secret=f"cipher-{pending_id}-{self.now.timestamp()}".encode(),
            created_at=self.now,
            expires_at=self.now + timedelta(seconds=ttl),
        )
        factor = self._factor(user)
        self._commit(factor, attempts.pending_saved(factor, pending), moved)

    @rule(
        user=USERS,
        step=st.integers(min_value=-1, max_value=2**40),
        digests=st.lists(DIGESTS, min_size=1, max_size=4, unique=True),
        moved=MOVED,
    )
    def activate(self, user: str, step: int, digests: list[bytes], moved: int) -> None:
        recovery = RecoveryCodeSet(salt=b"s" * 16, digests=tuple(digests))
        factor = self._factor(user)
        active = attempts.activating(factor, step=step, now=self.now, recovery=recovery)
        self._commit(factor, active, moved, recovery=recovery)

    @rule(user=USERS, moved=MOVED)
    def charge(self, user: str, moved: int) -> None:
        factor = self._factor(user)
        if attempts.refusal(factor, now=self.now, rules=RULES) is None:
            self._commit(factor, attempts.charged(factor, now=self.now), moved)

    @rule(user=USERS, step=st.integers(min_value=-1, max_value=2**40), moved=MOVED)
    def accept(self, user: str, step: int, moved: int) -> None:
        factor = self._factor(user)
        self._commit(factor, attempts.accepting_code(factor, step=step), moved)

    @rule(user=USERS, digest=DIGESTS, moved=MOVED)
    def consume(self, user: str, digest: bytes, moved: int) -> None:
        state = self.backends["memory"].load_login(user, recovery_codes=True)
        if digest in state.recovery_digests:
            left = len(state.recovery_digests) - 1
            used = attempts.recovering(state.factor, codes_left=left)
            self._commit(state.factor, used, moved, use_recovery_code=digest)

    @rule(user=USERS, digests=st.lists(DIGESTS, min_size=1, max_size=4, unique=True))
    def replace_codes(self, user: str, digests: list[bytes]) -> None:
        factor = self._factor(user)
        if factor.secret is not None:
            recovery = RecoveryCodeSet(salt=b"t" * 16, digests=tuple(digests))
            self._commit(factor, attempts.codes_replaced(factor, recovery), 0, recovery=recovery)

    @rule(user=USERS)
    def reset(self, user: str) -> None:
        self._all("reset_factor", user, floor=self.now, audit=_audit(self.now))

    # -- every backend reads back the same state -------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        if len(self.backends) == 1:
            return
        for user in ("ann", "bob", "Bob"):
            self._all("get_factor", user)
            self._all("tenants_of_user", user)
            self._all("load_login", user, recovery_codes=True)
        for tenant in ("t1", "t2", "T1"):
            self._all("list_memberships", tenant)
        self._all("audit_records", AuditQuery(limit=10_000))


@pytest.mark.parametrize("servers", ["embedded", "servers"])
def test_every_backend_agrees_with_the_in_memory_reference(servers: str, tmp_path: Path) -> None:
    kinds: tuple[str, ...] = ()
    if servers == "servers":
        for kind in SERVER_KINDS:
            server_engine(kind)  # skips (or fails in CI) when a server is missing
        kinds = SERVER_KINDS

    class Machine(StorageAgreement):
        tmp = tmp_path
        server_kinds = kinds

    Machine.TestCase.settings = settings(
        max_examples=25 if servers == "servers" else 40,
        stateful_step_count=30,
        deadline=None,
    )
    Machine.TestCase().runTest()
