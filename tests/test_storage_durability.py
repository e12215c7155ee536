"""Durable backends: the storage conformance suite on each, secrets at rest, O(1) toggles, a
database that goes away, SQLite locking and schema versions.

The durable backends are SQLite through the standard library (a real file, and ``":memory:"``), and
SQLAlchemy on SQLite, PostgreSQL and MariaDB (real servers; see db_backends.py for how they are
found).
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from db_backends import empty_server_engine, server_engine, server_url, sqlalchemy_server_storage
from tcp_proxy import TcpProxy
from tenant2fa import (
    AuditKind,
    AuditQuery,
    Config,
    Keyring,
    LastOwner,
    MemoryStorage,
    Reason,
    RecoveryCodeHasher,
    Role,
    StorageError,
    TenantPolicy,
    TwoFactor,
)
from tenant2fa.audit import new_audit_record
from tenant2fa.clock import UTC
from tenant2fa.notify import Notification, NotificationKind
from tenant2fa.outbox import encode_notification
from tenant2fa.storage import FactorRecord, Storage
from tenant2fa.storage.sqlalchemy import (
    SQLAlchemyStorage,
    factors,
    memberships,
    meta,
    recovery_codes,
)
from tenant2fa.storage.sqlite import _MIGRATIONS, SCHEMA_VERSION, SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for, secret_of
from tenant2fa.testing.conformance import StorageConformance
from tenant2fa.testing.faults import FaultyStorage

CONFIG = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))


def _service(storage: Any) -> TwoFactor:
    return TwoFactor(storage=storage, keyring=Keyring.generate(), clock=FakeClock(), config=CONFIG)


def _enroll(tf: TwoFactor, user: str = "bob", tenant: str = "B") -> tuple[str, ...]:
    clock = tf.clock
    assert isinstance(clock, FakeClock)
    if tf.storage.get_tenant(tenant) is None:
        tf.create_tenant(tenant, name=f"Tenant {tenant}", owner_id="olga")
        tf.set_two_factor(tenant, actor_id="olga", enabled=True)
    if tf.storage.get_membership(tenant, user) is None:
        tf.add_member(tenant, user, operator="host")
    clock.advance(seconds=1)
    login = tf.start_session(user)
    tf.begin_enrollment(login)
    result = tf.confirm_enrollment(login, pending_code_for(tf, user))
    assert result.ok
    clock.advance(seconds=30)
    return result.recovery_codes


def _secret_forms(tf: TwoFactor, user: str, recovery_codes: tuple[str, ...]) -> list[bytes]:
    secret = secret_of(tf, user)
    b32 = base64.b32encode(secret)
    forms = [secret, secret.hex().encode(), b32, b32.rstrip(b"="), b32.lower().rstrip(b"=")]
    forms += [base64.b64encode(secret).rstrip(b"="), base64.urlsafe_b64encode(secret).rstrip(b"=")]
    for code in recovery_codes:
        forms += [code.encode(), code.replace("-", "").encode()]
    return forms


# -- the storage conformance suite on every durable backend ------------------------------------


class TestSQLiteFile(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        backend = SQLiteStorage(tmp_path / "conformance.sqlite3")
        yield backend
        backend.close()


class TestSQLiteInMemory(StorageConformance):
    """``":memory:"``: one shared connection, so every thread sees the same database."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        backend = SQLiteStorage(":memory:")
        yield backend
        backend.close()


class TestSQLAlchemyOnSQLite(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'conformance.sqlite3'}")
        backend = SQLAlchemyStorage(engine)
        backend.create_schema()
        yield backend
        engine.dispose()


class TestSQLAlchemyOnPostgreSQL(StorageConformance):
    @pytest.fixture
    def storage(self) -> Storage:
        return sqlalchemy_server_storage("postgresql")


class TestSQLAlchemyOnMariaDB(StorageConformance):
    @pytest.fixture
    def storage(self) -> Storage:
        return sqlalchemy_server_storage("mariadb")


# -- secrets at rest ---------------------------------------------------------------------------


def test_the_raw_sqlite_file_holds_no_secret_in_any_encoding(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "raw.sqlite3")
    tf = _service(storage)
    codes = _enroll(tf)
    login = tf.start_session("bob")
    tf.begin_enrollment(tf.verify_code(login, "B", code_for(tf, "bob")).login)  # a pending one too
    pending = secret_of(tf, "bob", pending=True)
    storage.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("raw.sqlite3"))
    assert len(raw) > 4096
    forms = [*_secret_forms(tf, "bob", codes), pending, base64.b32encode(pending).rstrip(b"=")]
    for form in forms:
        assert form not in raw


