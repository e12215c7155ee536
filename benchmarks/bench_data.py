"""Bench data: deterministic users and secrets, loaded in bulk through each backend's own tables.

Every user's TOTP secret is derived from their id, so any process can compute a user's code
without reading the database, and the rows are written with ``executemany`` in one transaction
per table, never one by one through the service (a million ``add_member`` calls would take an
hour and measure nothing of interest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tenant2fa import Config, Keyring, TwoFactor, attempts, totp
from tenant2fa.audit import AuditKind, new_audit_record
from tenant2fa.clock import UTC
from tenant2fa.enrollment import PendingEnrollment
from tenant2fa.policy import Membership, Role, TenantPolicy
from tenant2fa.recovery import RecoveryCodeSet
from tenant2fa.session import LoginSession, sign
from tenant2fa.storage import FactorCommit, Storage
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock

PERIOD = 30
SECRET_PURPOSE = "totp-secret"  # noqa: S105 - the keyring's label for TOTP secrets, not a secret
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
"""The fake "now" of batch 0. Batch ``b`` runs at ``T0 + b`` time steps, mid-step, so that the
same users can verify again in every batch (each accepted step is newer than the last)."""
ACTIVATED = T0 - timedelta(days=30)
TENANT = "acme"
OWNER = "owner"
# The logins are made once at T0 and used in batches days later (each batch needs fresh time
# steps): they would have expired (max_login_age) long before. The check costs the same either way.
CONFIG = Config(issuer="Bench", max_login_age=None)
SECRET_BYTES = 20


def at_batch(batch: int, *, base: datetime = T0) -> datetime:
    """The middle of time step number ``batch`` after ``base``."""
    return base + timedelta(seconds=batch * PERIOD + PERIOD // 2)


def unix(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())


def step_of(when: datetime) -> int:
    return totp.time_step(when, PERIOD)


def us(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def user_ids(prefix: str, count: int, *, start: int = 0) -> list[str]:
    return [f"{prefix}{i:07d}" for i in range(start, start + count)]


def secret_for(user_id: str) -> bytes:
    """The user's TOTP secret, derived from the id (bench data only)."""
    return hashlib.sha256(b"tenant2fa-bench\x00" + user_id.encode()).digest()[:SECRET_BYTES]


def hotp(secret: bytes, counter: int) -> str:
    """RFC 4226 HOTP, 6 digits, HMAC-SHA1, on the standard library alone."""
    digest = hmac.digest(secret, counter.to_bytes(8, "big"), "sha1")
    offset = digest[-1] & 0x0F
    value = (int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF) % 1_000_000
    return f"{value:06d}"


def check_hotp_agrees_with_tenant2fa() -> None:
    """The raw baselines compute codes with :func:`hotp`; it must be the same TOTP as ours."""
    secret = secret_for("check")
    for step in (0, 1, 59_000_000, 2**33):
        if hotp(secret, step) != totp.code_at(secret, step):
            raise AssertionError("the benchmark's HOTP disagrees with tenant2fa.totp.code_at")


def code_for(user_id: str, when: datetime) -> str:
    return hotp(secret_for(user_id), step_of(when))


def repeats_previous(secret: bytes, step: int) -> bool:
    """True if the code of ``step`` has the same digits as the code of the step before.

    About one step in a million does. A user who verified in the step before has then already
    used these digits (when two steps share a code, the newest is recorded), so submitting them
    again is refused as a replay, by design: the benchmarks must not count that as a failure.
    """
    return hotp(secret, step) == hotp(secret, step - 1)


def new_key_text() -> str:
    """A fresh key in TENANT2FA_KEYS form, to hand to worker processes."""
    return Keyring.encode_key("bench", Keyring.new_key())


def login_for(keyring: Keyring, user_id: str, now: datetime) -> LoginSession:
    """A signed login of ``user_id`` whose password was checked at ``now`` (no second factor)."""
    return sign(
        LoginSession(
            session_id=secrets.token_urlsafe(16),
            user_id=user_id,
            authenticated_at=now,
            method="password",
            identity_verified_at=now,
            identity_method="password",
        ),
        keyring,
    )


