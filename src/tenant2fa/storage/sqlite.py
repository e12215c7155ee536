"""The SQLite backend (standard library ``sqlite3``): the embedded default.

Safe for several threads and several processes on one database file:

- WAL journal mode, so readers never block the writer, and ``busy_timeout`` so a writer waits for
  another instead of failing at once;
- every read-then-write runs in ``BEGIN IMMEDIATE`` (the write lock is taken before the read, so
  no other process can change the row in between);
- ``SQLITE_BUSY`` that outlasts the timeout is retried a bounded number of times, then raised as
  :class:`~tenant2fa.errors.StorageError` (verification then fails closed);
- one connection per thread; the schema carries a version and upgrades itself on first use;
- a new database file is created with mode 0600 (its ``-wal`` and ``-shm`` files follow), so
  that other local users cannot read it whatever the umask.

Times are stored as integer microseconds since the Unix epoch (UTC), counters and time steps as
SQLite INTEGER (64-bit).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from tenant2fa.audit import AuditKind, AuditQuery, AuditRecord
from tenant2fa.clock import later
from tenant2fa.errors import (
    AlreadyMember,
    ConcurrentChange,
    StorageError,
    TenantExists,
    UnknownTenant,
)
from tenant2fa.outbox import (
    OutboxItem,
    OutboxState,
    decode_notification,
    encode_notification,
)
from tenant2fa.policy import Membership, Role, Standing, TenantPolicy
from tenant2fa.storage.base import (
    FactorCommit,
    FactorRecord,
    LoginState,
    SealedSecrets,
    check_actor_holds,
    check_member_change,
)
from tenant2fa.storage.files import create_private_file
from tenant2fa.storage.rows import (
    FACTOR_FIELDS,
    factor_from_values,
    factor_values,
    from_us,
    required_from_us,
    to_us,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from tenant2fa.notify import Notification
    from tenant2fa.recovery import RecoveryCodeSet

__all__ = ["SCHEMA_VERSION", "SQLiteStorage"]

_T = TypeVar("_T")

SCHEMA_VERSION = 5

# Each entry upgrades the schema from version i to i + 1. Never edit a released entry: append.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE t2fa_tenants (
            tenant_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            two_factor_required INTEGER NOT NULL DEFAULT 0,
            activated_at INTEGER,
            grace_period_us INTEGER,
            version INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE t2fa_memberships (
            tenant_id TEXT NOT NULL REFERENCES t2fa_tenants (tenant_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
        "CREATE INDEX t2fa_memberships_by_user ON t2fa_memberships (user_id, tenant_id)",
        """CREATE TABLE t2fa_factors (
            user_id TEXT PRIMARY KEY,
            secret BLOB,
            activated_at INTEGER,
            last_step INTEGER NOT NULL DEFAULT -1,
            pending_id TEXT,
            pending_secret BLOB,
            pending_created_at INTEGER,
            pending_expires_at INTEGER,
            epoch INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            last_failure_at INTEGER,
            recovery_salt BLOB
        )""",
        """CREATE TABLE t2fa_recovery_codes (
            user_id TEXT NOT NULL,
            digest BLOB NOT NULL,
            used_at INTEGER,
            PRIMARY KEY (user_id, digest)
        )""",
        """CREATE TABLE t2fa_audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            record_id TEXT NOT NULL UNIQUE,
            at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            tenant_id TEXT,
            user_id TEXT,
            actor_id TEXT,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX t2fa_audit_by_tenant ON t2fa_audit (tenant_id, at)",
        "CREATE INDEX t2fa_audit_by_user ON t2fa_audit (user_id, at)",
        "CREATE INDEX t2fa_audit_by_actor ON t2fa_audit (actor_id, at)",
        "CREATE INDEX t2fa_audit_by_time ON t2fa_audit (at)",
    ),
    # 2: the notification outbox, and owners found without reading every member.
    (
        """CREATE TABLE t2fa_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            notification_id TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER,
            delivered_at INTEGER,
            last_error TEXT,
            claimant TEXT,
            claimed_until INTEGER
        )""",
        "CREATE INDEX t2fa_outbox_due ON t2fa_outbox (state, next_attempt_at)",
        # user_id too: owners come back in id order without the planner preferring the primary
        # key's order and filtering every member of the tenant by role.
        "CREATE INDEX t2fa_memberships_by_role ON t2fa_memberships (tenant_id, role, user_id)",
    ),
    # 3: the identity floor a reset raises. The owners index of version 2 was widened before
    # release (user_id added); a file made in between has the narrow one: make it again.
    (
        "ALTER TABLE t2fa_factors ADD COLUMN identity_floor INTEGER",
        "DROP INDEX IF EXISTS t2fa_memberships_by_role",
        "CREATE INDEX t2fa_memberships_by_role ON t2fa_memberships (tenant_id, role, user_id)",
    ),
    # 4: a login is one read and one write. The factor row carries its revision (the
    # compare-and-set of every decided change) and its count of unused recovery codes (no
    # COUNT on the hot path).
    (
        "ALTER TABLE t2fa_factors ADD COLUMN revision INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE t2fa_factors ADD COLUMN recovery_left INTEGER NOT NULL DEFAULT 0",
        (
            "UPDATE t2fa_factors SET revision = 1, recovery_left = (SELECT COUNT(*) "
            "FROM t2fa_recovery_codes c "
            "WHERE c.user_id = t2fa_factors.user_id AND c.used_at IS NULL)"
        ),
    ),
    # 5: a lean audit log, since every login appends to it. The rows move to a table whose key
    # is the rowid without AUTOINCREMENT (its counter was one more write per record) and that
    # keeps the indexes audit_log's queries need, by tenant and by time (tests show their
    # plans). Record ids are no longer indexed: no query reads by them, and a random key made
    # every insert touch a random page of an index that grows with the log. Users and actors
    # are not indexed either (docs/storage.md). The owners index is made once more, for files
    # made while version 3 was edited in place.
    (
        """CREATE TABLE t2fa_audit_v5 (
            seq INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL,
            at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            tenant_id TEXT,
            user_id TEXT,
            actor_id TEXT,
            detail TEXT NOT NULL
        )""",
        (
            "INSERT INTO t2fa_audit_v5 (seq, record_id, at, kind, tenant_id, user_id, actor_id, "
            "detail) SELECT seq, record_id, at, kind, tenant_id, user_id, actor_id, detail "
            "FROM t2fa_audit ORDER BY seq"
        ),
        "DROP TABLE t2fa_audit",
        "ALTER TABLE t2fa_audit_v5 RENAME TO t2fa_audit",
        "DELETE FROM sqlite_sequence WHERE name = 't2fa_audit'",
        "CREATE INDEX t2fa_audit_by_tenant ON t2fa_audit (tenant_id, at)",
        "CREATE INDEX t2fa_audit_by_time ON t2fa_audit (at)",
        "DROP INDEX IF EXISTS t2fa_memberships_by_role",
        "CREATE INDEX t2fa_memberships_by_role ON t2fa_memberships (tenant_id, role, user_id)",
        # A process of a release before version 4 that still runs while a new one migrates (a
        # rolling restart of workers on one file) writes factor rows without moving their
        # revision; this moves it for them, so that a new process's compare-and-set sees the
        # change (a code such a process accepted is not accepted again). Our own writes always
        # move it, so for them the trigger's condition never holds.
        """CREATE TRIGGER t2fa_factors_revision AFTER UPDATE ON t2fa_factors
            FOR EACH ROW WHEN NEW.revision = OLD.revision
            BEGIN
                UPDATE t2fa_factors SET revision = OLD.revision + 1 WHERE user_id = NEW.user_id;
            END""",
    ),
)