def test_postgresql_rows_hold_no_secret_in_any_encoding() -> None:
    storage = sqlalchemy_server_storage("postgresql")
    tf = _service(storage)
    codes = _enroll(tf)
    with server_engine("postgresql").connect() as conn:
        dump = b""
        for table in ("t2fa_factors", "t2fa_recovery_codes", "t2fa_audit"):
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}"):  # noqa: S608 - fixed names
                dump += repr(tuple(row)).encode() + b"\n"
                dump += b"".join(bytes(v) for v in row if isinstance(v, (bytes, memoryview)))
    assert len(dump) > 200  # the dump really holds the rows
    for form in _secret_forms(tf, "bob", codes):
        assert form not in dump


def _copy_secret_by_sql(tf: TwoFactor, execute: Any) -> Reason:
    _enroll(tf, "olga")
    _enroll(tf, "bob")
    execute()
    bobs_code = code_for(tf, "bob")
    return tf.verify_code(tf.start_session("olga"), "B", bobs_code).reason


def test_a_ciphertext_copied_onto_another_users_sqlite_row_does_not_verify(tmp_path: Path) -> None:
    path = tmp_path / "copy.sqlite3"
    tf = _service(SQLiteStorage(path))

    def copy() -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE t2fa_factors SET secret = "
                "(SELECT secret FROM t2fa_factors WHERE user_id = 'bob') WHERE user_id = 'olga'"
            )

    assert _copy_secret_by_sql(tf, copy) is Reason.UNAVAILABLE


def test_a_ciphertext_copied_onto_another_users_postgresql_row_does_not_verify() -> None:
    tf = _service(sqlalchemy_server_storage("postgresql"))

    def copy() -> None:
        with server_engine("postgresql").begin() as conn:
            bob = conn.execute(sa.select(factors.c.secret).where(factors.c.user_id == "bob"))
            conn.execute(
                factors.update().where(factors.c.user_id == "olga").values(secret=bob.scalar_one())
            )

    assert _copy_secret_by_sql(tf, copy) is Reason.UNAVAILABLE


# -- switching a tenant of 100,000 members writes one row -----------------------------------------

MEMBERS = 100_000


def _bulk_members(kind: str, storage: Any) -> None:
    rows = [
        {"tenant_id": "big", "user_id": f"user-{i:06d}", "role": "member"} for i in range(MEMBERS)
    ]
    if kind == "memory":
        from tenant2fa.policy import Membership, Role

        for row in rows:
            m = Membership(tenant_id="big", user_id=row["user_id"], role=Role.MEMBER)
            storage._members[("big", m.user_id)] = m
            storage._tenants_by_user.setdefault(m.user_id, set()).add("big")
    elif kind == "sqlite":
        with sqlite3.connect(storage.path) as conn:
            conn.executemany(
                "INSERT INTO t2fa_memberships (tenant_id, user_id, role) VALUES (?, ?, ?)",
                [(r["tenant_id"], r["user_id"], r["role"]) for r in rows],
            )
    else:
        with storage.engine.begin() as conn:
            conn.execute(memberships.insert(), rows)


