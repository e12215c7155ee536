"""The SQLAlchemy backend (SQLAlchemy 2 Core): PostgreSQL, MariaDB/MySQL, SQLite.

Install with the ``sqlalchemy`` extra plus a driver (``postgres``: psycopg 3; ``mysql``: PyMySQL).

- :data:`metadata` holds our tables (all prefixed ``t2fa_``), so a host app can include them in its
  own Alembic migrations; :meth:`SQLAlchemyStorage.create_schema` creates them for quick starts.
- Every operation is one transaction, or one statement on its own where it needs no more (on
  PostgreSQL those run without BEGIN and COMMIT). Compare-and-set operations are single
  ``UPDATE ... WHERE`` statements judged by their row count (a login's write compares the factor
  row's revision); membership changes lock the tenant's row with ``SELECT ... FOR UPDATE`` (on
  SQLite the transaction starts with ``BEGIN IMMEDIATE`` instead). Both are correct at
  PostgreSQL's default READ COMMITTED, at SERIALIZABLE, and at MariaDB's default REPEATABLE
  READ.
- Serialization failures and deadlocks (SQLSTATE 40001/40P01, MySQL 1213/1205) and dropped
  connections are retried a bounded number of times (two budgets: ``conflict_retries`` and
  ``retries``); then the operation fails closed with :class:`~tenant2fa.errors.StorageError`.
  PostgreSQL-family dialects (CockroachDB's included) are recognised by class.
- Times are stored as BIGINT microseconds since the Unix epoch (UTC), the same on every database.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import time
import urllib.parse
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql.base import MySQLDialect
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from tenant2fa.audit import AuditKind, AuditQuery, AuditRecord
from tenant2fa.clock import later
from tenant2fa.errors import (
    AlreadyMember,
    ConcurrentChange,
    NotAMember,
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
    from collections.abc import Callable, Sequence

    from tenant2fa.notify import Notification
    from tenant2fa.recovery import RecoveryCodeSet

__all__ = [
    "SCHEMA_VERSION",
    "ExactText",
    "SQLAlchemyStorage",
    "alembic_render_item",
    "backfill_statements",
    "metadata",
]

_T = TypeVar("_T")

SCHEMA_VERSION = 5


class ExactText(sa.types.TypeDecorator[str]):
    """A string compared byte for byte on every database.

    MySQL/MariaDB collations ignore case, accents and trailing spaces, so there ids and tokens are
    stored as UTF-8 in VARBINARY, where every byte counts. Elsewhere this is a plain VARCHAR.
    """

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.VARBINARY(self.length * 4))
        return dialect.type_descriptor(sa.String(self.length))

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> Any:  # noqa: ANN401
        if value is not None and dialect.name in ("mysql", "mariadb"):
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:  # noqa: ANN401
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8")
        return value  # type: ignore[no-any-return]


def alembic_render_item(type_: str, obj: object, autogen_context: Any) -> str | bool:  # noqa: ANN401
    """Alembic ``render_item`` hook: renders our :class:`ExactText` columns with their import.

    In ``env.py``: ``context.configure(..., render_item=alembic_render_item)``. Returns ``False``
    for everything else, so Alembic renders it as usual.
    """
    if type_ == "type" and isinstance(obj, ExactText):
        autogen_context.imports.add("import tenant2fa.storage.sqlalchemy")
        return f"tenant2fa.storage.sqlalchemy.ExactText({obj.length})"
    return False


def _text(length: int) -> ExactText:
    return ExactText(length)


def _sequence() -> sa.Column[int]:
    # An ever-growing row number that orders records written at the same instant; SQLite only
    # autoincrements an INTEGER primary key.
    return sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def _id() -> ExactText:
    return _text(255)


def _blob(length: int | None = None) -> sa.types.TypeEngine[bytes]:
    if length is None:
        return sa.LargeBinary()
    # MySQL cannot index a BLOB without a prefix length; VARBINARY is the fitting type there.
    return sa.LargeBinary(length).with_variant(mysql.VARBINARY(length), "mysql", "mariadb")


# Names and audit details are Unicode text: on MySQL/MariaDB the tables say so themselves, rather
# than take a server default that may be latin1 (where "😀 Acme" would not fit).
_TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4"}

metadata = sa.MetaData()
"""Our tables; pass it to Alembic's ``target_metadata`` (alongside your own) to migrate them."""