def service(storage: Storage, keyring: Keyring, when: datetime = T0) -> TwoFactor:
    return TwoFactor(storage=storage, keyring=keyring, clock=FakeClock(when), config=CONFIG)


def clock_of(tf: TwoFactor) -> FakeClock:
    clock = tf.clock
    if not isinstance(clock, FakeClock):
        raise TypeError("bench services run on a FakeClock")
    return clock


# -- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantRow:
    tenant_id: str
    required: bool = True

    def values(self) -> tuple[object, ...]:
        # The columns of t2fa_tenants: tenant_id, name, two_factor_required, activated_at,
        # grace_period_us, version.
        activated = us(ACTIVATED) if self.required else None
        return (self.tenant_id, f"Tenant {self.tenant_id}", int(self.required), activated, None, 1)


def factor_values(keyring: Keyring, user_id: str) -> tuple[object, ...]:
    """An enrolled user's t2fa_factors row: user_id, secret, activated_at, last_step, epoch,
    revision."""
    blob = keyring.encrypt(secret_for(user_id), purpose=SECRET_PURPOSE, context=user_id)
    return (user_id, blob, us(ACTIVATED), -1, 1, 1)


def spread(tenant_count: int, users: list[str]) -> Iterator[tuple[str, str, str]]:
    """Memberships that put ``users`` in ``tenant_count`` tenants of equal size."""
    for i, user in enumerate(users):
        yield (f"t{i % tenant_count:05d}", user, Role.MEMBER.value)


# -- SQLite ------------------------------------------------------------------------------------


def sqlite_storage(path: str) -> SQLiteStorage:
    storage = SQLiteStorage(path)
    storage.schema_version()  # creates the schema now, not inside the first timed batch
    return storage


def load_sqlite(
    path: str,
    *,
    tenants: Iterable[TenantRow] = (),
    members: Iterable[tuple[str, str, str]] = (),
    factors: Iterable[tuple[object, ...]] = (),
) -> None:
    """Insert rows into SQLiteStorage's tables of the database at ``path`` (schema must exist)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t2fa_tenants (tenant_id, name, two_factor_required, activated_at, "
            "grace_period_us, version) VALUES (?, ?, ?, ?, ?, ?)",
            (t.values() for t in tenants),
        )
        conn.executemany(
            "INSERT INTO t2fa_memberships (tenant_id, user_id, role) VALUES (?, ?, ?)", members
        )
        conn.executemany(
            "INSERT INTO t2fa_factors (user_id, secret, activated_at, last_step, epoch, revision) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            factors,
        )
        # No ANALYZE: an application's database seldom has statistics, and the query planner
        # must choose well without them.
        conn.execute("COMMIT")
    finally:
        conn.close()


# -- the in-memory backend ---------------------------------------------------------------------


def load_storage(storage: Storage, keyring: Keyring, tenant: str, users: list[str]) -> None:
    """Enroll ``users`` in ``tenant`` through the Storage protocol (for backends without tables)."""
    policy = TenantPolicy(
        tenant_id=tenant,
        name=tenant,
        two_factor_required=True,
        activated_at=ACTIVATED,
        version=1,
    )

    def audit(kind: AuditKind, user: str) -> Any:
        return new_audit_record(kind, at=ACTIVATED, tenant_id=tenant, user_id=user)

    owner = Membership(tenant_id=tenant, user_id=OWNER, role=Role.OWNER)
    storage.create_tenant(policy, owner, audit(AuditKind.TENANT_CREATED, OWNER))
    for user in users:
        storage.add_membership(
            Membership(tenant_id=tenant, user_id=user, role=Role.MEMBER),
            audit(AuditKind.MEMBER_ADDED, user),
        )
        blob = keyring.encrypt(secret_for(user), purpose=SECRET_PURPOSE, context=user)
        pending = PendingEnrollment(
            pending_id="p", secret=blob, created_at=ACTIVATED, expires_at=T0 + timedelta(days=1)
        )
        empty = storage.get_factor(user)
        recovery = RecoveryCodeSet(salt=b"\0" * 16, digests=())
        active = attempts.activating(
            attempts.pending_saved(empty, pending), step=0, now=ACTIVATED, recovery=recovery
        )
        if active is None:
            raise RuntimeError("the benchmark's enrollment was refused")
        # One write for both steps (the service makes two): the same record in the end.
        active = dataclasses.replace(active, revision=empty.revision + 1)
        if not storage.commit_factor(
            FactorCommit(
                factor=active,
                expected_revision=empty.revision,
                at=ACTIVATED,
                recovery=recovery,
                audit=(audit(AuditKind.ENROLLMENT_CONFIRMED, user),),
            )
        ):
            raise RuntimeError("the benchmark's enrollment was not written")


def fill_audit(path: str, count: int) -> None:
    """Append ``count`` audit records to SQLiteStorage's log at ``path``, as years of logins of
    many users in many tenants leave it (random record ids, times in order)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t2fa_audit (record_id, at, kind, tenant_id, user_id, actor_id, detail) "
            "VALUES (?, ?, 'code_accepted', ?, ?, NULL, '{}')",
            (
                (
                    secrets.token_hex(16),
                    us(T0) - count + i,
                    f"t{i % 997:05d}",
                    f"u{i % 100_003:06d}",
                )
                for i in range(count)
            ),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