@pytest.fixture(params=["memory", "sqlite", "sqlalchemy-sqlite", "postgresql", "mariadb"])
def big_tenant(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    kind: str = request.param
    storage: Any
    if kind == "memory":
        storage = MemoryStorage()
    elif kind == "sqlite":
        storage = SQLiteStorage(tmp_path / "big.sqlite3")
    elif kind == "sqlalchemy-sqlite":
        storage = SQLAlchemyStorage(f"sqlite:///{tmp_path / 'big-sa.sqlite3'}")
        storage.create_schema()
    else:
        storage = sqlalchemy_server_storage(kind)
    tf = _service(storage)
    tf.create_tenant("big", name="Big", owner_id="owner")
    _bulk_members(kind, storage)
    assert len(storage.list_memberships("big")) == MEMBERS + 1
    return kind, storage


def test_switching_a_tenant_of_100000_members_writes_one_row(big_tenant: tuple[str, Any]) -> None:
    kind, storage = big_tenant
    faulty = FaultyStorage(storage)
    tf = _service(faulty)
    statements: list[tuple[str, int]] = []
    if kind == "sqlite":
        storage.set_trace_callback(lambda sql: statements.append((sql, -1)))
    elif kind != "memory":

        @sa.event.listens_for(storage.engine, "after_cursor_execute")
        def _count(_c: Any, cursor: Any, sql: str, *_a: Any) -> None:
            statements.append((sql, cursor.rowcount))

    for enabled in (True, False):
        faulty.calls.clear()
        statements.clear()
        tf.set_two_factor("big", actor_id="owner", enabled=enabled)
        # One storage write operation: the policy row (with its audit record) ...
        writes = [c for c in faulty.calls if not c.startswith(("get_", "list_", "tenants_of"))]
        assert writes == ["update_tenant_policy"]
        if kind == "memory":
            continue
        # ... which is one UPDATE of one row, plus the audit record and the owner's notification:
        # what is written depends on the number of owners, never on the number of members.
        changing = [
            (sql, n)
            for sql, n in statements
            if sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
        ]
        assert len(changing) == 3, changing
        update, audit, outbox = changing
        assert update[0].lstrip().upper().startswith("UPDATE")
        assert "t2fa_tenants" in update[0]
        assert "t2fa_audit" in audit[0]
        assert "t2fa_outbox" in outbox[0]
        if kind != "sqlite":
            assert (update[1], audit[1], outbox[1]) == (1, 1, 1)
    if kind not in ("memory", "sqlite"):
        sa.event.remove(storage.engine, "after_cursor_execute", _count)
    assert tf.tenant("big").version == 2


# -- the database goes away and comes back ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_database_that_goes_away_gives_a_clear_error_and_work_resumes_when_it_returns(
    kind: str,
) -> None:
    url = sa.make_url(server_url(kind))
    sqlalchemy_server_storage(kind)  # empty tables
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 0))
    try:
        # No pre-ping: a connection found dropped is replaced by running the operation again.
        engine = sa.create_engine(
            url.set(host="127.0.0.1", port=proxy.port), connect_args={"connect_timeout": 3}
        )
        tf = _service(SQLAlchemyStorage(engine, retries=1))
        codes = _enroll(tf)
        login = tf.start_session("bob")
        code = code_for(tf, "bob")
        forms = [*_secret_forms(tf, "bob", codes), code.encode()]

        proxy.cut()
        result = tf.verify_code(login, "B", code)
        assert result.reason is Reason.UNAVAILABLE
        assert not result.ok
        with pytest.raises(StorageError) as raised:
            tf.set_two_factor("B", actor_id="olga", enabled=False)
        message = str(raised.value)
        assert "database operation failed" in message
        for form in forms:
            assert form.decode("latin-1") not in message

        proxy.restore()
        assert tf.verify_code(login, "B", code).ok  # the failed attempt consumed nothing
        assert tf.set_two_factor("B", actor_id="olga", enabled=False).version == 2
        engine.dispose()
    finally:
        proxy.close()


# -- SQLite specifics ---------------------------------------------------------------------------


def test_sqlite_waits_for_another_writer_then_fails_closed_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    storage = SQLiteStorage(path, busy_timeout=timedelta(milliseconds=50), retries=2)
    tf = _service(storage)
    _enroll(tf)
    login = tf.start_session("bob")
    code = code_for(tf, "bob")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        result = tf.verify_code(login, "B", code)
        assert result.reason is Reason.UNAVAILABLE
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert tf.verify_code(login, "B", code).ok  # nothing was half-done: the code is still unused


def test_sqlite_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    storage = SQLiteStorage(path)
    assert storage.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    storage.close()
    # Opening it again keeps the data and does not re-run the migrations.
    tf = _service(storage)
    tf.create_tenant("A", name="A", owner_id="alice")
    storage.close()
    again = SQLiteStorage(path)
    assert again.get_tenant("A") is not None
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_sqlite_refuses_a_database_from_a_newer_tenant2fa(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    current = SQLiteStorage(path)
    assert current.schema_version() == SCHEMA_VERSION
    current.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE t2fa_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="newer"):
        SQLiteStorage(path).get_tenant("A")