class SQLiteStorage:
    """A :class:`~tenant2fa.storage.Storage` in one SQLite database file.

    ``path`` is a file path, or ``":memory:"`` for a private in-memory database (one
    connection shared by this object's threads, one operation at a time; gone when closed).
    ``busy_timeout`` is how long one statement waits for another writer; ``retries`` how many
    more times a whole operation is tried after that.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: timedelta = timedelta(seconds=5),
        retries: int = 5,
    ) -> None:
        self.path = str(path)
        self._busy_ms = int(busy_timeout / timedelta(milliseconds=1))
        self._retries = retries
        # Idle connections, reused by whichever thread needs one next (LIFO), so that threads
        # that come and go (a thread per request) do not each leave a connection behind.
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._max_idle = 8
        self._trace: Callable[[str], object] | None = None
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        # An in-memory database exists per connection, so every thread must use the same one.
        self._shared: sqlite3.Connection | None = None
        self._serial = threading.RLock() if self.path == ":memory:" else None

    def __repr__(self) -> str:
        return f"SQLiteStorage({self.path!r})"

    # -- connections and transactions -------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            if self.path != ":memory:":
                create_private_file(self.path)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open SQLite database: {exc}") from exc
        if self._trace is not None:
            conn.set_trace_callback(self._trace)
        if not self._schema_ready:
            self._ensure_schema(conn)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one operation: the shared one of an in-memory database (one
        operation at a time), else an idle pooled one or a new one, returned afterwards."""
        if self._serial is not None:
            with self._serial:
                if self._shared is None:
                    self._shared = self._open()
                yield self._shared
            return
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            with self._pool_lock:
                keep = len(self._idle) < self._max_idle
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """Call ``callback(sql)`` for every statement run from now on (debugging, tests)."""
        self._trace = callback
        with self._pool_lock:
            connections = [*self._idle, *([self._shared] if self._shared else [])]
        for conn in connections:
            conn.set_trace_callback(callback)

    def close(self) -> None:
        """Close this object's idle connections (and its in-memory database, which is then
        gone). The object stays usable: the next operation opens a new connection."""
        with self._pool_lock:
            idle, self._idle = self._idle, []
            shared, self._shared = self._shared, None
        for conn in idle:
            conn.close()
        if shared is not None:
            shared.close()

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            self._retrying(lambda: self._migrate(conn))
            self._schema_ready = True

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS t2fa_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = conn.execute(
                "SELECT value FROM t2fa_meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"database schema version {version} is newer than this tenant2fa "
                    f"({SCHEMA_VERSION}); upgrade tenant2fa"
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO t2fa_meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        """The schema version stored in the database."""
        row = self._read(
            lambda c: c.execute(
                "SELECT value FROM t2fa_meta WHERE key = 'schema_version'"
            ).fetchone()
        )
        return int(row[0]) if row else 0

    def _retrying(self, work: Callable[[], _T]) -> _T:
        for attempt in range(self._retries + 1):
            try:
                return work()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or attempt == self._retries:
                    raise StorageError(f"SQLite operation failed: {exc}") from exc
                # Jittered backoff so that retrying writers do not collide again in step.
                time.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))  # noqa: S311
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite operation failed: {exc}") from exc
            except (OverflowError, UnicodeError) as exc:
                # A value SQLite cannot take (an int past 64 bits, a lone surrogate); the
                # message may quote it, so only its type.
                raise StorageError(f"SQLite cannot store a value: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, mode: str) -> Iterator[sqlite3.Connection]:
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction, retried on SQLITE_BUSY."""

        def attempt() -> _T:
            with self._connection() as conn, self._transaction(conn, "IMMEDIATE"):
                return work(conn)

        return self._retrying(attempt)

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one read transaction (a consistent snapshot)."""

        def attempt() -> _T:
            with self._connection() as conn, self._transaction(conn, "DEFERRED"):
                return work(conn)

        return self._retrying(attempt)

    @staticmethod
    def _insert_audit(conn: sqlite3.Connection, record: AuditRecord) -> None:
        conn.execute(
            "INSERT INTO t2fa_audit (record_id, at, kind, tenant_id, user_id, actor_id, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.record_id,
                to_us(record.at),
                record.kind.value,
                record.tenant_id,
                record.user_id,
                record.actor_id,
                json.dumps(dict(record.detail), sort_keys=True),
            ),
        )

    def _record(
        self,
        conn: sqlite3.Connection,
        audit: AuditRecord,
        notifications: Sequence[Notification],
    ) -> None:
        self._insert_audit(conn, audit)
        self._queue(conn, notifications)

    @staticmethod
    def _queue(conn: sqlite3.Connection, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return  # most writes notify nobody: no statement to prepare for them
        conn.executemany(
            "INSERT OR IGNORE INTO t2fa_outbox "
            "(notification_id, created_at, payload, next_attempt_at) VALUES (?, ?, ?, ?)",
            [
                (n.notification_id, to_us(n.at), encode_notification(n), to_us(n.at))
                for n in notifications
            ],
        )

    # -- tenants and memberships ------------------------------------------------------------

    @staticmethod
    def _policy(row: tuple[Any, ...]) -> TenantPolicy:
        grace = None if row[4] is None else timedelta(microseconds=row[4])
        return TenantPolicy(
            tenant_id=row[0],
            name=row[1],
            two_factor_required=bool(row[2]),
            activated_at=from_us(row[3]),
            grace_period=grace,
            version=row[5],
        )

    _POLICY_COLUMNS = "tenant_id, name, two_factor_required, activated_at, grace_period_us, version"

    def create_tenant(self, policy: TenantPolicy, owner: Membership, audit: AuditRecord) -> None:
        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO t2fa_tenants ({self._POLICY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    self._policy_row(policy),
                )
            except sqlite3.IntegrityError:
                raise TenantExists(policy.tenant_id) from None
            conn.execute(
                "INSERT INTO t2fa_memberships (tenant_id, user_id, role) VALUES (?, ?, ?)",
                (owner.tenant_id, owner.user_id, owner.role.value),
            )
            self._insert_audit(conn, audit)

        self._write(work)

    @staticmethod
    def _policy_row(policy: TenantPolicy) -> tuple[object, ...]:
        grace = None
        if policy.grace_period is not None:
            grace = policy.grace_period // timedelta(microseconds=1)
        return (
            policy.tenant_id,
            policy.name,
            int(policy.two_factor_required),
            to_us(policy.activated_at),
            grace,
            policy.version,
        )

    def get_tenant(self, tenant_id: str) -> TenantPolicy | None:
        row = self._read(
            lambda c: c.execute(
                f"SELECT {self._POLICY_COLUMNS} FROM t2fa_tenants WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
        )
        return None if row is None else self._policy(row)

    def list_tenants(
        self, *, after_tenant_id: str | None = None, limit: int = 1000
    ) -> list[TenantPolicy]:
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {self._POLICY_COLUMNS} FROM t2fa_tenants WHERE tenant_id > ? "
                "ORDER BY tenant_id LIMIT ?",
                ("" if after_tenant_id is None else after_tenant_id, limit),
            ).fetchall()
        )
        return [self._policy(row) for row in rows]

    def update_tenant_policy(
        self,
        policy: TenantPolicy,
        *,
        expected_version: int,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor: Membership | None = None,
    ) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            self._check_actor(conn, actor)
            _, name, required, activated, grace, version = self._policy_row(policy)
            cursor = conn.execute(
                "UPDATE t2fa_tenants SET name = ?, two_factor_required = ?, activated_at = ?, "
                "grace_period_us = ?, version = ? WHERE tenant_id = ? AND version = ?",
                (name, required, activated, grace, version, policy.tenant_id, expected_version),
            )
            if cursor.rowcount != 1:
                return False
            self._record(conn, audit, notifications)
            return True

        return self._write(work)

    def add_membership(
        self,
        membership: Membership,
        audit: AuditRecord,
        *,
        actor: Membership | None = None,
        notifications: Sequence[Notification] = (),
    ) -> None:
        def work(conn: sqlite3.Connection) -> None:
            exists = conn.execute(
                "SELECT 1 FROM t2fa_tenants WHERE tenant_id = ?", (membership.tenant_id,)
            ).fetchone()
            if exists is None:
                raise UnknownTenant(membership.tenant_id)
            self._check_actor(conn, actor)
            try:
                conn.execute(
                    "INSERT INTO t2fa_memberships (tenant_id, user_id, role) VALUES (?, ?, ?)",
                    (membership.tenant_id, membership.user_id, membership.role.value),
                )
            except sqlite3.IntegrityError:
                raise AlreadyMember(membership.tenant_id, membership.user_id) from None
            self._record(conn, audit, notifications)

        self._write(work)

    @staticmethod
    def _role_of(conn: sqlite3.Connection, tenant_id: str, user_id: str) -> Role | None:
        row = conn.execute(
            "SELECT role FROM t2fa_memberships WHERE tenant_id = ? AND user_id = ?",
            (tenant_id, user_id),
        ).fetchone()
        return None if row is None else Role(row[0])

    def _check_actor(self, conn: sqlite3.Connection, actor: Membership | None) -> None:
        check_actor_holds(actor, lambda tenant, user: self._role_of(conn, tenant, user))

    def _check_change(
        self,
        conn: sqlite3.Connection,
        membership: Membership,
        actor: Membership | None,
        *,
        losing_owner: bool,
    ) -> None:
        """The guards of remove_membership and change_role; ``conn`` holds the write lock."""

        def count_owners() -> int:
            (owners,) = conn.execute(
                "SELECT COUNT(*) FROM t2fa_memberships WHERE tenant_id = ? AND role = ?",
                (membership.tenant_id, Role.OWNER.value),
            ).fetchone()
            return int(owners)

        check_member_change(
            membership,
            actor,
            role_of=lambda tenant, user: self._role_of(conn, tenant, user),
            losing_owner=losing_owner,
            count_owners=count_owners,
        )

    def remove_membership(
        self,
        membership: Membership,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        def work(conn: sqlite3.Connection) -> None:
            self._check_change(conn, membership, actor, losing_owner=True)
            conn.execute(
                "DELETE FROM t2fa_memberships WHERE tenant_id = ? AND user_id = ?",
                (membership.tenant_id, membership.user_id),
            )
            self._record(conn, audit, notifications)

        self._write(work)

    def change_role(
        self,
        membership: Membership,
        role: Role,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        def work(conn: sqlite3.Connection) -> None:
            self._check_change(conn, membership, actor, losing_owner=role is not Role.OWNER)
            conn.execute(
                "UPDATE t2fa_memberships SET role = ? WHERE tenant_id = ? AND user_id = ?",
                (role.value, membership.tenant_id, membership.user_id),
            )
            self._record(conn, audit, notifications)

        self._write(work)

    def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        row = self._read(
            lambda c: c.execute(
                "SELECT role FROM t2fa_memberships WHERE tenant_id = ? AND user_id = ?",
                (tenant_id, user_id),
            ).fetchone()
        )
        if row is None:
            return None
        return Membership(tenant_id=tenant_id, user_id=user_id, role=Role(row[0]))

    def list_memberships(self, tenant_id: str, *, role: Role | None = None) -> list[Membership]:
        if role is None:
            sql = "SELECT user_id, role FROM t2fa_memberships WHERE tenant_id = ? ORDER BY user_id"
            params: tuple[str, ...] = (tenant_id,)
        else:
            sql = (
                "SELECT user_id, role FROM t2fa_memberships WHERE tenant_id = ? AND role = ? "
                "ORDER BY user_id"
            )
            params = (tenant_id, role.value)
        rows = self._read(lambda c: c.execute(sql, params).fetchall())
        return [Membership(tenant_id=tenant_id, user_id=u, role=Role(r)) for u, r in rows]

    def tenants_of_user(self, user_id: str) -> list[TenantPolicy]:
        columns = ", ".join(f"t.{c}" for c in self._POLICY_COLUMNS.split(", "))
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {columns} FROM t2fa_memberships m "
                "JOIN t2fa_tenants t ON t.tenant_id = m.tenant_id "
                "WHERE m.user_id = ? ORDER BY t.tenant_id",
                (user_id,),
            ).fetchall()
        )
        return [self._policy(row) for row in rows]

    def _standings(
        self, conn: sqlite3.Connection, user_id: str, actor_id: str | None
    ) -> list[Standing]:
        columns = ", ".join(f"t.{c}" for c in self._POLICY_COLUMNS.split(", "))
        rows = conn.execute(
            f"SELECT {columns}, m.role, a.role FROM t2fa_memberships m "
            "JOIN t2fa_tenants t ON t.tenant_id = m.tenant_id "
            "LEFT JOIN t2fa_memberships a ON a.tenant_id = m.tenant_id AND a.user_id = ? "
            "WHERE m.user_id = ? ORDER BY t.tenant_id",
            (actor_id, user_id),
        ).fetchall()
        return [
            Standing(
                policy=self._policy(row[:6]),
                role=Role(row[6]),
                actor_role=None if row[7] is None else Role(row[7]),
            )
            for row in rows
        ]

    def standings(self, user_id: str, *, actor_id: str | None) -> list[Standing]:
        return self._read(lambda c: self._standings(c, user_id, actor_id))

    def _check_standings(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        actor_id: str | None,
        expected: Sequence[Standing] | None,
    ) -> None:
        if expected is not None and self._standings(conn, user_id, actor_id) != list(expected):
            raise ConcurrentChange("the user's tenants or roles changed meanwhile")

    # -- the user's factor -----------------------------------------------------------------

    _FACTOR_COLUMNS = ", ".join(FACTOR_FIELDS)

    # The whole login snapshot in one statement: the factor row (if any) beside each of the
    # user's tenants (or one row of NULLs for a user in none).
    _LOGIN_SQL = (
        "SELECT "
        + ", ".join(f"f.{c}" for c in _FACTOR_COLUMNS.split(", "))
        + ", t.tenant_id, t.name, t.two_factor_required, t.activated_at, t.grace_period_us, "
        "t.version, m.role "
        "FROM (SELECT ? AS user_id) u "
        "LEFT JOIN t2fa_factors f ON f.user_id = u.user_id "
        "LEFT JOIN t2fa_memberships m ON m.user_id = u.user_id "
        "LEFT JOIN t2fa_tenants t ON t.tenant_id = m.tenant_id "
        "ORDER BY t.tenant_id"
    )

    def _load_factor(self, conn: sqlite3.Connection, user_id: str) -> FactorRecord:
        row = conn.execute(
            f"SELECT {self._FACTOR_COLUMNS} FROM t2fa_factors WHERE user_id = ?", (user_id,)
        ).fetchone()
        return factor_from_values(user_id, row)

    @staticmethod
    def _epoch(conn: sqlite3.Connection, user_id: str) -> int:
        row = conn.execute(
            "SELECT epoch FROM t2fa_factors WHERE user_id = ?", (user_id,)
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _ensure_factor_row(conn: sqlite3.Connection, user_id: str) -> None:
        conn.execute("INSERT OR IGNORE INTO t2fa_factors (user_id) VALUES (?)", (user_id,))

    def get_factor(self, user_id: str) -> FactorRecord:
        return self._read(lambda c: self._load_factor(c, user_id))

    def _login_state(
        self, conn: sqlite3.Connection, user_id: str, *, recovery_codes: bool
    ) -> LoginState:
        rows = conn.execute(self._LOGIN_SQL, (user_id,)).fetchall()
        tenants = tuple(
            Standing(policy=self._policy(row[14:20]), role=Role(row[20]), actor_role=None)
            for row in rows
            if row[14] is not None
        )
        digests = None
        if recovery_codes:
            digests = tuple(
                d
                for (d,) in conn.execute(
                    "SELECT digest FROM t2fa_recovery_codes "
                    "WHERE user_id = ? AND used_at IS NULL ORDER BY digest",
                    (user_id,),
                )
            )
        return LoginState(
            factor=factor_from_values(user_id, rows[0]), tenants=tenants, recovery_digests=digests
        )

    def load_login(self, user_id: str, *, recovery_codes: bool = False) -> LoginState:
        if recovery_codes:
            return self._read(lambda c: self._login_state(c, user_id, recovery_codes=True))

        # One statement is a consistent snapshot by itself: no BEGIN and COMMIT around it.
        def attempt() -> LoginState:
            with self._connection() as conn:
                return self._login_state(conn, user_id, recovery_codes=False)

        return self._retrying(attempt)

    _COMMIT_SET = ", ".join(f"{f} = :{f}" for f in FACTOR_FIELDS)
    _COMMIT_UPDATE = (
        f"UPDATE t2fa_factors SET {_COMMIT_SET} WHERE user_id = :user_id AND revision = :expected"
    )

    def commit_factor(self, commit: FactorCommit) -> bool:
        factor = commit.factor
        params = {
            "user_id": factor.user_id,
            "expected": commit.expected_revision,
            **factor_values(factor),
        }

        def work(conn: sqlite3.Connection) -> bool:
            if commit.expected_revision == 0:
                # A user's first write (revision 0 stands for no row): make the row to update.
                self._ensure_factor_row(conn, factor.user_id)
            if conn.execute(self._COMMIT_UPDATE, params).rowcount != 1:
                return False
            if commit.use_recovery_code is not None:
                used = conn.execute(
                    "UPDATE t2fa_recovery_codes SET used_at = ? "
                    "WHERE user_id = ? AND digest = ? AND used_at IS NULL",
                    (to_us(commit.at), factor.user_id, commit.use_recovery_code),
                )
                if used.rowcount != 1:
                    # Decided on this revision, where the code was unused: data was lost.
                    raise StorageError("the recovery code to use is not stored as unused")
            if commit.recovery is not None:
                self._replace_codes(conn, factor.user_id, commit.recovery)
            for record in commit.audit:
                self._insert_audit(conn, record)
            self._queue(conn, commit.notifications)
            return True

        return self._write(work)

    def _replace_codes(
        self, conn: sqlite3.Connection, user_id: str, recovery: RecoveryCodeSet
    ) -> None:
        conn.execute("DELETE FROM t2fa_recovery_codes WHERE user_id = ?", (user_id,))
        conn.executemany(
            "INSERT INTO t2fa_recovery_codes (user_id, digest) VALUES (?, ?)",
            [(user_id, digest) for digest in recovery.digests],
        )

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
        def work(conn: sqlite3.Connection) -> int | None:
            self._check_standings(conn, user_id, actor_id, expected)
            cursor = conn.execute(
                "UPDATE t2fa_factors SET secret = NULL, activated_at = NULL, pending_id = NULL, "
                "pending_secret = NULL, pending_created_at = NULL, pending_expires_at = NULL, "
                "epoch = epoch + 1, failures = 0, last_failure_at = NULL, recovery_salt = NULL, "
                "recovery_left = 0, revision = revision + 1, "
                "identity_floor = CASE WHEN identity_floor IS NULL OR identity_floor < :floor "
                "THEN :floor ELSE identity_floor END "
                "WHERE user_id = :user_id "
                "AND (secret IS NOT NULL OR pending_id IS NOT NULL OR failures > 0)",
                {"user_id": user_id, "floor": to_us(floor)},
            )
            if cursor.rowcount != 1:
                return None
            conn.execute("DELETE FROM t2fa_recovery_codes WHERE user_id = ?", (user_id,))
            self._record(conn, audit, notifications)
            return self._epoch(conn, user_id)

        return self._write(work)

    def unlock_factor(
        self,
        user_id: str,
        *,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor_id: str | None = None,
        expected: Sequence[Standing] | None = None,
    ) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            self._check_standings(conn, user_id, actor_id, expected)
            cursor = conn.execute(
                "UPDATE t2fa_factors SET failures = 0, last_failure_at = NULL, "
                "revision = revision + 1 WHERE user_id = ? AND failures > 0",
                (user_id,),
            )
            if cursor.rowcount != 1:
                return False
            self._record(conn, audit, notifications)
            return True

        return self._write(work)

    def sealed_secrets(self, *, after_user_id: str | None, limit: int) -> list[SealedSecrets]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT user_id, secret, pending_id, pending_secret FROM t2fa_factors "
                "WHERE (secret IS NOT NULL OR pending_id IS NOT NULL) AND user_id > ? "
                "ORDER BY user_id LIMIT ?",
                ("" if after_user_id is None else after_user_id, limit),
            ).fetchall()
        )
        return [
            SealedSecrets(user_id=u, secret=s, pending_id=p, pending_secret=ps)
            for u, s, p, ps in rows
        ]

    def rewrap_secrets(self, old: SealedSecrets, new: SealedSecrets) -> bool:
        if new.pending_id != old.pending_id:
            return False

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE t2fa_factors SET secret = ?, pending_secret = ?, revision = revision + 1 "
                "WHERE user_id = ? "
                "AND secret IS ? AND pending_id IS ? AND pending_secret IS ?",
                (
                    new.secret,
                    new.pending_secret,
                    old.user_id,
                    old.secret,
                    old.pending_id,
                    old.pending_secret,
                ),
            )
            return cursor.rowcount == 1

        return self._write(work)

    # -- audit -----------------------------------------------------------------------------

    def append_audit(
        self, record: AuditRecord, *, notifications: Sequence[Notification] = ()
    ) -> None:
        self._write(lambda c: self._record(c, record, notifications))

    def audit_records(self, query: AuditQuery) -> list[AuditRecord]:
        clauses: list[str] = []
        params: list[object] = []
        if query.tenant_id is not None:
            clauses.append("tenant_id = ?")
            params.append(query.tenant_id)
        if query.user_id is not None:
            clauses.append("(user_id = ? OR actor_id = ?)")
            params += [query.user_id, query.user_id]
        if query.kinds is not None:
            kinds = sorted(k.value for k in query.kinds)
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})" if kinds else "0")
            params += kinds
        if query.since is not None:
            clauses.append("at >= ?")
            params.append(to_us(query.since))
        if query.until is not None:
            clauses.append("at < ?")
            params.append(to_us(query.until))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(
            lambda c: c.execute(
                "SELECT record_id, at, kind, tenant_id, user_id, actor_id, detail "
                f"FROM t2fa_audit {where} ORDER BY at, seq LIMIT ? OFFSET ?",
                (*params, query.limit, query.offset),
            ).fetchall()
        )
        return [
            AuditRecord(
                record_id=r[0],
                at=required_from_us(r[1]),
                kind=AuditKind(r[2]),
                tenant_id=r[3],
                user_id=r[4],
                actor_id=r[5],
                detail=MappingProxyType(json.loads(r[6])),
            )
            for r in rows
        ]

    # -- outbox ----------------------------------------------------------------------------

    _OUTBOX_COLUMNS = "payload, state, attempts, next_attempt_at, delivered_at, last_error"

    @staticmethod
    def _outbox_item(row: tuple[Any, ...]) -> OutboxItem:
        return OutboxItem(
            notification=decode_notification(row[0]),
            state=OutboxState(row[1]),
            attempts=row[2],
            next_attempt_at=from_us(row[3]),
            delivered_at=from_us(row[4]),
            last_error=row[5],
        )

    def claim_notifications(
        self,
        *,
        now: datetime,
        claimant: str,
        lease: timedelta,
        limit: int,
        ids: Sequence[str] | None = None,
    ) -> list[OutboxItem]:
        def work(conn: sqlite3.Connection) -> list[OutboxItem]:
            sql = (
                "SELECT seq, notification_id FROM t2fa_outbox WHERE state = 'pending' "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                "AND (claimed_until IS NULL OR claimed_until <= ?)"
            )
            params: list[object] = [to_us(now), to_us(now)]
            if ids is not None:
                if not ids:
                    return []
                sql += f" AND notification_id IN ({', '.join('?' * len(ids))})"
                params += list(ids)
            sql += " ORDER BY seq LIMIT ?"
            params.append(limit)
            rows = conn.execute(sql, params).fetchall()
            items = []
            for seq, _ in rows:
                conn.execute(
                    "UPDATE t2fa_outbox SET attempts = attempts + 1, claimant = ?, "
                    "claimed_until = ? WHERE seq = ?",
                    (claimant, to_us(later(now, lease)), seq),
                )
                row = conn.execute(
                    f"SELECT {self._OUTBOX_COLUMNS} FROM t2fa_outbox WHERE seq = ?", (seq,)
                ).fetchone()
                items.append(self._outbox_item(row))
            return items

        return self._write(work)

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
        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE t2fa_outbox SET state = ?, claimant = NULL, claimed_until = NULL, "
                "last_error = ?, "
                "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END, "
                "next_attempt_at = CASE WHEN ? = 'pending' THEN ? ELSE next_attempt_at END "
                "WHERE notification_id = ? AND claimant = ? AND state = 'pending' "
                "AND claimed_until > ?",
                (
                    state.value,
                    error,
                    state.value,
                    to_us(now),
                    state.value,
                    to_us(next_attempt_at or now),
                    notification_id,
                    claimant,
                    to_us(now),
                ),
            )
            return cursor.rowcount == 1

        return self._write(work)

    def outbox_items(
        self, *, state: OutboxState | None = None, limit: int = 100
    ) -> list[OutboxItem]:
        where = "" if state is None else "WHERE state = ?"
        params: tuple[object, ...] = () if state is None else (state.value,)
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {self._OUTBOX_COLUMNS} FROM t2fa_outbox {where} ORDER BY seq LIMIT ?",
                (*params, limit),
            ).fetchall()
        )
        return [self._outbox_item(row) for row in rows]