# -- PostgreSQL --------------------------------------------------------------------------------

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "TENANT2FA_BENCH_POSTGRES_URL"


class Postgres:
    """A private schema ``t2fa_bench_<pid>`` on the bench server, dropped by :meth:`close`.

    Raises :class:`OSError` subclasses or SQLAlchemy's ``OperationalError`` if the server does
    not answer; the caller turns that into skipped rows.
    """

    def __init__(self) -> None:
        import sqlalchemy as sa  # noqa: PLC0415 - the postgres rows are optional

        from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage  # noqa: PLC0415

        self.base = sa.make_url(os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL)
        self.schema = f"t2fa_bench_{os.getpid()}"
        admin = sa.create_engine(self.base, connect_args={"connect_timeout": 5})
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {self.schema}")
                self.server_version = str(conn.exec_driver_sql("SHOW server_version").scalar())
        finally:
            admin.dispose()
        self.url = self.base.update_query_dict({"options": f"-csearch_path={self.schema}"})
        self.engine = sa.create_engine(self.url)
        SQLAlchemyStorage(self.engine).create_schema()

    @property
    def url_text(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def storage(self) -> Storage:
        """A SQLAlchemyStorage made from the URL, as an application makes one."""
        from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage  # noqa: PLC0415

        return SQLAlchemyStorage(self.url_text)

    def connect(self) -> Any:
        """A plain psycopg connection in the bench schema (not autocommit)."""
        import psycopg  # noqa: PLC0415

        return psycopg.connect(
            host=self.base.host,
            port=self.base.port or 5432,
            user=self.base.username,
            password=self.base.password,
            dbname=self.base.database,
            options=f"-csearch_path={self.schema}",
        )

    def load(
        self,
        *,
        tenants: Iterable[TenantRow] = (),
        members: Iterable[tuple[str, str, str]] = (),
        factors: Iterable[tuple[object, ...]] = (),
    ) -> None:
        from tenant2fa.storage import sqlalchemy as tables  # noqa: PLC0415

        tenant_rows = [
            dict(
                zip(
                    (
                        "tenant_id",
                        "name",
                        "two_factor_required",
                        "activated_at",
                        "grace_period_us",
                        "version",
                    ),
                    t.values(),
                    strict=True,
                )
            )
            for t in tenants
        ]
        for row in tenant_rows:
            row["two_factor_required"] = bool(row["two_factor_required"])
        member_rows = [{"tenant_id": t, "user_id": u, "role": r} for t, u, r in members]
        factor_rows = [
            dict(
                zip(
                    ("user_id", "secret", "activated_at", "last_step", "epoch", "revision"),
                    values,
                    strict=True,
                )
            )
            for values in factors
        ]
        with self.engine.begin() as conn:
            for table, rows in (
                (tables.tenants, tenant_rows),
                (tables.memberships, member_rows),
                (tables.factors, factor_rows),
            ):
                if rows:
                    conn.execute(table.insert(), rows)
            conn.exec_driver_sql("ANALYZE")

    def close(self) -> None:
        import sqlalchemy as sa  # noqa: PLC0415

        self.engine.dispose()
        admin = sa.create_engine(self.base)
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            admin.dispose()