def test_sqlite_upgrades_an_empty_file_from_version_zero(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t2fa_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO t2fa_meta VALUES ('schema_version', '0')")
    storage = SQLiteStorage(path)
    assert storage.audit_records(AuditQuery()) == []
    assert storage.schema_version() == SCHEMA_VERSION


def test_sqlite_reuses_connections_across_short_lived_threads(tmp_path: Path) -> None:
    """A thread per request must not leave a connection (and its files) behind per thread."""
    import threading

    storage = SQLiteStorage(tmp_path / "threads.sqlite3")
    tf = _service(storage)
    tf.create_tenant("A", name="A", owner_id="alice")
    opened: list[str] = []
    storage.set_trace_callback(None)
    real_open = storage._open

    def counting_open() -> Any:
        opened.append("open")
        return real_open()

    storage._open = counting_open  # type: ignore[method-assign]
    for _ in range(100):
        thread = threading.Thread(target=lambda: storage.get_tenant("A"))
        thread.start()
        thread.join()
    assert len(opened) <= 1  # the pooled connection serves thread after thread
    storage.close()


def _owners_query_plans(storage: SQLiteStorage) -> list[str]:
    """SQLite's plan for the query that finds the owners of tenant "big"."""
    executed: list[str] = []
    storage.set_trace_callback(executed.append)
    assert [m.user_id for m in storage.list_memberships("big", role=Role.OWNER)] == ["owner"]
    storage.set_trace_callback(None)
    (query,) = [sql for sql in executed if sql.lstrip().upper().startswith("SELECT")]
    with closing(sqlite3.connect(storage.path)) as conn:
        return [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + query)]


def test_sqlite_finds_a_tenants_owners_through_an_index_not_by_reading_every_member(
    tmp_path: Path,
) -> None:
    """Switching 2FA tells the owners; finding them must not read the tenant's members (the
    primary key's order once made the planner filter every member by role)."""
    storage = SQLiteStorage(tmp_path / "plan.sqlite3")
    tf = _service(storage)
    tf.create_tenant("big", name="Big", owner_id="owner")
    plans = _owners_query_plans(storage)
    assert any("t2fa_memberships_by_role" in plan for plan in plans), plans
    assert not any("TEMP B-TREE" in plan for plan in plans), plans  # no sort either
    storage.close()


# -- schema upgrades --------------------------------------------------------------------------

_ACTIVATED = datetime(2025, 12, 1, tzinfo=UTC)
_FAILED = datetime(2025, 12, 2, tzinfo=UTC)