meta = sa.Table(
    "t2fa_meta",
    metadata,
    sa.Column("key", _text(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
    **_TABLE_OPTIONS,
)

tenants = sa.Table(
    "t2fa_tenants",
    metadata,
    sa.Column("tenant_id", _id(), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("two_factor_required", sa.Boolean, nullable=False, default=False),
    sa.Column("activated_at", sa.BigInteger),
    sa.Column("grace_period_us", sa.BigInteger),
    sa.Column("version", sa.BigInteger, nullable=False, default=0),
    **_TABLE_OPTIONS,
)

memberships = sa.Table(
    "t2fa_memberships",
    metadata,
    sa.Column(
        "tenant_id",
        _id(),
        sa.ForeignKey("t2fa_tenants.tenant_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("user_id", _id(), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Index("t2fa_memberships_by_user", "user_id", "tenant_id"),
    sa.Index("t2fa_memberships_by_role", "tenant_id", "role", "user_id"),
    **_TABLE_OPTIONS,
)

factors = sa.Table(
    "t2fa_factors",
    metadata,
    sa.Column("user_id", _id(), primary_key=True),
    sa.Column("secret", _blob()),
    sa.Column("activated_at", sa.BigInteger),
    sa.Column("last_step", sa.BigInteger, nullable=False, default=-1, server_default="-1"),
    sa.Column("pending_id", _text(64)),
    sa.Column("pending_secret", _blob()),
    sa.Column("pending_created_at", sa.BigInteger),
    sa.Column("pending_expires_at", sa.BigInteger),
    sa.Column("epoch", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.Column("failures", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("last_failure_at", sa.BigInteger),
    sa.Column("recovery_salt", _blob(64)),
    sa.Column("identity_floor", sa.BigInteger),
    # Version 4: the compare-and-set of every decided change (0: no row), and the count of
    # unused recovery codes (kept, so that a login never counts rows).
    sa.Column("revision", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.Column("recovery_left", sa.Integer, nullable=False, default=0, server_default="0"),
    **_TABLE_OPTIONS,
)

recovery_codes = sa.Table(
    "t2fa_recovery_codes",
    metadata,
    sa.Column("user_id", _id(), primary_key=True),
    sa.Column("digest", _blob(64), primary_key=True),
    sa.Column("used_at", sa.BigInteger),
    **_TABLE_OPTIONS,
)

audit_log = sa.Table(
    "t2fa_audit",
    metadata,
    _sequence(),
    # Version 5: lean, since every login appends to it. Only the indexes audit_log's queries
    # need (by tenant, by time); record ids are kept but not indexed (no query reads by them),
    # and users and actors are not indexed (see docs/storage.md).
    sa.Column("record_id", _text(64), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("tenant_id", _id()),
    sa.Column("user_id", _id()),
    sa.Column("actor_id", _id()),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("t2fa_audit_by_tenant", "tenant_id", "at"),
    sa.Index("t2fa_audit_by_time", "at"),
    **_TABLE_OPTIONS,
)


outbox = sa.Table(
    "t2fa_outbox",
    metadata,
    _sequence(),
    sa.Column("notification_id", _text(64), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.BigInteger),
    sa.Column("delivered_at", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    sa.Column("claimant", _text(64)),
    sa.Column("claimed_until", sa.BigInteger),
    sa.Index("t2fa_outbox_due", "state", "next_attempt_at"),
    **_TABLE_OPTIONS,
)


_FACTOR_COLUMNS = tuple(factors.c[name] for name in FACTOR_FIELDS)
"""The factor row's columns in the order :func:`tenant2fa.storage.rows.factor_from_values`
reads them."""


def _login_statement() -> sa.Select[Any]:
    """The whole login snapshot as one statement: the user's factor row (if any) beside each of
    their tenants with their role there (one row of NULLs for a user in none)."""
    user = sa.select(sa.bindparam("login_user", type_=_id()).label("user_id")).subquery("u")
    tenant_columns = [c.label(f"t_{c.name}") for c in tenants.c]
    return (
        sa.select(
            *_FACTOR_COLUMNS,
            *tenant_columns,
            memberships.c.role.label("m_role"),
        )
        .select_from(user)
        .outerjoin(factors, factors.c.user_id == user.c.user_id)
        .outerjoin(memberships, memberships.c.user_id == user.c.user_id)
        .outerjoin(tenants, tenants.c.tenant_id == memberships.c.tenant_id)
        .order_by(tenants.c.tenant_id)
    )


_LOGIN = _login_statement()


_AUDIT_FIELDS = ("record_id", "at", "kind", "tenant_id", "user_id", "actor_id", "detail")
_OUTBOX_FIELDS = (
    "notification_id",
    "created_at",
    "payload",
    "state",
    "attempts",
    "next_attempt_at",
)


@functools.lru_cache(maxsize=64)
def _postgres_commit_sql(audits: int, notes: int, first: bool) -> sa.TextClause:  # noqa: FBT001
    """PostgreSQL: the compare-and-set of a factor row and the inserts of ``audits`` audit
    records and ``notes`` notifications that hang on it, as one statement (a data-modifying
    CTE: one round trip). Built once per shape, so SQLAlchemy compiles it once and psycopg
    prepares it on the server. ``first``: the user's first write (revision 0 stands for no
    row), an insert that may only update a row a concurrent first write made."""
    if first:
        written = (
            f"INSERT INTO {factors.name} (user_id, {', '.join(FACTOR_FIELDS)}) "
            f"VALUES (:user_id, {', '.join(':' + f for f in FACTOR_FIELDS)}) "
            "ON CONFLICT (user_id) DO UPDATE SET "
            + ", ".join(f"{f} = EXCLUDED.{f}" for f in FACTOR_FIELDS)
            + f" WHERE {factors.name}.revision = 0 RETURNING 1"
        )
    else:
        written = (
            f"UPDATE {factors.name} SET "
            + ", ".join(f"{f} = :{f}" for f in FACTOR_FIELDS)
            + " WHERE user_id = :user_id AND revision = :expected RETURNING 1"
        )
    parts = [f"t2fa_written AS ({written})"]
    for table, prefix, count, fields in (
        (audit_log, "a", audits, _AUDIT_FIELDS),
        (outbox, "n", notes, _OUTBOX_FIELDS),
    ):
        for i in range(count):
            values = ", ".join(f":{prefix}{i}_{f}" for f in fields)
            parts.append(
                f"t2fa_{prefix}{i} AS (INSERT INTO {table.name} ({', '.join(fields)}) "
                f"SELECT {values} FROM t2fa_written)"
            )
    return sa.text(f"WITH {', '.join(parts)} SELECT count(*) FROM t2fa_written")


_RETRYABLE_SQLSTATES = {"40001", "40P01"}
_RETRYABLE_MYSQL_CODES = {1213, 1205}  # deadlock found; lock wait timeout
# Can't connect (local, TCP), server has gone away, lost connection during a query.
_MYSQL_CONNECTION_CODES = frozenset({2002, 2003, 2006, 2013})


def _describe(exc: DBAPIError) -> str:
    """The driver's error, for a StorageError's message: its class and code, and its text only
    for a connection problem. Other texts may quote the values a statement carried (MySQL's
    "Incorrect string value: ..." and "... near '...'" do)."""
    orig = exc.orig
    name = type(orig).__name__
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    args = getattr(orig, "args", ())
    code = sqlstate or (args[0] if args and isinstance(args[0], int) else None)
    described = name if code is None else f"{name} ({code})"
    text = str(orig).strip()
    connecting = exc.connection_invalidated or (
        isinstance(exc, sa.exc.OperationalError)
        and (code is None or str(code).startswith("08") or code in _MYSQL_CONNECTION_CODES)
    )
    if connecting and text:
        return f"{described}: {text.splitlines()[0]}"
    return described


def _conflict(exc: DBAPIError) -> bool:
    """A transaction that lost to a concurrent one (serialization failure, deadlock, a lock it
    waited for too long): running it again from the start is the cure."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _RETRYABLE_MYSQL_CODES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "deadlock" in text


class SQLAlchemyStorage:
    """A :class:`~tenant2fa.storage.Storage` on a SQLAlchemy :class:`~sqlalchemy.engine.Engine`.

    Pass an engine or a URL (``postgresql+psycopg://...``, ``mysql+pymysql://...``,
    ``sqlite:///path``). No connection is pinged before use (a round trip on every operation):
    an operation that finds its connection dropped (the database restarted) is run again, whole,
    on a new one, up to ``retries`` times. An operation that lost to a concurrent one (a
    serialization failure, SQLSTATE 40001, which CockroachDB and PostgreSQL at SERIALIZABLE
    raise; a deadlock) is run again up to ``conflict_retries`` times, with jittered back-off.
    Then it fails closed with :class:`~tenant2fa.errors.StorageError`.
    """

    def __init__(
        self, engine: sa.Engine | str, *, retries: int = 5, conflict_retries: int = 20
    ) -> None:
        if isinstance(engine, str):
            engine = sa.create_engine(engine)
        path = _sqlite_file(engine)
        if path is not None:
            # Readable by its owner only, from the first byte (see tenant2fa.storage.files).
            try:
                create_private_file(path)
            except OSError as exc:
                raise StorageError(f"cannot create the SQLite database file: {exc}") from exc
        self.engine = engine
        self._retries = retries
        self._conflict_retries = conflict_retries
        dialect = engine.dialect
        # By class, not by name: the CockroachDB dialect (named "cockroachdb") is one of them.
        self._postgres = isinstance(dialect, PGDialect)
        self._mysql = isinstance(dialect, MySQLDialect)
        # Single statements run outside a transaction (no BEGIN and COMMIT round trips) where
        # the database keeps each statement atomic on its own: PostgreSQL.
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else None
        )
        if isinstance(dialect, SQLiteDialect):
            _sqlite_immediate_transactions(engine)

    def __repr__(self) -> str:
        return f"SQLAlchemyStorage({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- schema ---------------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create our tables and indexes if missing, and record the schema version.

        For quick starts and tests; it also brings a database made by an older tenant2fa up to
        date where that only needs new tables or indexes. Production hosts should use their own
        Alembic migrations (see :data:`metadata`).
        """

        def work(conn: sa.Connection) -> None:
            metadata.create_all(conn, checkfirst=True)
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            _add_missing_columns(conn)
            _drop_obsolete_indexes(conn)
            row = conn.execute(
                sa.select(meta.c.value).where(meta.c.key == "schema_version")
            ).first()
            if row is None:
                conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(row.value) < SCHEMA_VERSION:
                conn.execute(
                    meta.update()
                    .where(meta.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )

        self._run(work)

    def drop_schema(self) -> None:
        """Drop our tables (tests)."""
        self._run(lambda conn: metadata.drop_all(conn, checkfirst=True))

    def schema_version(self) -> int:
        row = self._run(
            lambda c: c.execute(
                sa.select(meta.c.value).where(meta.c.key == "schema_version")
            ).first()
        )
        return 0 if row is None else int(row[0])

    # -- running a unit of work -------------------------------------------------------------

    def _run(self, work: Callable[[sa.Connection], _T], *, single: bool = False) -> _T:
        """Run ``work`` in one transaction, retrying transient failures (a dropped connection
        among them), then failing closed. ``single``: ``work`` is one statement, atomic by
        itself, run without BEGIN and COMMIT where the database allows (PostgreSQL)."""
        dropped = conflicts = 0
        for attempt in itertools.count():
            try:
                if single and self._autocommit is not None:
                    with self._autocommit.connect() as conn:
                        return work(conn)
                with self.engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                # Two budgets: a database that is away fails soon; conflicts between concurrent
                # transactions (every SERIALIZABLE database has them) resolve with a few more.
                if isinstance(exc, IntegrityError):
                    given_up = True
                elif exc.connection_invalidated:
                    dropped += 1
                    given_up = dropped > self._retries
                elif _conflict(exc):
                    conflicts += 1
                    given_up = conflicts > self._conflict_retries
                else:
                    given_up = True
                if given_up:
                    raise StorageError(f"database operation failed: {_describe(exc)}") from exc
            except SQLAlchemyError as exc:
                raise StorageError(f"database operation failed: {type(exc).__name__}") from exc
            except (OverflowError, UnicodeError) as exc:
                # A value the driver cannot send (an int past 64 bits, a lone surrogate).
                raise StorageError(
                    f"the database cannot store a value: {type(exc).__name__}"
                ) from exc
            time.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))  # noqa: S311
        raise AssertionError("unreachable")  # pragma: no cover - the loop only returns or raises

    @staticmethod
    def _audit_values(record: AuditRecord) -> dict[str, object]:
        return {
            "record_id": record.record_id,
            "at": to_us(record.at),
            "kind": record.kind.value,
            "tenant_id": record.tenant_id,
            "user_id": record.user_id,
            "actor_id": record.actor_id,
            "detail": json.dumps(dict(record.detail), sort_keys=True),
        }

    @staticmethod
    def _outbox_values(note: Notification) -> dict[str, object]:
        return {
            "notification_id": note.notification_id,
            "created_at": to_us(note.at),
            "payload": encode_notification(note),
            "state": OutboxState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": to_us(note.at),
        }

    def _audit(self, conn: sa.Connection, record: AuditRecord) -> None:
        conn.execute(audit_log.insert().values(self._audit_values(record)))

    def _queue(self, conn: sa.Connection, notifications: Sequence[Notification]) -> None:
        if notifications:
            conn.execute(outbox.insert(), [self._outbox_values(n) for n in notifications])

    def _record(
        self, conn: sa.Connection, audit: AuditRecord, notifications: Sequence[Notification]
    ) -> None:
        self._audit(conn, audit)
        self._queue(conn, notifications)

    def _insert_missing_factor(self, user_id: str) -> sa.Insert:
        """An empty factor row for ``user_id``, unless one exists (the dialect's own way)."""
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: PLC0415

            return pg_insert(factors).values(user_id=user_id).on_conflict_do_nothing()
        if self._mysql:
            return factors.insert().prefix_with("IGNORE").values(user_id=user_id)
        return factors.insert().prefix_with("OR IGNORE").values(user_id=user_id)

    def _ensure_factor_row(self, conn: sa.Connection, user_id: str) -> None:
        exists = conn.execute(
            sa.select(factors.c.user_id).where(factors.c.user_id == user_id)
        ).first()
        if exists is None:
            conn.execute(self._insert_missing_factor(user_id))

    # -- tenants and memberships ------------------------------------------------------------

    @staticmethod
    def _policy(row: Any) -> TenantPolicy:  # noqa: ANN401 - a SQLAlchemy Row
        grace = None if row.grace_period_us is None else timedelta(microseconds=row.grace_period_us)
        return TenantPolicy(
            tenant_id=row.tenant_id,
            name=row.name,
            two_factor_required=bool(row.two_factor_required),
            activated_at=from_us(row.activated_at),
            grace_period=grace,
            version=row.version,
        )

    @staticmethod
    def _policy_values(policy: TenantPolicy) -> dict[str, object]:
        grace = None
        if policy.grace_period is not None:
            grace = policy.grace_period // timedelta(microseconds=1)
        return {
            "name": policy.name,
            "two_factor_required": policy.two_factor_required,
            "activated_at": to_us(policy.activated_at),
            "grace_period_us": grace,
            "version": policy.version,
        }

    def create_tenant(self, policy: TenantPolicy, owner: Membership, audit: AuditRecord) -> None:
        def work(conn: sa.Connection) -> None:
            exists = conn.execute(
                sa.select(tenants.c.tenant_id).where(tenants.c.tenant_id == policy.tenant_id)
            ).first()
            if exists is not None:
                raise TenantExists(policy.tenant_id)
            conn.execute(
                tenants.insert().values(tenant_id=policy.tenant_id, **self._policy_values(policy))
            )
            conn.execute(
                memberships.insert().values(
                    tenant_id=owner.tenant_id, user_id=owner.user_id, role=owner.role.value
                )
            )
            self._audit(conn, audit)

        try:
            self._run(work)
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise TenantExists(policy.tenant_id) from None
            raise

    def get_tenant(self, tenant_id: str) -> TenantPolicy | None:
        row = self._run(
            lambda c: c.execute(sa.select(tenants).where(tenants.c.tenant_id == tenant_id)).first()
        )
        return None if row is None else self._policy(row)

    def list_tenants(
        self, *, after_tenant_id: str | None = None, limit: int = 1000
    ) -> list[TenantPolicy]:
        stmt = sa.select(tenants)
        if after_tenant_id is not None:
            stmt = stmt.where(tenants.c.tenant_id > after_tenant_id)
        rows = self._run(lambda c: c.execute(stmt.order_by(tenants.c.tenant_id).limit(limit)).all())
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
        def work(conn: sa.Connection) -> bool:
            if actor is not None:
                # The tenant's row lock orders this with the membership changes of the tenant.
                self._lock_tenant(conn, policy.tenant_id)
                self._check_actor(conn, actor)
            result = conn.execute(
                tenants.update()
                .where(tenants.c.tenant_id == policy.tenant_id)
                .where(tenants.c.version == expected_version)
                .values(**self._policy_values(policy))
            )
            if result.rowcount != 1:
                return False
            self._record(conn, audit, notifications)
            return True

        return self._run(work)

    def add_membership(
        self,
        membership: Membership,
        audit: AuditRecord,
        *,
        actor: Membership | None = None,
        notifications: Sequence[Notification] = (),
    ) -> None:
        def work(conn: sa.Connection) -> None:
            if not self._lock_tenant(conn, membership.tenant_id):
                raise UnknownTenant(membership.tenant_id)
            self._check_actor(conn, actor)
            if self._role_of(conn, membership.tenant_id, membership.user_id) is not None:
                raise AlreadyMember(membership.tenant_id, membership.user_id)
            conn.execute(
                memberships.insert().values(
                    tenant_id=membership.tenant_id,
                    user_id=membership.user_id,
                    role=membership.role.value,
                )
            )
            self._record(conn, audit, notifications)

        try:
            self._run(work)
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise AlreadyMember(membership.tenant_id, membership.user_id) from None
            raise

    @staticmethod
    def _lock_tenant(conn: sa.Connection, tenant_id: str) -> bool:
        """Lock the tenant's row until the transaction ends: membership changes in one tenant
        (and its policy updates) then run one after the other. False if there is no tenant."""
        row = conn.execute(
            sa.select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id).with_for_update()
        ).first()
        return row is not None

    @staticmethod
    def _role_of(conn: sa.Connection, tenant_id: str, user_id: str) -> Role | None:
        role = conn.execute(
            sa.select(memberships.c.role)
            .where(memberships.c.tenant_id == tenant_id)
            .where(memberships.c.user_id == user_id)
        ).scalar()
        return None if role is None else Role(role)

    def _check_actor(self, conn: sa.Connection, actor: Membership | None) -> None:
        check_actor_holds(actor, lambda tenant, user: self._role_of(conn, tenant, user))

    def _check_change(
        self,
        conn: sa.Connection,
        membership: Membership,
        actor: Membership | None,
        *,
        losing_owner: bool,
    ) -> None:
        """The guards of remove_membership and change_role, under the tenant's row lock."""
        if not self._lock_tenant(conn, membership.tenant_id):
            raise NotAMember(membership.tenant_id, membership.user_id)

        def count_owners() -> int:
            owners = conn.execute(
                sa.select(sa.func.count())
                .select_from(memberships)
                .where(memberships.c.tenant_id == membership.tenant_id)
                .where(memberships.c.role == Role.OWNER.value)
            ).scalar_one()
            return int(owners)

        check_member_change(
            membership,
            actor,
            role_of=lambda tenant, user: self._role_of(conn, tenant, user),
            losing_owner=losing_owner,
            count_owners=count_owners,
        )

    @staticmethod
    def _membership_row(membership: Membership) -> sa.ColumnElement[bool]:
        return sa.and_(
            memberships.c.tenant_id == membership.tenant_id,
            memberships.c.user_id == membership.user_id,
        )

    def remove_membership(
        self,
        membership: Membership,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        def work(conn: sa.Connection) -> None:
            self._check_change(conn, membership, actor, losing_owner=True)
            conn.execute(memberships.delete().where(self._membership_row(membership)))
            self._record(conn, audit, notifications)

        self._run(work)

    def change_role(
        self,
        membership: Membership,
        role: Role,
        *,
        actor: Membership | None,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
    ) -> None:
        def work(conn: sa.Connection) -> None:
            self._check_change(conn, membership, actor, losing_owner=role is not Role.OWNER)
            conn.execute(
                memberships.update().where(self._membership_row(membership)).values(role=role.value)
            )
            self._record(conn, audit, notifications)

        self._run(work)

    def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        row = self._run(
            lambda c: c.execute(
                sa.select(memberships.c.role)
                .where(memberships.c.tenant_id == tenant_id)
                .where(memberships.c.user_id == user_id)
            ).first()
        )
        if row is None:
            return None
        return Membership(tenant_id=tenant_id, user_id=user_id, role=Role(row.role))

    def list_memberships(self, tenant_id: str, *, role: Role | None = None) -> list[Membership]:
        stmt = sa.select(memberships.c.user_id, memberships.c.role).where(
            memberships.c.tenant_id == tenant_id
        )
        if role is not None:
            stmt = stmt.where(memberships.c.role == role.value)
        rows = self._run(lambda c: c.execute(stmt.order_by(memberships.c.user_id)).all())
        return [Membership(tenant_id=tenant_id, user_id=r.user_id, role=Role(r.role)) for r in rows]

    def tenants_of_user(self, user_id: str) -> list[TenantPolicy]:
        rows = self._run(
            lambda c: c.execute(
                sa.select(tenants)
                .join(memberships, memberships.c.tenant_id == tenants.c.tenant_id)
                .where(memberships.c.user_id == user_id)
                .order_by(tenants.c.tenant_id)
            ).all()
        )
        return [self._policy(row) for row in rows]

    @classmethod
    def _standings(cls, conn: sa.Connection, user_id: str, actor_id: str | None) -> list[Standing]:
        actor = memberships.alias("actor")
        rows = conn.execute(
            sa.select(tenants, memberships.c.role, actor.c.role.label("actor_role"))
            .join(memberships, memberships.c.tenant_id == tenants.c.tenant_id)
            .outerjoin(
                actor,
                sa.and_(actor.c.tenant_id == tenants.c.tenant_id, actor.c.user_id == actor_id),
            )
            .where(memberships.c.user_id == user_id)
            .order_by(tenants.c.tenant_id)
        ).all()
        return [
            Standing(
                policy=cls._policy(row),
                role=Role(row.role),
                actor_role=None if row.actor_role is None else Role(row.actor_role),
            )
            for row in rows
        ]

    def standings(self, user_id: str, *, actor_id: str | None) -> list[Standing]:
        return self._run(lambda c: self._standings(c, user_id, actor_id))

    def _check_standings(
        self,
        conn: sa.Connection,
        user_id: str,
        actor_id: str | None,
        expected: Sequence[Standing] | None,
    ) -> None:
        """Under the lock of the user's factor row, the user's tenants and roles must still be
        what the decision saw: any change after this read is ordered after the write."""
        if expected is None:
            return
        conn.execute(
            sa.select(factors.c.user_id).where(factors.c.user_id == user_id).with_for_update()
        ).first()
        if self._standings(conn, user_id, actor_id) != list(expected):
            raise ConcurrentChange("the user's tenants or roles changed meanwhile")

    # -- the user's factor -----------------------------------------------------------------

    def get_factor(self, user_id: str) -> FactorRecord:
        row = self._run(
            lambda c: c.execute(
                sa.select(*_FACTOR_COLUMNS).where(factors.c.user_id == user_id)
            ).first(),
            single=True,
        )
        return factor_from_values(user_id, row)

    def _login_state(self, conn: sa.Connection, user_id: str, *, with_codes: bool) -> LoginState:
        rows = conn.execute(_LOGIN, {"login_user": user_id}).all()
        tenants = tuple(
            Standing(
                policy=TenantPolicy(
                    tenant_id=row.t_tenant_id,
                    name=row.t_name,
                    two_factor_required=bool(row.t_two_factor_required),
                    activated_at=from_us(row.t_activated_at),
                    grace_period=None
                    if row.t_grace_period_us is None
                    else timedelta(microseconds=row.t_grace_period_us),
                    version=row.t_version,
                ),
                role=Role(row.m_role),
                actor_role=None,
            )
            for row in rows
            if row.t_tenant_id is not None
        )
        digests = None
        if with_codes:
            digests = tuple(
                bytes(d)
                for d in conn.execute(
                    sa.select(recovery_codes.c.digest)
                    .where(recovery_codes.c.user_id == user_id)
                    .where(recovery_codes.c.used_at.is_(None))
                    .order_by(recovery_codes.c.digest)
                ).scalars()
            )
        return LoginState(
            factor=factor_from_values(user_id, rows[0]), tenants=tenants, recovery_digests=digests
        )

    def load_login(self, user_id: str, *, recovery_codes: bool = False) -> LoginState:
        return self._run(
            lambda c: self._login_state(c, user_id, with_codes=recovery_codes),
            # One statement is a snapshot by itself; two need a transaction.
            single=not recovery_codes,
        )

    def commit_factor(self, commit: FactorCommit) -> bool:
        runs = 0

        def write(conn: sa.Connection) -> bool:
            nonlocal runs
            runs += 1
            if single:
                return bool(conn.execute(statement, params).scalar_one())
            return self._commit(conn, commit)

        single = self._postgres and commit.use_recovery_code is None and commit.recovery is None
        if single:
            # The whole write as one statement: one round trip, in autocommit.
            statement, params = self._commit_statement(commit)
        if self._run(write, single=single):
            return True
        # Run again after a dropped connection or a conflict, and refused: the first run may
        # have committed with only its reply lost, and then the revision moved by our own write.
        # Its first audit record tells (a random id, looked up through the time index).
        return runs > 1 and self._landed(commit)

    def _landed(self, commit: FactorCommit) -> bool:
        """Whether ``commit`` is stored: its first audit record is (every commit the library
        makes carries one)."""
        if not commit.audit:
            return False
        record = commit.audit[0]
        found = self._run(
            lambda c: c.execute(
                sa.select(audit_log.c.seq)
                .where(audit_log.c.at == to_us(record.at))
                .where(audit_log.c.record_id == record.record_id)
            ).first(),
            single=True,
        )
        return found is not None

    @staticmethod
    def _replace_codes(conn: sa.Connection, user_id: str, recovery: RecoveryCodeSet) -> None:
        conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
        if recovery.digests:
            conn.execute(
                recovery_codes.insert(),
                [{"user_id": user_id, "digest": d, "used_at": None} for d in recovery.digests],
            )

    @staticmethod
    def _epoch(conn: sa.Connection, user_id: str) -> int:
        value = conn.execute(
            sa.select(factors.c.epoch).where(factors.c.user_id == user_id)
        ).scalar_one()
        return int(value)

    def _commit(self, conn: sa.Connection, commit: FactorCommit) -> bool:
        user_id = commit.factor.user_id
        if commit.expected_revision == 0:
            self._ensure_factor_row(conn, user_id)
        written = conn.execute(
            factors.update()
            .where(factors.c.user_id == user_id)
            .where(factors.c.revision == commit.expected_revision)
            .values(**factor_values(commit.factor))
        )
        if written.rowcount != 1:
            return False
        if commit.use_recovery_code is not None:
            used = conn.execute(
                recovery_codes.update()
                .where(recovery_codes.c.user_id == user_id)
                .where(recovery_codes.c.digest == commit.use_recovery_code)
                .where(recovery_codes.c.used_at.is_(None))
                .values(used_at=to_us(commit.at))
            )
            if used.rowcount != 1:
                # Decided on this revision, where the code was unused: data was lost.
                raise StorageError("the recovery code to use is not stored as unused")
        if commit.recovery is not None:
            self._replace_codes(conn, user_id, commit.recovery)
        for record in commit.audit:
            self._audit(conn, record)
        self._queue(conn, commit.notifications)
        return True

    def _commit_statement(self, commit: FactorCommit) -> tuple[sa.TextClause, dict[str, Any]]:
        """PostgreSQL: the one statement of a plain commit, and its parameters."""
        params: dict[str, Any] = {
            "user_id": commit.factor.user_id,
            "expected": commit.expected_revision,
            **factor_values(commit.factor),
        }
        for i, record in enumerate(commit.audit):
            params.update({f"a{i}_{k}": v for k, v in self._audit_values(record).items()})
        for i, note in enumerate(commit.notifications):
            params.update({f"n{i}_{k}": v for k, v in self._outbox_values(note).items()})
        shape = (len(commit.audit), len(commit.notifications), commit.expected_revision == 0)
        return _postgres_commit_sql(*shape), params

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
        def work(conn: sa.Connection) -> int | None:
            self._check_standings(conn, user_id, actor_id, expected)
            floor_us = to_us(floor)
            result = conn.execute(
                factors.update()
                .where(factors.c.user_id == user_id)
                .where(
                    sa.or_(
                        factors.c.secret.is_not(None),
                        factors.c.pending_id.is_not(None),
                        factors.c.failures > 0,
                    )
                )
                .values(
                    secret=None,
                    activated_at=None,
                    pending_id=None,
                    pending_secret=None,
                    pending_created_at=None,
                    pending_expires_at=None,
                    epoch=factors.c.epoch + 1,
                    failures=0,
                    last_failure_at=None,
                    recovery_salt=None,
                    recovery_left=0,
                    revision=factors.c.revision + 1,
                    identity_floor=sa.case(
                        (
                            sa.or_(
                                factors.c.identity_floor.is_(None),
                                factors.c.identity_floor < floor_us,
                            ),
                            floor_us,
                        ),
                        else_=factors.c.identity_floor,
                    ),
                )
            )
            if result.rowcount != 1:
                return None
            conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
            self._record(conn, audit, notifications)
            return self._epoch(conn, user_id)

        return self._run(work)

    def unlock_factor(
        self,
        user_id: str,
        *,
        audit: AuditRecord,
        notifications: Sequence[Notification] = (),
        actor_id: str | None = None,
        expected: Sequence[Standing] | None = None,
    ) -> bool:
        def work(conn: sa.Connection) -> bool:
            self._check_standings(conn, user_id, actor_id, expected)
            result = conn.execute(
                factors.update()
                .where(factors.c.user_id == user_id)
                .where(factors.c.failures > 0)
                .values(failures=0, last_failure_at=None, revision=factors.c.revision + 1)
            )
            if result.rowcount != 1:
                return False
            self._record(conn, audit, notifications)
            return True

        return self._run(work)

    def sealed_secrets(self, *, after_user_id: str | None, limit: int) -> list[SealedSecrets]:
        stmt = sa.select(
            factors.c.user_id, factors.c.secret, factors.c.pending_id, factors.c.pending_secret
        ).where(sa.or_(factors.c.secret.is_not(None), factors.c.pending_id.is_not(None)))
        if after_user_id is not None:
            stmt = stmt.where(factors.c.user_id > after_user_id)
        rows = self._run(lambda c: c.execute(stmt.order_by(factors.c.user_id).limit(limit)).all())
        return [
            SealedSecrets(
                user_id=r.user_id,
                secret=None if r.secret is None else bytes(r.secret),
                pending_id=r.pending_id,
                pending_secret=None if r.pending_secret is None else bytes(r.pending_secret),
            )
            for r in rows
        ]

    def rewrap_secrets(self, old: SealedSecrets, new: SealedSecrets) -> bool:
        if new.pending_id != old.pending_id:
            return False

        def same(column: sa.ColumnElement[Any], value: object) -> sa.ColumnElement[bool]:
            return column.is_(None) if value is None else column == value

        def work(conn: sa.Connection) -> bool:
            result = conn.execute(
                factors.update()
                .where(factors.c.user_id == old.user_id)
                .where(same(factors.c.secret, old.secret))
                .where(same(factors.c.pending_id, old.pending_id))
                .where(same(factors.c.pending_secret, old.pending_secret))
                .values(
                    secret=new.secret,
                    pending_secret=new.pending_secret,
                    revision=factors.c.revision + 1,
                )
            )
            return bool(result.rowcount == 1)

        return self._run(work)

    # -- audit -----------------------------------------------------------------------------

    def append_audit(
        self, record: AuditRecord, *, notifications: Sequence[Notification] = ()
    ) -> None:
        self._run(lambda c: self._record(c, record, notifications), single=not notifications)

    def audit_records(self, query: AuditQuery) -> list[AuditRecord]:
        stmt = sa.select(audit_log)
        if query.tenant_id is not None:
            stmt = stmt.where(audit_log.c.tenant_id == query.tenant_id)
        if query.user_id is not None:
            stmt = stmt.where(
                sa.or_(audit_log.c.user_id == query.user_id, audit_log.c.actor_id == query.user_id)
            )
        if query.kinds is not None:
            stmt = stmt.where(audit_log.c.kind.in_(sorted(k.value for k in query.kinds)))
        if query.since is not None:
            stmt = stmt.where(audit_log.c.at >= to_us(query.since))
        if query.until is not None:
            stmt = stmt.where(audit_log.c.at < to_us(query.until))
        stmt = (
            stmt.order_by(audit_log.c.at, audit_log.c.seq).limit(query.limit).offset(query.offset)
        )
        rows = self._run(lambda c: c.execute(stmt).all())
        return [
            AuditRecord(
                record_id=r.record_id,
                at=required_from_us(r.at),
                kind=AuditKind(r.kind),
                tenant_id=r.tenant_id,
                user_id=r.user_id,
                actor_id=r.actor_id,
                detail=MappingProxyType(json.loads(r.detail)),
            )
            for r in rows
        ]

    # -- outbox ----------------------------------------------------------------------------

    @staticmethod
    def _outbox_item(row: Any) -> OutboxItem:  # noqa: ANN401 - a SQLAlchemy Row
        return OutboxItem(
            notification=decode_notification(row.payload),
            state=OutboxState(row.state),
            attempts=row.attempts,
            next_attempt_at=from_us(row.next_attempt_at),
            delivered_at=from_us(row.delivered_at),
            last_error=row.last_error,
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
        if ids is not None and not ids:
            return []

        def work(conn: sa.Connection) -> list[OutboxItem]:
            due = (
                sa.select(outbox.c.seq)
                .where(outbox.c.state == OutboxState.PENDING.value)
                .where(
                    sa.or_(
                        outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= to_us(now)
                    )
                )
                .where(
                    sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= to_us(now))
                )
            )
            if ids is not None:
                due = due.where(outbox.c.notification_id.in_(list(ids)))
            # SKIP LOCKED: concurrent dispatchers take different rows instead of queueing.
            seqs = [
                row.seq
                for row in conn.execute(
                    due.order_by(outbox.c.seq).limit(limit).with_for_update(skip_locked=True)
                )
            ]
            if not seqs:
                return []
            conn.execute(
                outbox.update()
                .where(outbox.c.seq.in_(seqs))
                .values(
                    attempts=outbox.c.attempts + 1,
                    claimant=claimant,
                    claimed_until=to_us(later(now, lease)),
                )
            )
            rows = conn.execute(
                sa.select(outbox).where(outbox.c.seq.in_(seqs)).order_by(outbox.c.seq)
            ).all()
            return [self._outbox_item(row) for row in rows]

        return self._run(work)

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
        values: dict[str, object] = {
            "state": state.value,
            "claimant": None,
            "claimed_until": None,
            "last_error": error,
        }
        if state is OutboxState.DELIVERED:
            values["delivered_at"] = to_us(now)
        elif state is OutboxState.PENDING:
            values["next_attempt_at"] = to_us(next_attempt_at or now)

        def work(conn: sa.Connection) -> bool:
            result = conn.execute(
                outbox.update()
                .where(outbox.c.notification_id == notification_id)
                .where(outbox.c.claimant == claimant)
                .where(outbox.c.state == OutboxState.PENDING.value)
                .where(outbox.c.claimed_until > to_us(now))
                .values(**values)
            )
            return bool(result.rowcount == 1)

        return self._run(work)

    def outbox_items(
        self, *, state: OutboxState | None = None, limit: int = 100
    ) -> list[OutboxItem]:
        stmt = sa.select(outbox)
        if state is not None:
            stmt = stmt.where(outbox.c.state == state.value)
        rows = self._run(lambda c: c.execute(stmt.order_by(outbox.c.seq).limit(limit)).all())
        return [self._outbox_item(row) for row in rows]


def _sqlite_file(engine: sa.Engine) -> str | None:
    """The file an SQLite engine opens, or ``None`` (another database, or one in memory).

    With ``?uri=true`` the database is a ``file:`` URI (``file:/srv/app.db?mode=rwc``): its path
    is the file, unless it is ``:memory:`` or opened with ``mode=memory``.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if not engine.url.query.get("uri"):
        return database
    parts = urllib.parse.urlsplit(database)
    # SQLAlchemy passes the URL's own query (mode=...) on to the file URI.
    modes = [*urllib.parse.parse_qs(parts.query).get("mode", []), engine.url.query.get("mode")]
    path = urllib.parse.unquote(parts.path)
    if parts.scheme != "file" or not path or path == ":memory:" or "memory" in modes:
        return None
    return path


def backfill_statements() -> dict[str, sa.Update]:
    """What fills a column added to an existing table, by ``table.column``: version 4's
    ``t2fa_factors.revision`` starts at 1 for existing rows (0 means no row), and
    ``recovery_left`` is the count of each user's unused codes. Alembic users run these in the
    migration that adds the columns (see docs/storage.md)."""
    unused = (
        sa.select(sa.func.count())
        .select_from(recovery_codes)
        .where(recovery_codes.c.user_id == factors.c.user_id)
        .where(recovery_codes.c.used_at.is_(None))
        .scalar_subquery()
    )
    return {
        # Only rows still at 0: a backfill that ran late (DDL commits at once on MariaDB) must
        # not take a revision back that a new process has already moved.
        "t2fa_factors.revision": factors.update().where(factors.c.revision == 0).values(revision=1),
        "t2fa_factors.recovery_left": factors.update().values(recovery_left=unused),
    }


def _add_missing_columns(conn: sa.Connection) -> None:
    """Add the columns a newer tenant2fa added to existing tables (``create_schema`` on a
    database an older version made), and fill them in (:func:`backfill_statements`). Each such
    column is nullable or has a server default, so old rows stay valid."""
    inspector = sa.inspect(conn)
    backfills = backfill_statements()
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            default = column.server_default
            if not column.nullable and not isinstance(default, sa.DefaultClause):
                raise StorageError(
                    f"{table.name}.{column.name} is missing and cannot be added in place; "
                    "migrate with Alembic (see docs/storage.md)"
                )
            kind = column.type.compile(dialect=conn.dialect)
            name = conn.dialect.identifier_preparer.quote(column.name)
            extra = ""
            if isinstance(default, sa.DefaultClause):
                extra = f" NOT NULL DEFAULT {default.arg}"
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}{extra}")
            backfill = backfills.get(f"{table.name}.{column.name}")
            if backfill is not None:
                conn.execute(backfill)


_OBSOLETE_INDEXES = {audit_log.name: ("t2fa_audit_by_user", "t2fa_audit_by_actor")}
"""Indexes an older tenant2fa made that version 5 no longer keeps."""


def _drop_obsolete_indexes(conn: sa.Connection) -> None:
    """Drop what version 5 no longer keeps on a database an older version made: the audit
    log's indexes by user and by actor, and its unique constraint on record ids (SQLite keeps
    that one: it cannot drop a constraint without rebuilding the table; SQLiteStorage's own
    migration rebuilds it)."""
    inspector = sa.inspect(conn)
    mysql_family = isinstance(conn.dialect, MySQLDialect)
    quote = conn.dialect.identifier_preparer.quote
    for table_name, names in _OBSOLETE_INDEXES.items():
        if not inspector.has_table(table_name):
            continue
        present = {index["name"] for index in inspector.get_indexes(table_name)}
        # Plain DDL: an Index or UniqueConstraint object made here would attach itself to our
        # metadata's table, and create_all would make it again.
        on = f" ON {quote(table_name)}" if mysql_family else ""
        for name in names:
            if name in present:
                conn.exec_driver_sql(f"DROP INDEX {quote(name)}{on}")
        for unique in inspector.get_unique_constraints(table_name):
            constraint = unique["name"]
            if unique["column_names"] == ["record_id"] and constraint:
                what = "INDEX" if mysql_family else "CONSTRAINT"
                dropped = f"DROP {what} {quote(constraint)}"
                conn.exec_driver_sql(f"ALTER TABLE {quote(table_name)} {dropped}")


def _sqlite_immediate_transactions(engine: sa.Engine) -> None:
    """Make pysqlite leave transactions to us, and start each with BEGIN IMMEDIATE.

    pysqlite's own deferred BEGIN would let two connections read the same row and then both
    write; IMMEDIATE takes the write lock first. (SQLAlchemy's documented recipe.)
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:  # noqa: ANN401
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 5000")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