def _us(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _index_columns(conn: sqlite3.Connection, index: str) -> list[str]:
    return [row[2] for row in conn.execute(f"PRAGMA index_info({index})")]


@pytest.mark.parametrize(
    "owners_index",
    ["(tenant_id, role)", "(tenant_id, role, user_id)"],
    ids=["unreleased-narrow-index", "released-index"],
)
def test_sqlite_upgrades_a_version_2_file_to_the_current_version_keeping_its_rows(
    tmp_path: Path, owners_index: str
) -> None:
    path = tmp_path / "v2.sqlite3"
    note = Notification(
        notification_id="n1",
        kind=NotificationKind.MEMBER_ADDED,
        user_id="bob",
        at=_FAILED,
        tenant_id="big",
        role="member",
    )
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE t2fa_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        # Version 2 as an unreleased build made it, or as released (see _MIGRATIONS[2]).
        narrowed = f"CREATE INDEX t2fa_memberships_by_role ON t2fa_memberships {owners_index}"
        for statement in (*_MIGRATIONS[0], *_MIGRATIONS[1]):
            by_role = "INDEX t2fa_memberships_by_role" in statement
            conn.execute(narrowed if by_role else statement)
        conn.execute("INSERT INTO t2fa_meta VALUES ('schema_version', '2')")
        conn.execute(
            "INSERT INTO t2fa_tenants VALUES ('big', 'Big', 1, ?, NULL, 3)", (_us(_ACTIVATED),)
        )
        conn.executemany(
            "INSERT INTO t2fa_memberships VALUES ('big', ?, ?)",
            [("owner", "owner"), ("oscar", "owner"), ("bob", "member")],
        )
        conn.execute(
            "INSERT INTO t2fa_factors (user_id, last_step, epoch, failures, last_failure_at) "
            "VALUES ('bob', 1000, 2, 3, ?)",
            (_us(_FAILED),),
        )
        conn.execute(
            "INSERT INTO t2fa_audit (record_id, at, kind, tenant_id, user_id, actor_id, detail) "
            "VALUES ('r1', ?, 'member_added', 'big', 'bob', 'owner', '{}')",
            (_us(_FAILED),),
        )
        conn.execute(
            "INSERT INTO t2fa_outbox (notification_id, created_at, payload, next_attempt_at) "
            "VALUES ('n1', ?, ?, ?)",
            (_us(_FAILED), encode_notification(note), _us(_FAILED)),
        )
        assert _index_columns(conn, "t2fa_memberships_by_role") == [
            c.strip() for c in owners_index.strip("()").split(",")
        ]

    storage = SQLiteStorage(path)
    assert storage.schema_version() == SCHEMA_VERSION == 5
    assert storage.get_tenant("big") == TenantPolicy(
        tenant_id="big", name="Big", two_factor_required=True, activated_at=_ACTIVATED, version=3
    )
    assert [(m.user_id, m.role) for m in storage.list_memberships("big")] == [
        ("bob", Role.MEMBER),
        ("oscar", Role.OWNER),
        ("owner", Role.OWNER),
    ]
    # Version 4: an existing row starts at revision 1 (0 stands for no row).
    assert storage.get_factor("bob") == FactorRecord(
        user_id="bob", last_step=1000, epoch=2, failures=3, last_failure_at=_FAILED, revision=1
    )
    assert [(r.record_id, r.at, r.user_id) for r in storage.audit_records(AuditQuery())] == [
        ("r1", _FAILED, "bob")
    ]
    assert [item.notification for item in storage.outbox_items()] == [note]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT user_id, identity_floor FROM t2fa_factors").fetchall() == [
            ("bob", None)
        ]
        assert _index_columns(conn, "t2fa_memberships_by_role") == ["tenant_id", "role", "user_id"]

    # The library works on it: membership changes, unlocking, enrolling, resetting; and the
    # owners are found through the widened index.
    tf = _service(storage)
    tf.remove_member("big", "oscar", actor_id="owner")
    plans = _owners_query_plans(storage)
    assert any("t2fa_memberships_by_role" in plan for plan in plans), plans
    assert not any("TEMP B-TREE" in plan for plan in plans), plans
    with pytest.raises(LastOwner):
        tf.set_role("big", "owner", Role.ADMIN, actor_id="owner")
    assert tf.unlock("big", "bob", actor_id="owner")
    _enroll(tf, "bob", "big")
    tf.reset_two_factor("big", "bob", actor_id="owner")
    assert storage.get_factor("bob").identity_floor == tf.clock.now()
    storage.close()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine on a database with no tables yet."""
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'older.sqlite3'}")
        yield engine
        engine.dispose()
    else:
        with empty_server_engine(request.param) as engine:
            yield engine


def test_sqlalchemy_create_schema_adds_and_fills_the_columns_an_older_database_lacks(
    empty_engine: sa.Engine,
) -> None:
    storage = SQLAlchemyStorage(empty_engine)
    storage.create_schema()
    added = ("identity_floor", "revision", "recovery_left")
    # What tenant2fa before schema version 3 made: none of these columns.
    with empty_engine.begin() as conn:
        for column in added:
            conn.exec_driver_sql(f"ALTER TABLE t2fa_factors DROP COLUMN {column}")
        conn.execute(meta.update().values(value="2"))
        conn.exec_driver_sql(
            "INSERT INTO t2fa_factors (user_id, last_step, epoch, failures) "
            "VALUES ('bob', 1000, 2, 3), ('ann', 7, 1, 0)"
        )
        conn.execute(
            recovery_codes.insert(),
            [
                {"user_id": "bob", "digest": b"a" * 32, "used_at": None},
                {"user_id": "bob", "digest": b"b" * 32, "used_at": 5},
                {"user_id": "bob", "digest": b"c" * 32, "used_at": None},
            ],
        )

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(empty_engine).get_columns("t2fa_factors")}

    assert not columns() & set(added)
    storage.create_schema()
    assert columns() >= set(added)
    assert storage.schema_version() == SCHEMA_VERSION == 5
    with empty_engine.connect() as conn:
        rows = conn.execute(
            sa.select(factors.c.user_id, factors.c.identity_floor).order_by(factors.c.user_id)
        ).all()
    assert [tuple(row) for row in rows] == [("ann", None), ("bob", None)]
    # Existing rows start at revision 1 (0 stands for no row), with their unused codes counted.
    assert storage.get_factor("bob") == FactorRecord(
        user_id="bob", last_step=1000, epoch=2, failures=3, recovery_codes_left=2, revision=1
    )
    assert storage.load_login("ann").factor == FactorRecord(
        user_id="ann", last_step=7, epoch=1, revision=1
    )
    floor = datetime(2026, 1, 1, tzinfo=UTC)
    audit = new_audit_record(AuditKind.TWO_FACTOR_RESET, at=floor, user_id="bob")
    assert storage.reset_factor("bob", floor=floor, audit=audit) == 3
    assert storage.get_factor("bob").identity_floor == floor
    storage.create_schema()  # nothing left to add
    assert storage.get_factor("bob").identity_floor == floor
    assert storage.get_factor("bob").revision == 2
